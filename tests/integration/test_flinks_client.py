"""FlinksClient against the local Flinks sandbox over real HTTP on 127.0.0.1 (no patching of requests).

Every exchange is also observed through ``on_call`` (``tests.support.flinks_calls.CallRecorder``),
so each test can assert what the client itself reports next to what the sandbox saw.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from geft.backoff import RetryPolicy
from geft.errors import (
    FlinksAuthError,
    FlinksConfirmOutcomeUnknownError,
    FlinksConflictError,
    FlinksPermanentError,
    FlinksProtocolError,
    FlinksSessionNotFoundError,
    FlinksTransientError,
)
from geft.flinks_client import CallObservation, ConfirmResult, FlinksClient, FlinksCredentials, SessionCalls

from testkit.flinks import FlinksSandbox, Scenario
from tests.support.flinks_calls import CallRecorder

USERNAME = "geft-client"
PASSWORD = "pa55-word-not-in-logs"
CONFIRM = "/guarantees/confirm"
DETAILS = "/details"
AUTHORIZE = "/api/v1/authorize"

SandboxFactory = Callable[..., FlinksSandbox]
ClientFactory = Callable[..., FlinksClient]


class RecordingSleep:
    """Injected ``sleep``: records each backoff instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def make_sandbox() -> Iterator[SandboxFactory]:
    with ExitStack() as stack:

        def factory(**options: Any) -> FlinksSandbox:
            options = {"username": USERNAME, "password": PASSWORD, "hang_s": 1.0, **options}
            return stack.enter_context(FlinksSandbox(**options))

        yield factory


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> FlinksSandbox:
    return make_sandbox()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def make_client(sleep: RecordingSleep, recorder: CallRecorder) -> Iterator[ClientFactory]:
    with ExitStack() as stack:

        def factory(sandbox: FlinksSandbox, **options: Any) -> FlinksClient:
            credentials = options.pop("credentials", FlinksCredentials(USERNAME, PASSWORD))
            options = {
                "sleep": sleep,
                "rand": lambda: 1.0,
                "connect_timeout": 1.0,
                "read_timeout": 2.0,
                "on_call": recorder,
                **options,
            }
            client = FlinksClient(sandbox.base_url, lambda: credentials, **options)
            stack.callback(client.close)
            return client

        yield factory


def deadline_in(seconds: float) -> float:
    return time.monotonic() + seconds


def calls_with_faults(
    sandbox: FlinksSandbox, make_client: ClientFactory, faults: dict[str, list[str]]
) -> SessionCalls:
    """A default client's calls for a new session whose endpoints first answer with ``faults``."""
    session_id = sandbox.add_session(scenario=Scenario(faults=faults))
    return make_client(sandbox).for_session(session_id, deadline=deadline_in(10))


# -- authorize and headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "expected_authorization", "expected_body"),
    [
        pytest.param("basic", "Basic [redacted]", "grant_type=client_credentials", id="basic"),
        pytest.param(
            "form",
            None,
            f"grant_type=client_credentials&Username={USERNAME}&Password=%5Bredacted%5D",
            id="form",
        ),
    ],
)
def test_each_transport_authorizes_where_it_alone_is_accepted(
    make_sandbox: SandboxFactory,
    make_client: ClientFactory,
    transport: str,
    expected_authorization: str | None,
    expected_body: str,
) -> None:
    # GIVEN a sandbox that accepts credentials only in this transport (Basic header, or form fields)
    sandbox = make_sandbox(accepted_transports=[transport])
    session_id = sandbox.add_session()
    client = make_client(sandbox, credential_transport=transport)

    # WHEN
    details = client.for_session(session_id, deadline=deadline_in(10)).details()

    # THEN
    assert details["sessionId"] == session_id
    (authorize,) = sandbox.calls(AUTHORIZE)
    assert authorize.response_status == 200
    assert authorize.headers.get("authorization") == expected_authorization
    assert authorize.headers["content-type"] == "application/x-www-form-urlencoded"
    assert authorize.body == expected_body


