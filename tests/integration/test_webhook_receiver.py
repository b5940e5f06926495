"""The receiver in-process under moto, with the table and secret built from template.yaml."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testkit.template import CreatedResources
from testkit.webhooks import guarantee_body, load_event, status_body, webhook_event
from tests.support.constants import TEST_PREVIOUS_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
Items = Callable[[], list[dict[str, Any]]]
REPO_ROOT = Path(__file__).resolve().parents[2]


def _body(response: dict[str, Any]) -> dict[str, Any]:
    assert response["headers"]["content-type"] == "application/json"
    document: dict[str, Any] = json.loads(response["body"])
    return document


def test_valid_guarantee_is_stored_once_as_received(invoke_receiver: Invoke, table_items: Items) -> None:
    # GIVEN a signed guarantee webhook
    session_id = str(uuid.uuid4())
    body = guarantee_body(session_id)

    # WHEN it is delivered
    response = invoke_receiver(webhook_event(body, secret=TEST_WEBHOOK_SECRET))

    # THEN it is acknowledged and stored verbatim, RECEIVED, with a TTL
    assert response["statusCode"] == 200
    assert _body(response) == {"outcome": "stored"}
    [item] = table_items()
    assert item["pk"] == session_id
    assert item["sk"] == "GUARANTEE#amount:250.00"
    assert item["status"] == "RECEIVED"
    assert item["recordType"] == "GUARANTEE"
    assert item["rawBody"] == body.decode()
    assert item["expiresAt"] > item["receivedAtMs"] // 1000


def test_same_body_three_times_is_still_one_item(invoke_receiver: Invoke, table_items: Items) -> None:
    # GIVEN one webhook Flinks delivers three times
    event = webhook_event(guarantee_body(), secret=TEST_WEBHOOK_SECRET)

    # WHEN all three arrive
    outcomes = [_body(invoke_receiver(event))["outcome"] for _ in range(3)]

    # THEN each is acknowledged, and only the first changed anything
    assert outcomes == ["stored", "duplicate", "duplicate"]
    [item] = table_items()
    assert item["status"] == "RECEIVED"


@pytest.mark.parametrize(
    ("signature", "secret"),
    [
        pytest.param(None, None, id="missing"),
        pytest.param("sha256=" + "0" * 64, None, id="wrong-hex"),
        pytest.param(None, "not-the-secret", id="wrong-secret"),
        pytest.param("sha256=ABC", None, id="truncated"),
        pytest.param("md5=" + "0" * 64, None, id="wrong-scheme"),
    ],
)
def test_bad_signature_is_401_and_stores_nothing(
    invoke_receiver: Invoke, table_items: Items, signature: str | None, secret: str | None
) -> None:
    # GIVEN a webhook whose signature does not verify
    event = webhook_event(guarantee_body(), secret=secret, signature=signature)

    # WHEN it is delivered
    response = invoke_receiver(event)

    # THEN it is refused with a JSON error and nothing is written
    assert response["statusCode"] == 401
    assert _body(response)["error"]["code"] == "invalid_signature"
    assert table_items() == []


def test_signature_of_previous_secret_is_accepted_during_rotation(
    aws: Any, stack: CreatedResources, invoke_receiver: Invoke, table_items: Items
) -> None:
    # GIVEN a secret being rotated: Flinks still signs with the previous one
    aws.client("secretsmanager").put_secret_value(
        SecretId=stack.ref("WebhookSecret"),
        SecretString=json.dumps({"current": "brand-new-secret", "previous": TEST_PREVIOUS_WEBHOOK_SECRET}),
    )

    # WHEN a webhook signed with the previous secret arrives
    response = invoke_receiver(webhook_event(guarantee_body(), secret=TEST_PREVIOUS_WEBHOOK_SECRET))

    # THEN it is accepted
    assert response["statusCode"] == 200
    assert len(table_items()) == 1


def test_rotation_takes_effect_at_once_despite_the_cache(
    aws: Any, stack: CreatedResources, invoke_receiver: Invoke, table_items: Items
) -> None:
    # GIVEN a warm container that has cached the old secret
    assert invoke_receiver(webhook_event(guarantee_body(), secret=TEST_WEBHOOK_SECRET))["statusCode"] == 200
    aws.client("secretsmanager").put_secret_value(
        SecretId=stack.ref("WebhookSecret"), SecretString=json.dumps({"current": "rotated-secret"})
    )

    # WHEN Flinks signs with the new secret before the cache expires
    response = invoke_receiver(webhook_event(guarantee_body(), secret="rotated-secret"))

    # THEN the mismatch re-reads the secret once and the delivery is accepted
    assert response["statusCode"] == 200
    assert len(table_items()) == 2


def test_base64_encoded_body_is_verified_over_decoded_bytes(
    invoke_receiver: Invoke, table_items: Items
) -> None:
    # GIVEN API Gateway delivering the body base64-encoded
    body = guarantee_body()
    event = webhook_event(body, secret=TEST_WEBHOOK_SECRET, base64_encoded=True)

    # WHEN it is delivered
    response = invoke_receiver(event)

    # THEN the signature over the raw bytes verifies and the exact text is stored
    assert response["statusCode"] == 200
    assert table_items()[0]["rawBody"] == body.decode()


def test_invalid_base64_is_400(invoke_receiver: Invoke, table_items: Items) -> None:
    event = webhook_event(guarantee_body(), secret=TEST_WEBHOOK_SECRET, base64_encoded=True)
    event["body"] = "***not base64***"

    response = invoke_receiver(event)

    assert response["statusCode"] == 400
    assert _body(response)["error"]["code"] == "malformed_request"
    assert table_items() == []


def test_body_over_the_limit_is_413(
    function_env: Callable[..., dict[str, str]], invoke_receiver: Invoke, table_items: Items
) -> None:
    # GIVEN a correctly signed body larger than MAX_BODY_BYTES (262144 from the template)
    body = guarantee_body(padding="x" * 262_144)

    # WHEN it is delivered, plain or base64-encoded
    responses = [
        invoke_receiver(webhook_event(body, secret=TEST_WEBHOOK_SECRET, base64_encoded=encoded))
        for encoded in (False, True)
    ]

    # THEN it is refused before verification and nothing is stored
    assert [r["statusCode"] for r in responses] == [413, 413]
    assert _body(responses[0])["error"]["code"] == "payload_too_large"
    assert table_items() == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/webhooks/flinks", 405), ("PUT", "/webhooks/flinks", 405), ("POST", "/other", 404)],
)
def test_other_routes_and_methods(
    invoke_receiver: Invoke, table_items: Items, method: str, path: str, status: int
) -> None:
    event = webhook_event(guarantee_body(), secret=TEST_WEBHOOK_SECRET, method=method, path=path)

    response = invoke_receiver(event)

    assert response["statusCode"] == status
    assert "error" in _body(response)
    if status == 405:
        assert response["headers"]["allow"] == "POST"
    assert table_items() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"not json at all", "not-json", id="not-json"),
        pytest.param(b"[1, 2, 3]", "not-a-json-object", id="array"),
        pytest.param(b'{"sessionId": "not-a-uuid"}', "no-uuid-session-id", id="no-uuid"),
        pytest.param(b"\xff\xfe\x00garbage", "not-utf8", id="not-utf8"),
    ],
)
def test_signed_but_unexpected_body_is_quarantined_with_200(
    invoke_receiver: Invoke, table_items: Items, body: bytes, reason: str
) -> None:
    # GIVEN a correctly signed body we cannot act on (base64, as API Gateway sends non-UTF-8 bodies)
    event = webhook_event(body, secret=TEST_WEBHOOK_SECRET, base64_encoded=True)

    # WHEN it is delivered
    response = invoke_receiver(event)

    # THEN Flinks gets its 200 (refusing would fail the session) and an operator gets the body
    assert response["statusCode"] == 200
    assert _body(response) == {"outcome": "quarantined"}
    [item] = table_items()
    assert item["pk"] == "QUARANTINE"
    assert item["reason"] == reason
    assert bytes(item["rawBodyBytes"]) == body


def test_stale_when_is_quarantined_not_acted_on(invoke_receiver: Invoke, table_items: Items) -> None:
    # GIVEN a signed guarantee whose `when` is two days old (the default window is 24 h)
    body = guarantee_body(when="2000-01-01T00:00:00Z")

    # WHEN it is delivered
    response = invoke_receiver(webhook_event(body, secret=TEST_WEBHOOK_SECRET))

    # THEN it is kept for an operator and no guarantee item can start a confirm
    assert _body(response) == {"outcome": "quarantined"}
    [item] = table_items()
    assert item["reason"] == "outside-replay-window"


def test_session_status_event_records_final_status_without_a_guarantee(
    invoke_receiver: Invoke, table_items: Items
) -> None:
    # GIVEN a stored guarantee and then the session's final status
    session_id = str(uuid.uuid4())
    invoke_receiver(webhook_event(guarantee_body(session_id), secret=TEST_WEBHOOK_SECRET))

    # WHEN the SessionSetupStatusChanged event arrives twice
    first = invoke_receiver(webhook_event(status_body(session_id), secret=TEST_WEBHOOK_SECRET))
    second = invoke_receiver(webhook_event(status_body(session_id, "Failed"), secret=TEST_WEBHOOK_SECRET))

    # THEN the session record holds the first final status and the guarantee is untouched
    assert _body(first) == {"outcome": "status-recorded"}
    assert _body(second) == {"outcome": "duplicate"}
    items = {item["sk"]: item for item in table_items()}
    assert items["SESSION"]["finalStatus"] == "Completed"
    assert items["SESSION"]["finalStatusDetails"] == "EFT0301"
    assert items["SESSION"]["recordType"] == "SESSION"
    assert items["GUARANTEE#amount:250.00"]["status"] == "RECEIVED"


def test_persistence_failure_is_503_so_flinks_retries(
    aws: Any, stack: CreatedResources, invoke_receiver: Invoke
) -> None:
    # GIVEN the table is gone (any DynamoDB failure other than a duplicate)
    aws.client("dynamodb").delete_table(TableName=stack.ref("GuaranteesTable"))

    # WHEN a valid webhook arrives
    response = invoke_receiver(webhook_event(guarantee_body(), secret=TEST_WEBHOOK_SECRET))

    # THEN the answer is 5xx so Flinks delivers it again
    assert response["statusCode"] == 503
    assert _body(response)["error"]["code"] == "unavailable"


def test_committed_sam_event_is_accepted(invoke_receiver: Invoke, table_items: Items) -> None:
    # GIVEN events/webhook-guarantee.json, re-signed with the test secret and a fresh `when`
    event = load_event("webhook-guarantee.json")
    document = json.loads(event["body"])
    body = guarantee_body(document["sessionId"])

    # WHEN it is invoked as `sam local invoke -e` would
    response = invoke_receiver(webhook_event(body, secret=TEST_WEBHOOK_SECRET))

    # THEN it is stored
    assert response["statusCode"] == 200
    assert table_items()[0]["pk"] == document["sessionId"]


def _installed_sam_version(venv: Path) -> str | None:
    """The SAM CLI version installed in ``venv``, read from its package metadata (no CLI start)."""
    site_packages = [str(path) for path in venv.glob("lib/python*/site-packages")]
    versions = {
        found.version for found in importlib.metadata.distributions(name="aws-sam-cli", path=site_packages)
    }
    return versions.pop() if len(versions) == 1 else None


def _sam_generated_event(*kind: str) -> dict[str, Any]:
    """``sam local generate-event KIND...``'s event. Made once per SAM version and kept in SAM's
    virtualenv under a name carrying that version: the CLI takes seconds to start, the event depends
    only on SAM's version, and a SAM upgraded in place must not read the event of the one before."""
    venv = REPO_ROOT / ".venv-sam"
    sam = venv / "bin" / "sam"
    version = _installed_sam_version(venv) if sam.exists() else None
    kept = None if version is None else venv / "generated-events" / f"{'-'.join(kind)}-sam-{version}.json"
    if kept is not None and kept.exists():
        document: dict[str, Any] = json.loads(kept.read_text())
        return document
    if not sam.exists():
        sam_on_path = shutil.which("sam")
        if sam_on_path is None:
            pytest.skip("SAM CLI not installed (make setup installs it)")
        sam = Path(sam_on_path)
    generated = subprocess.run(
        [str(sam), "local", "generate-event", *kind], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    document = json.loads(generated)
    if kept is not None:  # our own install, its version known: keep it for the next run
        kept.parent.mkdir(exist_ok=True)
        partial = kept.with_suffix(".partial")
        partial.write_text(generated)
        partial.replace(kept)
    return document


def test_event_from_sam_generate_event_with_our_body(invoke_receiver: Invoke, table_items: Items) -> None:
    # GIVEN the event SAM CLI generates for an HTTP API, with our signed body put in
    generated = _sam_generated_event("apigateway", "http-api-proxy")
    body = guarantee_body()
    signed = webhook_event(body, secret=TEST_WEBHOOK_SECRET, base64_encoded=True)
    generated["rawPath"] = "/webhooks/flinks"
    generated["requestContext"]["http"].update(method="POST", path="/webhooks/flinks")
    generated["headers"] = {**generated["headers"], **signed["headers"]}
    generated["body"], generated["isBase64Encoded"] = signed["body"], True

    # WHEN it is invoked
    response = invoke_receiver(generated)

    # THEN it is stored like any other delivery
    assert response["statusCode"] == 200
    assert len(table_items()) == 1
