"""The local Flinks sandbox enforces the documented API, and its webhook emitter signs and re-delivers.

Loopback HTTP only (127.0.0.1); each test starts its own sandbox on a free port.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from geft.signature import compute_signature, verify_signature

from testkit.flinks import FlinksSandbox, Scenario, emit_guarantee_webhook, sign_body
from testkit.http import Answer, RecordingServer

USERNAME = "sandbox-test-user"
PASSWORD = "sandbox-test-password"
FORM = "application/x-www-form-urlencoded"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox() -> Iterator[FlinksSandbox]:
    with FlinksSandbox(username=USERNAME, password=PASSWORD, hang_s=0.5) as running:
        yield running


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def post_authorize(
    sandbox: FlinksSandbox, http: requests.Session, auth: tuple[str, str] | None = (USERNAME, PASSWORD)
) -> requests.Response:
    """The authorize request as the client sends it: a client_credentials grant, Basic credentials."""
    return http.post(
        f"{sandbox.base_url}/api/v1/authorize",
        data={"grant_type": "client_credentials"},
        auth=auth,
        timeout=5,
    )


def authorize(
    sandbox: FlinksSandbox, http: requests.Session, auth: tuple[str, str] = (USERNAME, PASSWORD)
) -> dict[str, str]:
    response = post_authorize(sandbox, http, auth)
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def session_url(sandbox: FlinksSandbox, session_id: str, endpoint: str) -> str:
    return f"{sandbox.base_url}/api/v2/sessions/{session_id}/{endpoint}"


def confirm(
    sandbox: FlinksSandbox, http: requests.Session, session_id: str, body: bytes, headers: dict[str, str]
) -> requests.Response:
    return http.post(
        session_url(sandbox, session_id, "guarantees/confirm"),
        data=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=5,
    )


# -- authorize -----------------------------------------------------------------------------------------


def test_authorize_issues_a_bearer_token_for_basic_credentials(
    sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN / WHEN
    response = post_authorize(sandbox, http)

    # THEN
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert uuid.UUID(body["access_token"]).version == 4
    assert (body["token_type"], body["expires_in"]) == ("bearer", 299)


def test_authorize_accepts_form_fields(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN / WHEN
    response = http.post(
        f"{sandbox.base_url}/api/v1/authorize",
        data={"grant_type": "client_credentials", "Username": USERNAME, "Password": PASSWORD},
        timeout=5,
    )

    # THEN
    assert response.status_code == 200
    (entry,) = sandbox.calls("/api/v1/authorize")
    assert PASSWORD not in entry.body


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"grant_type": "client_credentials"}}, 415),
        ({"data": {"grant_type": "password"}}, 400),
        ({"data": {}, "headers": {"Content-Type": FORM}}, 400),
        ({"data": "grant_type=client_credentials&grant_type=client_credentials"}, 400),
    ],
)
def test_authorize_enforces_content_type_and_grant_type(
    kwargs: dict[str, Any], status: int, sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN valid credentials but a malformed request
    headers = {"Content-Type": FORM, **kwargs.pop("headers", {})}
    if "json" in kwargs:
        headers = {}

    # WHEN
    response = http.post(
        f"{sandbox.base_url}/api/v1/authorize",
        auth=(USERNAME, PASSWORD),
        headers=headers,
        timeout=5,
        **kwargs,
    )

    # THEN
    assert response.status_code == status
    assert sandbox.tokens_issued == 0


def test_authorize_requires_post(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN / WHEN
    response = http.get(f"{sandbox.base_url}/api/v1/authorize", auth=(USERNAME, PASSWORD), timeout=5)

    # THEN
    assert response.status_code == 405
    assert sandbox.authorize_count == 1


@pytest.mark.parametrize(
    "auth", [(USERNAME, "wrong"), ("someone-else", PASSWORD), None], ids=["bad-password", "bad-user", "none"]
)
def test_authorize_refuses_bad_credentials_with_401_json(
    auth: tuple[str, str] | None, sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN / WHEN
    response = post_authorize(sandbox, http, auth)

    # THEN
    assert response.status_code == 401
    assert response.json()["title"] == "Authentication Required"


def test_authorize_transport_can_be_restricted(http: requests.Session) -> None:
    # GIVEN a sandbox accepting only form fields
    with FlinksSandbox(username=USERNAME, password=PASSWORD, accepted_transports=["form"]) as sandbox:
        # WHEN correct credentials arrive in a Basic header
        response = post_authorize(sandbox, http)

    # THEN
    assert response.status_code == 401


# -- session endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["details", "status"])
def test_session_endpoints_require_a_known_bearer(
    endpoint: str, sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN
    session_id = sandbox.add_session()

    # WHEN
    missing = http.get(session_url(sandbox, session_id, endpoint), timeout=5)
    unknown = http.get(
        session_url(sandbox, session_id, endpoint),
        headers={"Authorization": f"Bearer {uuid.uuid4()}"},
        timeout=5,
    )

    # THEN
    for response in (missing, unknown):
        assert response.status_code == 401
        assert response.headers["Content-Type"].startswith("application/problem+json")
        problem = response.json()
        assert (problem["title"], problem["status"]) == ("Authentication Required", 401)
        assert problem["type"]


def test_expired_token_is_refused(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    session_id = sandbox.add_session()
    headers = authorize(sandbox, http)
    sandbox.expire_tokens()

    # WHEN
    response = http.get(session_url(sandbox, session_id, "details"), headers=headers, timeout=5)

    # THEN
    assert response.status_code == 401


def test_session_id_must_be_a_uuid(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    headers = authorize(sandbox, http)

    # WHEN
    response = http.get(session_url(sandbox, "not-a-uuid", "details"), headers=headers, timeout=5)

    # THEN
    assert response.status_code == 400


def test_unknown_session_is_404_session_not_found(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    headers = authorize(sandbox, http)

    # WHEN
    response = confirm(sandbox, http, str(uuid.uuid4()), b'{"guaranteeAccepted": true}', headers)

    # THEN
    assert response.status_code == 404
    assert response.json()["title"] == "Session Not Found"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"guaranteeAccepted": "true"}', "application/json", 400),
        (b'{"guaranteeAccepted": 1}', "application/json", 400),
        (b'{"guaranteeAccepted": true, "extra": 1}', "application/json", 400),
        (b'{"guaranteeAccepted": true, "guaranteeAccepted": false}', "application/json", 400),
        (b"[true]", "application/json", 400),
        (b"guaranteeAccepted=true", "application/json", 400),
        (b'{"guaranteeAccepted": true}', "text/plain", 415),
        (b'{"guaranteeAccepted": true}', FORM, 415),
    ],
)
def test_confirm_enforces_a_json_boolean_body(
    body: bytes, content_type: str, status: int, sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN
    session_id = sandbox.add_session()
    headers = {**authorize(sandbox, http), "Content-Type": content_type}

    # WHEN
    response = confirm(sandbox, http, session_id, body, headers)

    # THEN
    assert response.status_code == status
    assert sandbox.decision_of(session_id) is None
    assert sandbox.confirms_for(session_id) == []


def test_confirm_records_the_decision_and_journals_a_repeat(
    sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN
    session_id = sandbox.add_session(scenario=Scenario(reference_id="REF-9"))
    headers = authorize(sandbox, http)

    # WHEN two confirms arrive, the second one contradicting the first
    first = confirm(sandbox, http, session_id, b'{"guaranteeAccepted": true}', headers)
    second = confirm(sandbox, http, session_id, b'{"guaranteeAccepted": false}', headers)

    # THEN both are answered 200, the first decision stands, and both are counted
    assert first.json() == {"sessionId": session_id, "referenceId": "REF-9"}
    assert second.status_code == 200
    assert sandbox.decision_of(session_id) is True
    assert sandbox.confirms_for(session_id) == [True, False]
    assert [entry.repeat for entry in sandbox.calls("/guarantees/confirm")] == [False, True]


def test_details_current_shape_and_status_lifecycle(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    session_id = sandbox.add_session(scenario=Scenario(amount="120.50", available_balance=900))
    headers = authorize(sandbox, http)
    status_url = session_url(sandbox, session_id, "status")

    # WHEN
    initial = http.get(status_url, headers=headers, timeout=5).json()
    before = http.get(session_url(sandbox, session_id, "details"), headers=headers, timeout=5).json()
    reading = http.get(status_url, headers=headers, timeout=5).json()
    confirm(sandbox, http, session_id, b'{"guaranteeAccepted": true}', headers)
    after = http.get(session_url(sandbox, session_id, "details"), headers=headers, timeout=5).json()
    final = http.get(status_url, headers=headers, timeout=5).json()

    # THEN
    assert initial == {
        "sessionId": session_id,
        "referenceId": initial["referenceId"],
        "amount": 120.5,
        "status": "Initiated",
        "statusDetails": "EFT0101",
    }
    assert before["step"]["current"] == "GuaranteeOffer"
    assert (before["currency"], before["amount"]) == ("CAD", 120.5)
    assert before["payor"]["account"]["availableBalance"] == 900
    assert before["guaranteeDetails"] == {
        "guaranteeOffered": True,
        "guaranteeAccepted": None,
        "highestDebitAmountToGuarantee": 120.5,
        "overallRiskLevel": "Low",
        "transactionRiskLevel": "Low",
        "userRiskLevel": "Low",
        "otherRiskLevel": "Low",
    }
    assert reading["status"] == "InProgress"
    assert after["guaranteeDetails"]["guaranteeAccepted"] is True
    assert (final["status"], final["statusDetails"]) == ("Completed", "EFT0301")


def test_reject_fails_the_session_and_status_is_settable(
    sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN
    session_id = sandbox.add_session()
    headers = authorize(sandbox, http)
    status_url = session_url(sandbox, session_id, "status")

    # WHEN
    confirm(sandbox, http, session_id, b'{"guaranteeAccepted": false}', headers)
    rejected = http.get(status_url, headers=headers, timeout=5).json()
    sandbox.set_status(session_id, "Expired", "EFT0601")
    expired = http.get(status_url, headers=headers, timeout=5).json()

    # THEN
    assert (rejected["status"], rejected["statusDetails"]) == ("Failed", "EFT0402")
    assert (expired["status"], expired["statusDetails"]) == ("Expired", "EFT0601")


def test_legacy_details_shape(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    session_id = sandbox.add_session(scenario=Scenario.preset("shortfall", legacy_details_shape=True))

    # WHEN
    details = http.get(
        session_url(sandbox, session_id, "details"), headers=authorize(sandbox, http), timeout=5
    ).json()

    # THEN
    assert "guaranteeDetails" not in details
    assert set(details["guarantee"]) == {"status", "approvedAt", "coverage"}
    assert details["guarantee"]["coverage"] == 100
    assert set(details["payor"]["verifiedAccount"]) >= {"institutionName", "accountType", "accountNumber"}


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (
            "accept",
            {"guaranteeOffered": True, "overallRiskLevel": "Low", "highestDebitAmountToGuarantee": 250},
        ),
        ("high-risk", {"overallRiskLevel": "High"}),
        ("shortfall", {"highestDebitAmountToGuarantee": 100}),
        ("no-guarantee", {"guaranteeOffered": False, "highestDebitAmountToGuarantee": None}),
    ],
)
def test_presets_shape_the_guarantee(
    preset: str, expected: dict[str, Any], sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN
    session_id = sandbox.add_session(scenario=Scenario.preset(preset))

    # WHEN
    details = http.get(
        session_url(sandbox, session_id, "details"), headers=authorize(sandbox, http), timeout=5
    ).json()

    # THEN
    assert details["amount"] == 250
    assert details["guaranteeDetails"].items() >= expected.items()


def test_status_can_be_served_without_auth_when_configured(http: requests.Session) -> None:
    # GIVEN the reading of the docs where /status needs no token
    with FlinksSandbox(status_requires_auth=False) as sandbox:
        session_id = sandbox.add_session()

        # WHEN
        response = http.get(session_url(sandbox, session_id, "status"), timeout=5)

    # THEN
    assert response.status_code == 200


def test_journal_redacts_secrets(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    session_id = sandbox.add_session()
    headers = authorize(sandbox, http)
    token = headers["Authorization"].split(" ", 1)[1]
    http.get(
        session_url(sandbox, session_id, "details"), headers={**headers, "x-api-key": "k-123"}, timeout=5
    )

    # WHEN
    journal = json.dumps([entry.to_json() for entry in sandbox.calls()])

    # THEN
    assert token not in journal
    assert PASSWORD not in journal
    assert "k-123" not in journal
    assert sandbox.calls("/details")[0].headers["authorization"] == "Bearer [redacted]"


# -- faults, latency, lifecycle ------------------------------------------------------------------------


def test_fault_plan_plays_in_order_then_behaves(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    session_id = sandbox.add_session(
        scenario=Scenario(faults={"details": ["503:retry-after=7", "malformed", "404", "429"]})
    )
    headers = authorize(sandbox, http)
    url = session_url(sandbox, session_id, "details")

    # WHEN
    answers = [http.get(url, headers=headers, timeout=5) for _ in range(5)]

    # THEN
    assert [answer.status_code for answer in answers] == [503, 200, 404, 429, 200]
    assert answers[0].headers["Retry-After"] == "7"
    with pytest.raises(ValueError, match="Expecting value"):
        answers[1].json()
    assert answers[4].json()["sessionId"] == session_id
    assert [entry.fault for entry in sandbox.calls("/details")] == [
        "503:retry-after=7",
        "malformed",
        "404",
        "429",
        None,
    ]


def test_reset_fault_drops_the_connection_without_acting(
    sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN
    session_id = sandbox.add_session(scenario=Scenario(faults={"confirm": ["reset"]}))
    headers = authorize(sandbox, http)

    # WHEN / THEN
    with pytest.raises(requests.ConnectionError):
        confirm(sandbox, http, session_id, b'{"guaranteeAccepted": true}', headers)
    assert sandbox.decision_of(session_id) is None
    assert sandbox.calls("/guarantees/confirm")[0].response_status is None


def test_timeout_fault_hangs_then_answers_504(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN a 0.5 s hang
    session_id = sandbox.add_session(scenario=Scenario(faults={"status": ["timeout"]}))
    headers = authorize(sandbox, http)
    started = time.monotonic()

    # WHEN
    response = http.get(session_url(sandbox, session_id, "status"), headers=headers, timeout=5)

    # THEN
    assert response.status_code == 504
    assert time.monotonic() - started >= 0.45  # it did hang (a lower bound cannot flake)


def test_session_latency_is_added(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    session_id = sandbox.add_session(scenario=Scenario(latency_ms=150))
    headers = authorize(sandbox, http)
    started = time.monotonic()

    # WHEN
    http.get(session_url(sandbox, session_id, "status"), headers=headers, timeout=5)

    # THEN
    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize(
    "scenario",
    [
        {"faults": {"confirm": ["teapot"]}},
        {"faults": {"cancel": ["500"]}},
        {"faults": {"confirm": "500"}},
        {"amount": "lots"},
        {"latency_ms": 10**9},
        {"guarantee_offered": "yes"},
    ],
)
def test_scenario_rejects_nonsense(scenario: dict[str, Any]) -> None:
    # GIVEN / WHEN / THEN
    with pytest.raises(ValueError):  # noqa: PT011 - each case fails on a different field
        Scenario.from_json(scenario)


def test_stop_wakes_a_hang_and_frees_the_port(http: requests.Session) -> None:
    # GIVEN a request stuck in a long hang
    sandbox = FlinksSandbox(hang_s=20.0).start()
    port = sandbox.port
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": ["timeout"]}))
    headers = authorize(sandbox, http, ("sandbox-user", "sandbox-pass"))  # the sandbox's defaults
    outcome: list[object] = []

    def stuck() -> None:
        try:
            outcome.append(http.get(session_url(sandbox, session_id, "details"), headers=headers, timeout=30))
        except requests.RequestException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=stuck)
    caller.start()
    time.sleep(0.1)
    started = time.monotonic()

    # WHEN
    sandbox.stop()

    # THEN it returned long before the 20 s hang would have ended
    assert time.monotonic() - started < 10.0
    caller.join(5)
    assert isinstance(outcome[0], requests.ConnectionError)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


# -- admin API -----------------------------------------------------------------------------------------


def test_admin_api_registers_a_session_and_reports_its_calls(
    sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN a session registered over HTTP, as the local stack would
    created = http.post(
        f"{sandbox.base_url}/_sandbox/sessions",
        json={"preset": "shortfall", "reference_id": "STACK-1", "faults": {"confirm": ["500"]}},
        timeout=5,
    )
    session_id = created.json()["sessionId"]
    headers = authorize(sandbox, http)

    # WHEN
    failed = confirm(sandbox, http, session_id, b'{"guaranteeAccepted": false}', headers)
    confirmed = confirm(sandbox, http, session_id, b'{"guaranteeAccepted": false}', headers)
    state = http.get(f"{sandbox.base_url}/_sandbox/sessions/{session_id}", timeout=5).json()

    # THEN
    assert created.status_code == 201
    assert (failed.status_code, confirmed.status_code) == (500, 200)
    assert state["registered"] is True
    assert state["referenceId"] == "STACK-1"
    assert state["decision"] is False
    assert state["confirms"] == [False]
    assert [call["response_status"] for call in state["calls"]] == [500, 200]


def test_admin_api_with_explicit_id_status_and_faults(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    session_id = str(uuid.uuid4())
    base = f"{sandbox.base_url}/_sandbox/sessions"

    # WHEN
    created = http.post(base, json={"session_id": session_id, "amount": 75}, timeout=5)
    status = http.post(
        f"{base}/{session_id}/status", json={"status": "Canceled", "statusDetails": "EFT0501"}, timeout=5
    )
    faults = http.post(f"{base}/{session_id}/faults", json={"details": ["502"]}, timeout=5)
    duplicate = http.post(base, json={"session_id": session_id}, timeout=5)
    recovered = http.delete(f"{base}/{session_id}/faults", timeout=5)

    # THEN
    assert created.json() == {"sessionId": session_id}
    assert status.json()["status"] == "Canceled"
    assert faults.json()["pendingFaults"] == {"details": ["502"]}
    assert duplicate.status_code == 400
    assert recovered.json()["pendingFaults"] == {}


def test_admin_api_reports_unregistered_sessions(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    created = http.post(f"{sandbox.base_url}/_sandbox/sessions", json={"preset": "not-found"}, timeout=5)
    session_id = created.json()["sessionId"]

    # WHEN
    state = http.get(f"{sandbox.base_url}/_sandbox/sessions/{session_id}", timeout=5).json()

    # THEN
    assert state == {"sessionId": session_id, "registered": False, "confirms": [], "calls": []}


@pytest.mark.parametrize(
    "body", [{"bogus_field": 1}, {"faults": {"confirm": ["teapot"]}}, {"preset": "nope"}, [1, 2]]
)
def test_admin_api_rejects_bad_scenarios(
    body: object, sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN / WHEN
    response = http.post(f"{sandbox.base_url}/_sandbox/sessions", json=body, timeout=5)

    # THEN
    assert response.status_code == 400
    assert response.json()["detail"]


def test_admin_health(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN / WHEN
    response = http.get(f"{sandbox.base_url}/_sandbox/health", timeout=5)

    # THEN
    assert response.json() == {"ok": True}
    assert sandbox.calls() == []


def test_runs_as_a_process_and_stops_on_sigterm(http: requests.Session) -> None:
    # GIVEN
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "local"), str(ROOT)])}
    command = [
        sys.executable,
        "-m",
        "geft_local.flinks_sandbox",
        "--port",
        "0",
        "--username",
        "u",
        "--password",
        "p",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        base_url = line.removeprefix("FLINKS_SANDBOX_URL=")

        # WHEN
        token = http.post(
            f"{base_url}/api/v1/authorize",
            data={"grant_type": "client_credentials"},
            auth=("u", "p"),
            timeout=5,
        )
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    # THEN
    assert line.startswith("FLINKS_SANDBOX_URL=http://127.0.0.1:")
    assert token.status_code == 200
    assert code == 0


# -- webhook emitter -----------------------------------------------------------------------------------


def _receiver(statuses: list[int]) -> RecordingServer:
    """A tiny webhook receiver: answers the planned statuses in order (then 200) and keeps what arrived."""
    planned = list(statuses)
    return RecordingServer(lambda request: Answer(planned.pop(0) if planned else 200))


def _received(receiver: RecordingServer) -> list[tuple[dict[str, str], bytes]]:
    return [(request.headers, request.body) for request in receiver.requests]


def test_sign_body_matches_an_independent_hmac_and_the_service_verifier() -> None:
    # GIVEN
    body = '{"type":"GuaranteeEmitted","referenceId":"Café"}'.encode()
    secret = "whsec-ünïcode"

    # WHEN
    header = sign_body(body, secret)

    # THEN
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().upper()
    assert header == f"sha256={expected}"
    assert header == compute_signature(body, secret)
    assert verify_signature(body, header, [secret])
    assert not verify_signature(body + b" ", header, [secret])


def test_emitter_redelivers_the_same_signed_bytes_until_2xx(sandbox: FlinksSandbox) -> None:
    # GIVEN a receiver that fails the first two deliveries
    session_id = sandbox.add_session(scenario=Scenario(reference_id="REF-7", amount="99.95"))
    with _receiver([500, 503]) as receiver:
        # WHEN
        result = sandbox.emit_guarantee_webhook(
            f"{receiver.url}/webhooks/flinks", "whsec-1", session_id, attempts=3, timeout=2
        )

    # THEN
    assert result.delivered
    assert [status for status, _ in result.attempts] == [500, 503, 200]
    assert all(elapsed >= 0 for _, elapsed in result.attempts)
    bodies = {body for _, body in _received(receiver)}
    assert len(_received(receiver)) == 3
    assert len(bodies) == 1
    (body,) = bodies
    for headers, _ in _received(receiver):
        assert headers["content-type"] == "application/json; charset=utf-8"
        expected = hmac.new(b"whsec-1", body, hashlib.sha256).hexdigest().upper()
        assert headers["x-webhook-signature"] == f"sha256={expected}"
    document = json.loads(body)
    assert document["type"] == "GuaranteeEmitted"
    assert document["sessionId"] == session_id
    assert (document["referenceId"], document["amount"]) == ("REF-7", 99.95)
    assert document["when"].endswith("Z")


def test_emitter_gives_up_after_the_attempts() -> None:
    # GIVEN a receiver that always fails
    with _receiver([401, 401, 401, 401]) as receiver:
        # WHEN
        result = emit_guarantee_webhook(
            f"{receiver.url}/webhooks/flinks",
            "wrong",
            str(uuid.uuid4()),
            body={"custom": True},
            attempts=3,
            spacing_s=0.01,
        )

    # THEN
    assert not result.delivered
    assert [status for status, _ in result.attempts] == [401, 401, 401]
    assert [json.loads(body) for _, body in _received(receiver)] == [{"custom": True}] * 3


def test_emitter_counts_connection_errors_as_failed_attempts() -> None:
    # GIVEN a port nobody listens on
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]

    # WHEN
    result = emit_guarantee_webhook(
        f"http://127.0.0.1:{port}/hook", "s", str(uuid.uuid4()), attempts=2, timeout=1
    )

    # THEN
    assert not result.delivered
    assert [status for status, _ in result.attempts] == [None, None]


def test_emitter_sends_raw_bytes_untouched() -> None:
    # GIVEN bytes a re-serializer would change
    raw = b'{ "sessionId" : "x",  "when":"2026-01-31T14:05:12Z" }'
    with _receiver([]) as receiver:
        # WHEN
        result = emit_guarantee_webhook(f"{receiver.url}/webhooks/flinks", "s", "x", raw_body=raw, attempts=1)

    # THEN
    assert result.delivered
    ((headers, body),) = _received(receiver)
    assert body == raw
    assert headers["x-webhook-signature"] == sign_body(raw, "s")


# -- tokens, second offers, late and oversized answers ---------------------------------------------------


def test_a_token_serves_only_the_first_session_it_was_used_on(
    sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN two sessions and one token (Flinks: one token per session)
    first, second = sandbox.add_session(), sandbox.add_session()
    headers = authorize(sandbox, http)

    # WHEN
    on_first = http.get(session_url(sandbox, first, "details"), headers=headers, timeout=5)
    on_second = http.get(session_url(sandbox, second, "details"), headers=headers, timeout=5)
    again_first = http.get(session_url(sandbox, first, "status"), headers=headers, timeout=5)

    # THEN
    assert (on_first.status_code, on_second.status_code, again_first.status_code) == (200, 401, 200)


def _details(sandbox: FlinksSandbox, http: requests.Session, session_id: str) -> dict[str, Any]:
    response = http.get(
        session_url(sandbox, session_id, "details"), headers=authorize(sandbox, http), timeout=5
    )
    document: dict[str, Any] = response.json()
    return document


@pytest.mark.parametrize(("reading", "shown"), [("reset", None), ("sticky", True)])
def test_a_second_offer_shows_its_own_amounts_and_the_scenarios_reading_of_accepted(
    reading: str, shown: bool | None, sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN a session whose first guarantee (250) was accepted
    session_id = sandbox.add_session(scenario=Scenario(nbo_guarantee_accepted=reading))
    confirm(sandbox, http, session_id, b'{"guaranteeAccepted": true}', authorize(sandbox, http))

    # WHEN Flinks emits a Next Best Offer for the session
    number = sandbox.offer_guarantee(session_id, amount="180.00", highest_debit_amount_to_guarantee=120)
    details = _details(sandbox, http, session_id)

    # THEN /details describes the new offer; guaranteeAccepted resets, or stays at the first value
    assert number == 2
    assert details["amount"] == 180
    assert details["guaranteeDetails"]["highestDebitAmountToGuarantee"] == 120
    assert details["guaranteeDetails"]["guaranteeAccepted"] is shown
    assert "guaranteeId" not in details["guaranteeDetails"]  # this scenario does not expose ids
    assert details["step"]["current"] == "GuaranteeOffer"
    assert sandbox.session_state(session_id)["status"] == "InProgress"

    # WHEN the second offer is rejected
    confirm(sandbox, http, session_id, b'{"guaranteeAccepted": false}', authorize(sandbox, http))

    # THEN the confirms are journaled per offer, and /details shows the second offer's decision
    assert sandbox.confirms_for(session_id, offer=1) == [True]
    assert sandbox.confirms_for(session_id, offer=2) == [False]
    assert [entry.offer for entry in sandbox.calls("/guarantees/confirm")] == [1, 2]
    assert _details(sandbox, http, session_id)["guaranteeDetails"]["guaranteeAccepted"] is False
    assert (sandbox.decision_of(session_id, offer=1), sandbox.decision_of(session_id)) == (True, False)


def test_guarantee_ids_when_the_scenario_exposes_them(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN a scenario exposing ids, with a first offer's id given and a second's generated
    session_id = sandbox.add_session(scenario=Scenario(expose_guarantee_ids=True, guarantee_id="G-1"))
    first = _details(sandbox, http, session_id)["guaranteeDetails"]["guaranteeId"]
    sandbox.offer_guarantee(session_id, amount=90)
    second = _details(sandbox, http, session_id)["guaranteeDetails"]["guaranteeId"]
    sandbox.offer_guarantee(session_id, amount=80, guarantee_id="G-3")
    third = _details(sandbox, http, session_id)["guaranteeDetails"]["guaranteeId"]

    # THEN
    assert first == "G-1"
    assert uuid.UUID(second)
    assert third == "G-3"
    assert [offer["guaranteeId"] for offer in sandbox.session_state(session_id)["offers"]] == [
        "G-1",
        second,
        "G-3",
    ]


def test_the_second_offers_webhook_carries_its_amount_and_id(sandbox: FlinksSandbox) -> None:
    # GIVEN a session with a second offer
    session_id = sandbox.add_session(scenario=Scenario(reference_id="REF-NBO", amount="300.00"))
    sandbox.offer_guarantee(session_id, amount="150.00", guarantee_id="G-2")
    with _receiver([]) as receiver:
        # WHEN Flinks delivers the current offer's webhook, then the first offer's again
        assert sandbox.emit_guarantee_webhook(
            f"{receiver.url}/webhooks/flinks", "whsec-1", session_id, attempts=1
        ).delivered
        assert sandbox.emit_guarantee_webhook(
            f"{receiver.url}/webhooks/flinks", "whsec-1", session_id, offer=1, attempts=1
        ).delivered

    # THEN
    second, first = (json.loads(body) for _, body in _received(receiver))
    assert (second["amount"], second["guaranteeId"], second["referenceId"]) == (150, "G-2", "REF-NBO")
    assert first["amount"] == 300
    assert "guaranteeId" not in first


def test_admin_api_adds_an_offer(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN
    session_id = sandbox.add_session()
    url = f"{sandbox.base_url}/_sandbox/sessions/{session_id}/offers"

    # WHEN
    added = http.post(
        url, json={"amount": 99.5, "highestDebitAmountToGuarantee": 50, "guaranteeId": "G-9"}, timeout=5
    )
    missing_amount = http.post(url, json={"guaranteeId": "G-10"}, timeout=5)
    unknown_field = http.post(url, json={"amount": 1, "colour": "red"}, timeout=5)
    unknown_session = http.post(
        f"{sandbox.base_url}/_sandbox/sessions/{uuid.uuid4()}/offers", json={"amount": 1}, timeout=5
    )

    # THEN
    assert added.status_code == 201
    assert added.json()["offers"][1] == {
        "offer": 2,
        "amount": 99.5,
        "highestDebitAmountToGuarantee": 50,
        "guaranteeId": "G-9",
        "decision": None,
        "confirms": [],
    }
    assert (missing_amount.status_code, unknown_field.status_code, unknown_session.status_code) == (
        400,
        400,
        404,
    )


def test_every_documented_admin_route_answers(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN the admin API as the module docstring documents it, and one session
    import testkit.flinks as module

    assert module.__doc__ is not None
    routes = re.findall(r"^ {4}(GET|POST|DELETE) +(/_sandbox/\S*)", module.__doc__, flags=re.MULTILINE)
    session_id = sandbox.add_session()
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/_sandbox/sessions"): {"preset": "accept"},
        ("POST", "/_sandbox/sessions/{id}/status"): {"status": "Canceled", "statusDetails": "EFT0501"},
        ("POST", "/_sandbox/sessions/{id}/faults"): {"details": ["503"]},
        ("POST", "/_sandbox/sessions/{id}/offers"): {"amount": 10},
    }

    # WHEN each documented route is called
    statuses = {
        (method, path): http.request(
            method,
            sandbox.base_url + path.replace("{id}", session_id),
            json=bodies.get((method, path)),
            timeout=5,
        ).status_code
        for method, path in routes
    }

    # THEN every one exists and succeeds
    assert len(statuses) == 8
    assert set(statuses.values()) <= {200, 201}, statuses


def test_slow_apply_answers_late_and_shows_no_decision_meanwhile(
    sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN a confirm Flinks applies 1 s after it arrives
    session_id = sandbox.add_session(scenario=Scenario(faults={"confirm": ["slow-apply:1"]}))
    headers = authorize(sandbox, http)
    answers: list[requests.Response] = []
    started = time.monotonic()
    sender = threading.Thread(
        target=lambda: answers.append(
            confirm(sandbox, requests.Session(), session_id, b'{"guaranteeAccepted": true}', headers)
        )
    )

    # WHEN it is sent, and /details is read while it is being applied
    sender.start()
    time.sleep(0.3)
    meanwhile = http.get(session_url(sandbox, session_id, "details"), headers=headers, timeout=5).json()
    sender.join(10)

    # THEN nothing showed until it was applied, then it was answered 200 (late) and recorded once
    assert meanwhile["guaranteeDetails"]["guaranteeAccepted"] is None
    assert answers[0].status_code == 200
    assert time.monotonic() - started >= 1.0
    assert sandbox.confirms_for(session_id) == [True]


@pytest.mark.parametrize("chunked", [False, True])
def test_oversize_streams_a_json_body_of_exactly_n_bytes(
    chunked: bool, sandbox: FlinksSandbox, http: requests.Session
) -> None:
    # GIVEN
    size = 3 * 65536 + 17
    fault = f"oversize-chunked:{size}" if chunked else f"oversize:{size}"
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": [fault]}))

    # WHEN
    response = http.get(
        session_url(sandbox, session_id, "details"), headers=authorize(sandbox, http), timeout=5
    )

    # THEN
    assert response.status_code == 200
    assert len(response.content) == size
    assert json.loads(response.content) == {"pad": "x" * (size - 10)}
    assert ("Content-Length" in response.headers) is not chunked
    assert (response.headers.get("Transfer-Encoding") == "chunked") is chunked
    assert sandbox.calls("/details")[0].response_bytes == size


def test_dribble_writes_one_byte_at_a_time(sandbox: FlinksSandbox, http: requests.Session) -> None:
    # GIVEN a status answered one byte every 0.2 s from its status line on
    session_id = sandbox.add_session(scenario=Scenario(faults={"status": ["dribble:0.2"]}))
    token = authorize(sandbox, http)["Authorization"]
    request = (
        f"GET /api/v2/sessions/{session_id}/status HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\r\n"
    )

    # WHEN a raw client reads what arrives in the first second
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as raw:
        raw.sendall(request.encode())
        raw.settimeout(0.1)
        received = b""
        give_up_at = time.monotonic() + 1.0
        while time.monotonic() < give_up_at:
            with contextlib.suppress(TimeoutError):
                received += raw.recv(100)

    # THEN only a few bytes of the status line came (a normal answer comes whole in milliseconds)
    assert received.startswith(b"HTTP/1.1 200"[: len(received)])
    assert 1 <= len(received) <= 8


@pytest.mark.parametrize(
    ("endpoint", "fault"),
    [
        ("details", "slow-apply:1"),
        ("confirm", "oversize:0"),
        ("confirm", "dribble:100"),
        ("details", "dribble:-1"),
        ("status", "oversize:lots"),
    ],
)
def test_new_faults_reject_nonsense(endpoint: str, fault: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case fails on a different check
        Scenario(faults={endpoint: [fault]})
