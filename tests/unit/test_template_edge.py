"""The edge in template.yaml: custom domain, source allow-list, throttling, the signature alarms."""

from __future__ import annotations

import re
from typing import Any

import pytest
from webhook_receiver.edge import SourceAllowList

from testkit.template_render import failed_rules
from tests.support.templates import deployed, parameters_for

DOMAIN = {
    "DomainName": "geft-webhooks.bank.example",
    "CertificateArn": "arn:aws:acm:ca-central-1:123456789012:certificate/0e5c6bb7-0000-4000-8000-0000000000",
}


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id].get("Properties", {}))


# ------------------------------------------------------------------ custom domain


def test_without_a_domain_the_execute_api_url_is_the_webhook_url(template: dict[str, Any]) -> None:
    rendered = deployed(template, "prod")

    assert "WebhookDomainName" not in rendered["Resources"]
    assert "WebhookApiMapping" not in rendered["Resources"]
    assert props(rendered, "WebhookHttpApi")["DisableExecuteApiEndpoint"] is False
    assert "execute-api" in rendered["Outputs"]["WebhookUrl"]["Value"]["Fn::Sub"]
    assert "WebhookDomainTarget" not in rendered["Outputs"]


def test_a_custom_domain_is_tls12_regional_and_replaces_the_default_endpoint(
    template: dict[str, Any],
) -> None:
    # GIVEN prod with a domain and its certificate
    rendered = deployed(template, "prod", **DOMAIN)

    # THEN the domain answers with TLS 1.2 or later, mapped to the API's stage
    domain = props(rendered, "WebhookDomainName")
    assert domain == {
        "DomainName": DOMAIN["DomainName"],
        "DomainNameConfigurations": [
            {
                "CertificateArn": DOMAIN["CertificateArn"],
                "EndpointType": "REGIONAL",
                "SecurityPolicy": "TLS_1_2",
            }
        ],
    }
    assert props(rendered, "WebhookApiMapping") == {
        "DomainName": {"Ref": "WebhookDomainName"},
        "ApiId": {"Ref": "WebhookHttpApi"},
        "Stage": {"Ref": "WebhookHttpApiApiGatewayDefaultStage"},  # SAM's $default stage
    }
    # AND the guessable execute-api URL is off, and WebhookUrl is the domain's
    assert props(rendered, "WebhookHttpApi")["DisableExecuteApiEndpoint"] is True
    assert rendered["Outputs"]["WebhookUrl"]["Value"] == f"https://{DOMAIN['DomainName']}/webhooks/flinks"
    assert rendered["Outputs"]["WebhookDomainTarget"]["Value"] == {
        "Fn::GetAtt": ["WebhookDomainName", "RegionalDomainName"]
    }


@pytest.mark.parametrize(
    ("given", "refused"),
    [
        ({"DomainName": DOMAIN["DomainName"]}, "CustomDomainNeedsItsCertificate"),
        ({"CertificateArn": DOMAIN["CertificateArn"]}, "CertificateNeedsItsDomain"),
    ],
)
def test_a_domain_and_its_certificate_come_together(
    template: dict[str, Any], given: dict[str, str], refused: str
) -> None:
    broken = failed_rules(template, parameters_for(template, "prod", **given))

    assert [message.split(":", 1)[0] for message in broken] == [refused]
    assert failed_rules(template, parameters_for(template, "prod", **DOMAIN)) == []


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("geft-webhooks.bank.example", True),
        ("a.b.ca", True),
        ("", True),
        ("https://geft.bank.example", False),
        ("geft.bank.example/webhooks", False),
        ("GEFT.bank.example", False),
        ("-bad.bank.example", False),
    ],
)
def test_domain_name_parameter_pattern(template: dict[str, Any], value: str, valid: bool) -> None:
    pattern = template["Parameters"]["DomainName"]["AllowedPattern"]

    assert bool(re.fullmatch(pattern, value)) is valid