@pytest.mark.parametrize(("transport", "accepted"), [("basic", "form"), ("form", "basic")])
def test_a_transport_is_refused_where_only_the_other_is_accepted(
    make_sandbox: SandboxFactory, make_client: ClientFactory, transport: str, accepted: str
) -> None:
    # GIVEN
    sandbox = make_sandbox(accepted_transports=[accepted])
    session_id = sandbox.add_session()
    client = make_client(sandbox, credential_transport=transport)

    # WHEN / THEN
    with pytest.raises(FlinksAuthError) as caught:
        client.for_session(session_id, deadline=deadline_in(10)).details()
    assert caught.value.status_code == 401
    assert PASSWORD not in str(caught.value)
    assert sandbox.authorize_count == 1
    assert sandbox.calls(DETAILS) == []


def test_wrong_password_is_an_auth_error_without_retry(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN
    session_id = sandbox.add_session()
    client = make_client(sandbox, credentials=FlinksCredentials(USERNAME, "wrong-password"))

    # WHEN / THEN
    with pytest.raises(FlinksAuthError) as caught:
        client.for_session(session_id, deadline=deadline_in(10)).confirm(True)
    assert "wrong-password" not in str(caught.value)
    assert sandbox.authorize_count == 1
    assert sandbox.calls(CONFIRM) == []


def test_client_id_and_api_key_go_on_every_call(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    # GIVEN a sandbox that requires both identity headers
    sandbox = make_sandbox(client_id="client-42", api_key="api-key-secret")
    session_id = sandbox.add_session()
    credentials = FlinksCredentials(USERNAME, PASSWORD, client_id="client-42", api_key="api-key-secret")
    client = make_client(sandbox, credentials=credentials)
    calls = client.for_session(session_id, deadline=deadline_in(10))

    # WHEN
    calls.details()
    calls.confirm(True)
    calls.status()

    # THEN
    entries = sandbox.calls()
    assert [entry.endpoint for entry in entries] == ["authorize", "details", "confirm", "status"]
    assert all(entry.headers["x-client-id"] == "client-42" for entry in entries)
    assert all(entry.headers["x-api-key"] == "[redacted]" for entry in entries)
    assert all(entry.response_status == 200 for entry in entries)


def test_identity_headers_absent_when_credentials_have_none(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    # GIVEN a sandbox that requires an API key, and credentials without one
    sandbox = make_sandbox(api_key="api-key-secret")
    session_id = sandbox.add_session()
    client = make_client(sandbox)

    # WHEN / THEN
    with pytest.raises(FlinksAuthError):
        client.for_session(session_id, deadline=deadline_in(10)).details()
    (authorize,) = sandbox.calls(AUTHORIZE)
    assert "x-api-key" not in authorize.headers
    assert "x-client-id" not in authorize.headers


def test_one_authorize_per_session_for_details_and_confirm(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN tokens bound to the first session they touch (the sandbox's default), and two sessions
    first, second = sandbox.add_session(), sandbox.add_session()
    client = make_client(sandbox)

    # WHEN each session reads details and confirms
    for session_id in (first, second):
        calls = client.for_session(session_id, deadline=deadline_in(10))
        calls.details()
        result = calls.confirm(True)
        assert result == ConfirmResult(session_id, sandbox.session_state(session_id)["referenceId"], True)

    # THEN one token per session, never shared
    assert sandbox.authorize_count == 2
    assert recorder.by_operation() == {"authorize": 2, "details": 2, "confirm": 2}
    assert {observation.status_class for observation in recorder.observations} == {"2xx"}
    assert sandbox.confirms_for(first) == [True]
    assert sandbox.confirms_for(second) == [True]


def test_401_reauthorizes_once_and_retries_the_call(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN a confirm that meets one stale-token 401
    session_id = sandbox.add_session(scenario=Scenario(faults={"confirm": ["401"]}))
    client = make_client(sandbox)
    calls = client.for_session(session_id, deadline=deadline_in(10))
    calls.details()

    # WHEN
    result = calls.confirm(False)

    # THEN the refused confirm was not applied, so sending it again with a new token is safe
    assert result.body_readable
    assert sandbox.authorize_count == 2
    assert [entry.response_status for entry in sandbox.calls(CONFIRM)] == [401, 200]
    assert sandbox.confirms_for(session_id) == [False]
    assert recorder.summary()[-3:] == [
        ("confirm", 401, "4xx", 1),
        ("authorize", 200, "2xx", 1),  # attempts are counted per call: the first was details'
        ("confirm", 200, "2xx", 2),
    ]


def test_expired_token_on_the_server_is_replaced_once(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN the sandbox expires every token between details and confirm
    session_id = sandbox.add_session()
    calls = make_client(sandbox).for_session(session_id, deadline=deadline_in(10))
    calls.details()
    sandbox.expire_tokens()

    # WHEN
    calls.confirm(True)

    # THEN
    assert sandbox.authorize_count == 2
    assert sandbox.confirms_for(session_id) == [True]


def test_second_401_is_an_auth_error(sandbox: FlinksSandbox, make_client: ClientFactory) -> None:
    # GIVEN
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": ["401", "401"]}))
    client = make_client(sandbox)

    # WHEN / THEN
    with pytest.raises(FlinksAuthError) as caught:
        client.for_session(session_id, deadline=deadline_in(10)).details()
    assert caught.value.status_code == 401
    assert sandbox.authorize_count == 2
    assert len(sandbox.calls(DETAILS)) == 2


def test_token_expiry_by_monotonic_time_reauthorizes(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN a client clock we can move past the token's 299 s lifetime
    clock = [1000.0]
    session_id = sandbox.add_session()
    client = make_client(sandbox, monotonic=lambda: clock[0])
    calls = client.for_session(session_id, deadline=clock[0] + 3600)
    calls.details()

    # WHEN
    clock[0] += 300
    calls.status()

    # THEN
    assert sandbox.authorize_count == 2
    assert [entry.endpoint for entry in sandbox.calls()] == ["authorize", "details", "authorize", "status"]


def test_authorize_5xx_is_retried_and_4xx_is_an_auth_error(
    make_sandbox: SandboxFactory, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    # GIVEN authorize answers 503, then 400
    sandbox = make_sandbox(authorize_faults=["503", "400"])
    session_id = sandbox.add_session()
    client = make_client(sandbox)

    # WHEN / THEN the 503 is retried, the 400 is final
    with pytest.raises(FlinksAuthError) as caught:
        client.for_session(session_id, deadline=deadline_in(10)).details()
    assert caught.value.status_code == 400
    assert [entry.response_status for entry in sandbox.calls(AUTHORIZE)] == [503, 400]
    assert len(sleep.delays) == 1


# -- confirm body --------------------------------------------------------------------------------------


def test_confirm_sends_a_json_boolean(sandbox: FlinksSandbox, make_client: ClientFactory) -> None:
    # GIVEN
    session_id = sandbox.add_session()
    calls = make_client(sandbox).for_session(session_id, deadline=deadline_in(10))

    # WHEN
    calls.confirm(False)

    # THEN the sandbox (which answers 400 to a string "false") took it, and the bytes are a JSON boolean
    (confirm,) = sandbox.calls(CONFIRM)
    assert confirm.response_status == 200
    assert confirm.headers["content-type"] == "application/json"
    assert json.loads(confirm.body) == {"guaranteeAccepted": False}
    assert json.loads(confirm.body)["guaranteeAccepted"] is False
    assert sandbox.decision_of(session_id) is False
    assert calls.status()["status"] == "Failed"


def test_confirm_refuses_a_non_boolean_before_any_request(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN
    session_id = sandbox.add_session()
    calls = make_client(sandbox).for_session(session_id, deadline=deadline_in(10))

    # WHEN / THEN
    with pytest.raises(TypeError):
        calls.confirm("true")  # type: ignore[arg-type]
    assert sandbox.calls() == []


# -- fault matrix --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["500", "502", "504"])
def test_confirm_5xx_after_arriving_is_outcome_unknown_without_resending(
    status: str, sandbox: FlinksSandbox, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    # GIVEN an answer after which Flinks may or may not have applied the decision
    calls = calls_with_faults(sandbox, make_client, {"confirm": [status]})

    # WHEN / THEN the client says so at once: no /details read, no second confirm, no backoff
    with pytest.raises(FlinksConfirmOutcomeUnknownError) as caught:
        calls.confirm(True)
    assert isinstance(caught.value, FlinksTransientError)
    assert caught.value.status_code == int(status)
    assert [entry.response_status for entry in sandbox.calls(CONFIRM)] == [int(status)]
    assert sandbox.calls(DETAILS) == []
    assert sleep.delays == []


@pytest.mark.parametrize("fault", ["503", "429", "408"])
def test_confirm_refused_before_handling_is_sent_again(
    fault: str, sandbox: FlinksSandbox, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    # GIVEN answers that say the confirm never reached Flinks' handling (408 is retryable, not final)
    calls = calls_with_faults(sandbox, make_client, {"confirm": [fault]})

    # WHEN
    result = calls.confirm(True)

    # THEN it was sent again after one backoff, and Flinks recorded one decision
    assert result.body_readable
    assert [entry.response_status for entry in sandbox.calls(CONFIRM)] == [int(fault), 200]
    assert sandbox.confirms_for(calls.session_id) == [True]
    assert sandbox.calls(DETAILS) == []
    assert sleep.delays == [pytest.approx(0.2)]


def test_details_500_once_succeeds_after_retry(
    sandbox: FlinksSandbox, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    # GIVEN
    calls = calls_with_faults(sandbox, make_client, {"details": ["500"]})

    # WHEN
    details = calls.details()

    # THEN
    assert details["guaranteeDetails"]["guaranteeAccepted"] is None
    assert [entry.response_status for entry in sandbox.calls(DETAILS)] == [500, 200]
    assert len(sleep.delays) == 1
    assert sandbox.authorize_count == 1


@pytest.mark.parametrize(("endpoint", "status"), [("confirm", 503), ("confirm", 429), ("details", 503)])
def test_retry_after_on_503_or_429_is_honoured(
    endpoint: str, status: int, sandbox: FlinksSandbox, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    # GIVEN a refusal (503, or a confirm's 429: neither reached Flinks' handling) with Retry-After
    calls = calls_with_faults(sandbox, make_client, {endpoint: [f"{status}:retry-after=1"]})

    # WHEN
    if endpoint == "confirm":
        calls.confirm(True)
    else:
        calls.details()

    # THEN the wait is the server's Retry-After, not the jittered backoff, and a confirm applied once
    assert sleep.delays == [1.0]
    path = CONFIRM if endpoint == "confirm" else DETAILS
    assert [entry.response_status for entry in sandbox.calls(path)] == [status, 200]
    assert len(sandbox.calls()) == 3
    if endpoint == "confirm":
        assert sandbox.confirms_for(calls.session_id) == [True]


def test_429_retry_after_is_honoured(
    sandbox: FlinksSandbox, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    # GIVEN
    calls = calls_with_faults(sandbox, make_client, {"status": ["429:retry-after=2"]})

    # WHEN
    calls.status()

    # THEN
    assert sleep.delays == [2.0]


def test_confirm_read_timeout_is_outcome_unknown(
    make_sandbox: SandboxFactory, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN a confirm that hangs (5 s) past the client's 1 s read timeout; a normal answer takes
    # milliseconds, so 1 s leaves room for a loaded machine without asserting any timing
    sandbox = make_sandbox(hang_s=5.0)
    session_id = sandbox.add_session(scenario=Scenario(faults={"confirm": ["timeout"]}))
    calls = make_client(sandbox, read_timeout=1.0).for_session(session_id, deadline=deadline_in(20))

    # WHEN / THEN
    with pytest.raises(FlinksConfirmOutcomeUnknownError, match="timed out"):
        calls.confirm(True)
    assert [entry.fault for entry in sandbox.calls(CONFIRM)] == ["timeout"]
    assert sandbox.calls(DETAILS) == []
    assert recorder.summary()[-1] == ("confirm", None, "timeout", 1)


def test_slow_apply_confirm_times_out_while_details_shows_no_decision(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN Flinks applying a confirm only 1.5 s after it arrived, and a 1 s read timeout
    session_id = sandbox.add_session(scenario=Scenario(faults={"confirm": ["slow-apply:1.5"]}))
    client = make_client(sandbox, read_timeout=1.0)

    # WHEN the confirm gives up, and /details is read at once
    with pytest.raises(FlinksConfirmOutcomeUnknownError):
        client.for_session(session_id, deadline=deadline_in(20)).confirm(True)
    early = client.for_session(session_id, deadline=deadline_in(20)).details()

    # THEN Flinks does not show it yet (re-sending now would be a second confirm), and applies it later
    assert early["guaranteeDetails"]["guaranteeAccepted"] is None
    give_up_at = time.monotonic() + 10
    while sandbox.confirms_for(session_id) == [] and time.monotonic() < give_up_at:
        time.sleep(0.05)
    assert sandbox.confirms_for(session_id) == [True]
    late = client.for_session(session_id, deadline=deadline_in(20)).details()
    assert late["guaranteeDetails"]["guaranteeAccepted"] is True


def test_details_timeout_is_retried(make_sandbox: SandboxFactory, make_client: ClientFactory) -> None:
    # GIVEN details that hang (5 s) past the client's 1 s read timeout, once
    sandbox = make_sandbox(hang_s=5.0)
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": ["timeout"]}))
    calls = make_client(sandbox, read_timeout=1.0).for_session(session_id, deadline=deadline_in(20))

    # WHEN
    details = calls.details()

    # THEN
    assert details["sessionId"] == session_id
    assert [entry.fault for entry in sandbox.calls(DETAILS)] == ["timeout", None]


def test_lost_confirm_answer_is_outcome_unknown_and_not_resent(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN Flinks records the confirm but the answer never arrives
    calls = calls_with_faults(sandbox, make_client, {"confirm": ["lost"]})

    # WHEN / THEN exactly one confirm reached Flinks; the client does not look for it itself
    with pytest.raises(FlinksConfirmOutcomeUnknownError):
        calls.confirm(True)
    assert len(sandbox.calls(CONFIRM)) == 1
    assert sandbox.calls(DETAILS) == []
    assert sandbox.confirms_for(calls.session_id) == [True]
    assert recorder.summary()[-1] == ("confirm", None, "connection-error", 1)


def test_confirm_dropped_after_it_was_written_is_outcome_unknown(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN the connection drops after the request arrived (here, before Flinks acted: the client
    # cannot tell the difference, so it must not send the confirm again)
    calls = calls_with_faults(sandbox, make_client, {"confirm": ["reset"]})

    # WHEN / THEN
    with pytest.raises(FlinksConfirmOutcomeUnknownError):
        calls.confirm(False)
    assert [entry.fault for entry in sandbox.calls(CONFIRM)] == ["reset"]
    assert sandbox.confirms_for(calls.session_id) == []


def test_confirm_connection_refused_is_retried_and_never_unknown(
    make_client: ClientFactory, sandbox: FlinksSandbox, recorder: CallRecorder, sleep: RecordingSleep
) -> None:
    # GIVEN the client pointed at a port nobody listens on: nothing can reach Flinks' handling
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    client = FlinksClient(
        f"http://127.0.0.1:{closed_port}",
        lambda: FlinksCredentials(USERNAME, PASSWORD),
        sleep=sleep,
        rand=lambda: 1.0,
        on_call=recorder,
    )
    try:
        calls = client.for_session(str(uuid.uuid4()), deadline=deadline_in(10))

        # WHEN / THEN every attempt is refused before anything is sent: retried, then a plain
        # transient error (safe to send again later), never "outcome unknown"
        with pytest.raises(FlinksTransientError) as caught:
            calls.confirm(True)
    finally:
        client.close()
    assert not isinstance(caught.value, FlinksConfirmOutcomeUnknownError)
    assert recorder.summary() == [("authorize", None, "connection-error", n) for n in range(1, 6)]
    assert len(sleep.delays) == 4


def test_confirm_answered_2xx_is_confirmed_even_if_its_body_never_completes(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN a confirm whose 200 status line and headers arrive, then the body dribbles past the deadline
    session_id = sandbox.add_session(scenario=Scenario(faults={"confirm": ["dribble-body:0.5"]}))
    calls = make_client(sandbox, read_timeout=1.0).for_session(session_id, deadline=deadline_in(20))

    # WHEN
    result = calls.confirm(True)

    # THEN the status is the outcome: confirmed, sent once
    assert result == ConfirmResult(session_id=None, reference_id=None, body_readable=False)
    assert sandbox.confirms_for(session_id) == [True]
    assert recorder.summary()[-1] == ("confirm", 200, "timeout", 1)


def test_409_on_confirm_is_a_conflict_for_the_caller_to_read_details(
    sandbox: FlinksSandbox, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    # GIVEN
    calls = calls_with_faults(sandbox, make_client, {"confirm": ["409"]})

    # WHEN / THEN
    with pytest.raises(FlinksConflictError) as caught:
        calls.confirm(True)
    assert isinstance(caught.value, FlinksPermanentError)
    assert caught.value.status_code == 409
    assert len(sandbox.calls(CONFIRM)) == 1
    assert sandbox.calls(DETAILS) == []
    assert sleep.delays == []


@pytest.mark.parametrize("endpoint", ["confirm", "details"])
@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        pytest.param("404", FlinksSessionNotFoundError, "Session Not Found", id="404-session-not-found"),
        pytest.param("400", FlinksPermanentError, "Bad Request", id="400-permanent"),
    ],
)
def test_a_refusal_is_its_error_without_retry(
    endpoint: str,
    status: str,
    error: type[FlinksPermanentError],
    text: str,
    sandbox: FlinksSandbox,
    make_client: ClientFactory,
    sleep: RecordingSleep,
) -> None:
    # GIVEN
    calls = calls_with_faults(sandbox, make_client, {endpoint: [status]})

    # WHEN / THEN
    with pytest.raises(FlinksPermanentError) as caught:
        calls.confirm(True) if endpoint == "confirm" else calls.details()
    assert type(caught.value) is error
    assert caught.value.status_code == int(status)
    assert text in str(caught.value)
    assert len(sandbox.calls(CONFIRM if endpoint == "confirm" else DETAILS)) == 1
    assert sleep.delays == []


def test_unknown_session_is_not_found(sandbox: FlinksSandbox, make_client: ClientFactory) -> None:
    # GIVEN
    session_id = sandbox.add_session(scenario=Scenario.preset("not-found"))
    calls = make_client(sandbox).for_session(session_id, deadline=deadline_in(10))

    # WHEN / THEN
    with pytest.raises(FlinksSessionNotFoundError):
        calls.details()
    with pytest.raises(FlinksSessionNotFoundError):
        calls.confirm(True)
    assert sandbox.confirms_for(session_id) == []


def test_malformed_details_once_is_retried(sandbox: FlinksSandbox, make_client: ClientFactory) -> None:
    # GIVEN
    calls = calls_with_faults(sandbox, make_client, {"details": ["malformed"]})

    # WHEN
    details = calls.details()

    # THEN
    assert details["currency"] == "CAD"
    assert len(sandbox.calls(DETAILS)) == 2


@pytest.mark.parametrize(
    ("endpoint", "fault", "error", "status"),
    [
        pytest.param("details", "malformed", FlinksProtocolError, 200, id="details-malformed"),
        pytest.param("status", "503", FlinksTransientError, 503, id="status-503"),
    ],
)
def test_a_persistent_transient_fault_gives_up_after_five_attempts_with_backoff(
    endpoint: str,
    fault: str,
    error: type[FlinksTransientError],
    status: int,
    sandbox: FlinksSandbox,
    make_client: ClientFactory,
    sleep: RecordingSleep,
) -> None:
    # GIVEN more faulty answers than attempts
    calls = calls_with_faults(sandbox, make_client, {endpoint: [fault] * 6})

    # WHEN / THEN
    with pytest.raises(FlinksTransientError) as caught:
        getattr(calls, endpoint)()
    assert type(caught.value) is error
    assert caught.value.status_code == status
    assert len(sandbox.calls(f"/{endpoint}")) == 5
    assert sleep.delays == pytest.approx([0.2, 0.4, 0.8, 1.6])


def test_malformed_confirm_answer_still_means_confirmed(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN
    calls = calls_with_faults(sandbox, make_client, {"confirm": ["malformed"]})

    # WHEN
    result = calls.confirm(True)

    # THEN
    assert result == ConfirmResult(session_id=None, reference_id=None, body_readable=False)
    assert len(sandbox.calls(CONFIRM)) == 1
    assert sandbox.confirms_for(calls.session_id) == [True]


def test_outage_then_recover_preset(sandbox: FlinksSandbox, make_client: ClientFactory) -> None:
    # GIVEN
    session_id = sandbox.add_session(scenario=Scenario.preset("outage-then-recover"))
    calls = make_client(sandbox).for_session(session_id, deadline=deadline_in(10))

    # WHEN
    calls.details()
    calls.confirm(True)

    # THEN
    assert [entry.response_status for entry in sandbox.calls(DETAILS)] == [500, 200]
    assert [entry.response_status for entry in sandbox.calls(CONFIRM)] == [503, 503, 200]
    assert sandbox.confirms_for(session_id) == [True]
    assert calls.status()["statusDetails"] == "EFT0301"


# -- deadline ------------------------------------------------------------------------------------------


def test_deadline_exhaustion_fails_fast_with_real_sleeps(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN an outage longer than the deadline, real sleeps, and an attempt budget that would take
    # minutes (50 attempts, backoff up to 5 s each)
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": ["503"] * 50}))
    client = make_client(sandbox, sleep=time.sleep, rand=lambda: 1.0, retry=RetryPolicy(max_attempts=50))
    # 2 s: time for the first answer to arrive on a loaded machine (0.5 s once cut the first exchange,
    # leaving no status to report), and still far short of the attempts' minutes
    calls = client.for_session(session_id, deadline=deadline_in(2.0))
    started = time.monotonic()

    # WHEN / THEN it stops at the deadline, not when the attempts run out
    with pytest.raises(FlinksTransientError) as caught:
        calls.details()
    assert time.monotonic() - started < 10.0
    assert len(sandbox.calls(DETAILS)) < 10
    assert caught.value.status_code == 503


def test_retry_after_beyond_the_deadline_gives_up_without_waiting(
    sandbox: FlinksSandbox, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    # GIVEN
    session_id = sandbox.add_session(scenario=Scenario(faults={"confirm": ["503:retry-after=30"]}))
    calls = make_client(sandbox).for_session(session_id, deadline=deadline_in(2))

    # WHEN / THEN
    with pytest.raises(FlinksTransientError, match="deadline") as caught:
        calls.confirm(True)
    assert caught.value.status_code == 503
    assert sleep.delays == []
    assert sandbox.confirms_for(session_id) == []


def test_read_timeout_is_clipped_to_the_deadline(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    # GIVEN a hang (20 s) longer than both the time left (0.3 s) and the read timeout (15 s)
    sandbox = make_sandbox(hang_s=20.0)
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": ["timeout"]}))
    calls = make_client(sandbox, read_timeout=15.0).for_session(session_id, deadline=deadline_in(0.3))
    started = time.monotonic()

    # WHEN / THEN the call gives up with the deadline, long before the read timeout
    with pytest.raises(FlinksTransientError):
        calls.details()
    assert time.monotonic() - started < 10.0


def test_past_deadline_sends_nothing(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN
    session_id = sandbox.add_session()
    client = make_client(sandbox)

    # WHEN / THEN
    with pytest.raises(FlinksTransientError, match="deadline"):
        client.for_session(session_id, deadline=time.monotonic() - 1).details()
    assert sandbox.calls() == []
    assert recorder.observations == []


# -- validation, observation, concurrency ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["not-a-uuid", "../../api/v1/authorize", "3f2b1c4e9a7d4e0f8b6a1c2d3e4f5a6b", "", "{uuid}"]
)
def test_non_uuid_session_id_is_rejected_before_any_request(
    bad_id: str, sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN
    client = make_client(sandbox)

    # WHEN / THEN
    with pytest.raises(ValueError, match="UUID"):
        client.for_session(bad_id, deadline=deadline_in(10))
    assert sandbox.calls() == []
    assert recorder.observations == []


def test_observations_follow_a_retried_call(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN details that answer 503 then 500 before 200
    calls = calls_with_faults(sandbox, make_client, {"details": ["503", "500"]})

    # WHEN
    calls.details()

    # THEN one observation per exchange, numbered per operation, each with a latency
    assert recorder.summary() == [
        ("authorize", 200, "2xx", 1),
        ("details", 503, "5xx", 1),
        ("details", 500, "5xx", 2),
        ("details", 200, "2xx", 3),
    ]
    assert all(observation.latency_ms >= 0 for observation in recorder.observations)


def test_an_observer_that_raises_never_breaks_a_call(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN an observer with a bug
    seen: list[CallObservation] = []

    def broken(observation: CallObservation) -> None:
        seen.append(observation)
        raise RuntimeError("metrics backend down")

    session_id = sandbox.add_session()
    calls = make_client(sandbox, on_call=broken).for_session(session_id, deadline=deadline_in(10))

    # WHEN
    calls.details()
    calls.confirm(True)

    # THEN every call went through, and the observer was still told about each exchange
    assert sandbox.confirms_for(session_id) == [True]
    assert [observation.operation for observation in seen] == ["authorize", "details", "confirm"]


def test_credentials_repr_hides_secrets() -> None:
    # GIVEN
    credentials = FlinksCredentials("user", "hunter2-password", client_id="cid", api_key="key-material")

    # WHEN
    shown = f"{credentials!r} {credentials}"

    # THEN
    assert "hunter2-password" not in shown
    assert "key-material" not in shown
    assert "cid" in shown


def test_threads_share_one_client_and_observations_add_up(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN eight sessions and one client shared by eight threads
    session_ids = [sandbox.add_session() for _ in range(8)]
    client = make_client(sandbox)
    errors: list[BaseException] = []

    def work(session_id: str) -> None:
        try:
            calls = client.for_session(session_id, deadline=deadline_in(10))
            calls.details()
            calls.confirm(True)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(session_id,), name=f"worker-{index}")
        for index, session_id in enumerate(session_ids)
    ]

    # WHEN
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # THEN each observation came from the thread that made the exchange
    assert errors == []
    assert recorder.by_operation() == {"authorize": 8, "details": 8, "confirm": 8}
    assert {call.thread for call in recorder.calls} == {f"worker-{index}" for index in range(8)}
    assert sandbox.authorize_count == 8
    assert all(sandbox.confirms_for(session_id) == [True] for session_id in session_ids)
