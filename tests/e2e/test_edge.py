"""The edge over real HTTP on 127.0.0.1: the local stack started with prod-like edge parameters.

A source outside the allow-list gets 403 with only a code and API Gateway's request id; the local
stack also honours the template's Rules and conditions (prod's pre-traffic hook runs as a container).
"""

from __future__ import annotations

import pytest
import requests
from geft.signature import compute_signature
from geft_local.stack import LocalStack, LocalStackError

from testkit.webhooks import guarantee_body
from tests.e2e.conftest import StartStack
from tests.support.constants import TEST_WEBHOOK_SECRET

pytestmark = pytest.mark.e2e
TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def fenced(start_stack: StartStack) -> LocalStack:
    # the local gateway's clients are 127.0.0.1: this list leaves them outside
    return start_stack("fenced", AllowedSourceCidrs="198.51.100.0/24,2001:db8::/32")


def test_a_source_outside_the_allow_list_gets_403_and_nothing_else(fenced: LocalStack) -> None:
    session_id = "aadd08f2-83ce-456d-84ed-c68cfed4ee7b"
    body = guarantee_body(session_id)

    response = requests.post(
        fenced.webhook_url,
        data=body,
        headers={
            "content-type": "application/json",
            "x-webhook-signature": compute_signature(body, TEST_WEBHOOK_SECRET),
        },
        timeout=TIMEOUT_S,
    )

    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": "forbidden", "requestId": response.headers["apigw-requestid"]}
    }
    assert fenced.items(session_id) == []


def test_prod_parameters_start_the_hook_and_the_rules_hold(start_stack: StartStack) -> None:
    # GIVEN prod's edge: the pre-traffic hook is on (auto), logs kept a year
    stack = start_stack("prod-like", Environment="prod", LogRetentionDays="365")

    # THEN its container starts with the version it would probe (the one SAM publishes, as moto has it),
    # and the API still answers
    hook = stack.workers["ReceiverPreTrafficHookFunction"]
    version = stack.aws.client("lambda").get_alias(
        FunctionName=stack.created.ref("WebhookReceiverFunction"), Name="live"
    )
    assert (
        hook.spec.environment["TARGET_FUNCTION_ARN"]
        == version["AliasArn"].removesuffix(":live") + ":" + version["FunctionVersion"]
    )
    assert requests.post(stack.webhook_url, data=b"{}", timeout=TIMEOUT_S).status_code == 401


def test_a_combination_cloudformation_refuses_does_not_start(start_stack: StartStack) -> None:
    with pytest.raises(LocalStackError, match="ProdKeepsLogsAYear"):
        start_stack("refused", Environment="prod", LogRetentionDays="30")