# ------------------------------------------------------------------ source allow-list


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("", True),
        ("203.0.113.0/24", True),
        ("203.0.113.0/24,198.51.100.7/32,2001:db8::/32", True),
        ("203.0.113.0/24, 198.51.100.7/32", False),  # no spaces: the receiver splits on commas only
        ("203.0.113.7", False),  # a network needs its prefix length
        ("any", False),
    ],
)
def test_allowed_source_cidrs_parameter_pattern(template: dict[str, Any], value: str, valid: bool) -> None:
    pattern = template["Parameters"]["AllowedSourceCidrs"]["AllowedPattern"]

    assert bool(re.fullmatch(pattern, value)) is valid


@pytest.mark.parametrize(
    "cidrs", ["203.0.113.0/24", "198.51.100.7/32,203.0.113.0/24", "2001:db8:f1::/48,203.0.113.0/24"]
)
def test_the_receiver_gets_the_allow_list_and_the_hook_probes_from_inside_it(
    template: dict[str, Any], cidrs: str
) -> None:
    # GIVEN an allow-list
    rendered = deployed(template, "prod", AllowedSourceCidrs=cidrs)

    # WHEN the receiver and the pre-traffic hook are configured from it
    receiver_env = props(rendered, "WebhookReceiverFunction")["Environment"]["Variables"]
    probe_ip = props(rendered, "ReceiverPreTrafficHookFunction")["Environment"]["Variables"][
        "PROBE_SOURCE_IP"
    ]

    # THEN the receiver's list admits the address the hook's probe claims (else every deploy would fail)
    assert receiver_env["ALLOWED_SOURCE_CIDRS"] == cidrs
    assert SourceAllowList.parse(receiver_env["ALLOWED_SOURCE_CIDRS"]).admits(probe_ip)


def test_without_an_allow_list_the_hook_claims_a_documentation_address(template: dict[str, Any]) -> None:
    rendered = deployed(template, "prod")

    probe_ip = props(rendered, "ReceiverPreTrafficHookFunction")["Environment"]["Variables"][
        "PROBE_SOURCE_IP"
    ]
    assert probe_ip == "192.0.2.10"  # TEST-NET-1 (RFC 5737): no real client has it
    assert (
        props(rendered, "WebhookReceiverFunction")["Environment"]["Variables"]["ALLOWED_SOURCE_CIDRS"] == ""
    )


# ------------------------------------------------------------------ throttling


def test_route_throttling_is_sized_with_room_for_flinks(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    rate, burst = parameters["ApiThrottlingRateLimit"], parameters["ApiThrottlingBurstLimit"]

    assert props(template, "WebhookHttpApi")["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    # the bucket is shared with whoever knows the URL: the description says so and points at the runbook
    assert "shared" in rate["Description"]
    assert "Throttling and the shared bucket" in rate["Description"]
    assert burst["Default"] >= rate["Default"]


# ------------------------------------------------------------------ signature alarms


def test_a_wrong_secret_pages_within_a_minute_and_scanners_do_not(template: dict[str, Any]) -> None:
    paging = props(template, "SignatureRejectedAlarm")
    probes = props(template, "SignatureProbesAlarm")

    # the first G-EFT-shaped rejection of a minute pages (a wrong secret rejects every Flinks delivery)
    assert (paging["Period"], paging["EvaluationPeriods"], paging["Threshold"]) == (60, 1, 1)
    assert {d["Name"]: d["Value"] for d in paging["Dimensions"]}["BodyShape"] == "geft-webhook"
    # everything else needs many rejections in 5 minutes
    assert (probes["Period"], probes["EvaluationPeriods"]) == (300, 1)
    assert {d["Name"]: d["Value"] for d in probes["Dimensions"]}["BodyShape"] == "other"
    assert probes["Threshold"] == {"Ref": "SignatureProbesAlarmThreshold"}
    assert template["Parameters"]["SignatureProbesAlarmThreshold"]["Default"] >= 20
