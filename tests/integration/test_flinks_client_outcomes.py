"""Which outcome each Flinks answer becomes, for the answers test_flinks_client.py leaves out, against
the Flinks sandbox over real HTTP on 127.0.0.1.

These are the wire half of the decision-path faults that used to run through the whole pipeline
(tests/integration/test_decision_faults.py): the client turns each answer into a result or an error
here, and tests/unit/test_processor_state_machine.py proves what the processor does with each error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from geft.errors import FlinksConfirmOutcomeUnknownError, FlinksTransientError
from geft.flinks_client import FlinksClient, FlinksCredentials, SessionCalls

from testkit.flinks import FlinksSandbox, Scenario
from tests.support.constants import TEST_FLINKS_CREDENTIALS
from tests.support.flinks_calls import CallRecorder

DETAILS = "/details"
CONFIRM = "/guarantees/confirm"
AUTHORIZE = "/api/v1/authorize"


@pytest.fixture
def backoffs() -> list[float]:
    """The client's backoff sleeps, recorded instead of waited."""
    return []


@pytest.fixture
def client(sandbox: FlinksSandbox, backoffs: list[float], recorder: CallRecorder) -> Iterator[FlinksClient]:
    credentials = FlinksCredentials(TEST_FLINKS_CREDENTIALS["username"], TEST_FLINKS_CREDENTIALS["password"])
    flinks = FlinksClient(
        sandbox.base_url,
        lambda: credentials,
        sleep=backoffs.append,
        rand=lambda: 1.0,
        connect_timeout=1.0,
        read_timeout=1.0,  # the sandbox hangs 4 s on a "timeout" fault
        on_call=recorder,
    )
    yield flinks
    flinks.close()


def _calls(client: FlinksClient, session_id: str) -> SessionCalls:
    return client.for_session(session_id, deadline=time.monotonic() + 20)


@pytest.mark.parametrize(
    ("fault", "backoff"),
    [
        pytest.param("502", pytest.approx([0.2]), id="502"),
        pytest.param("503", pytest.approx([0.2]), id="503"),
        pytest.param("504", pytest.approx([0.2]), id="504"),
        pytest.param("429:retry-after=1", [1.0], id="429-retry-after"),
        pytest.param("reset", pytest.approx([0.2]), id="connection-reset"),
        # status and headers at once, then a byte every 0.5 s: cut at connect 1 s + read 1 s
        pytest.param("dribble-body:0.5", pytest.approx([0.2]), id="dribbled-body"),
    ],
)
def test_details_that_failed_once_is_read_again_in_the_same_call(
    sandbox: FlinksSandbox, client: FlinksClient, backoffs: list[float], fault: str, backoff: object
) -> None:
    # GIVEN a /details that fails once as planned
    session_id = sandbox.add_session(scenario=Scenario(faults={"details": [fault]}))

    # WHEN it is read
    details = _calls(client, session_id).details()

    # THEN the second attempt answered, after one backoff (Retry-After when Flinks gave one)
    assert details["sessionId"] == session_id
    assert [entry.fault for entry in sandbox.calls(DETAILS)] == [fault, None]
    assert backoffs == backoff


@pytest.mark.parametrize("fault", ["500", "malformed", "timeout"])
def test_an_authorize_that_failed_once_is_asked_again_and_the_call_goes_on(
    sandbox: FlinksSandbox, client: FlinksClient, recorder: CallRecorder, fault: str
) -> None:
    # GIVEN /authorize failing once (a 500, a 200 that is not a token, an answer that never comes)
    sandbox.add_authorize_faults([fault])
    session_id = sandbox.add_session()

    # WHEN the session's details are read
    details = _calls(client, session_id).details()

    # THEN a second authorize gave the token the call used
    assert details["sessionId"] == session_id
    assert [entry.fault for entry in sandbox.calls(AUTHORIZE)] == [fault, None]
    assert recorder.by_operation() == {"authorize": 2, "details": 1}


def test_a_confirm_outage_gives_up_as_transient_never_as_outcome_unknown(
    sandbox: FlinksSandbox, client: FlinksClient, backoffs: list[float]
) -> None:
    # GIVEN a confirm refused with 503 (Flinks did not act) more often than the client tries
    session_id = sandbox.add_session(scenario=Scenario(faults={"confirm": ["503"] * 6}))

    # WHEN / THEN it gives up with a plain transient error: no confirm reached Flinks, so the
    # processor may send it again later without reading /details first
    with pytest.raises(FlinksTransientError) as caught:
        _calls(client, session_id).confirm(True)
    assert not isinstance(caught.value, FlinksConfirmOutcomeUnknownError)
    assert caught.value.status_code == 503
    assert [entry.response_status for entry in sandbox.calls(CONFIRM)] == [503] * 5
    assert sandbox.confirms_for(session_id) == []
    assert backoffs == pytest.approx([0.2, 0.4, 0.8, 1.6])
