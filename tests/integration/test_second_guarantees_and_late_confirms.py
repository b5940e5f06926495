"""Issue 11's findings 3a, 3b and 4 against the Flinks sandbox: a session's second guarantee (Flinks'
Next Best Offer) never inherits the first one's decision, and a confirm Flinks applies late is not
posted twice.

The sandbox models both: ``offer_guarantee`` makes a second offer current (``/details`` then shows its
amounts, and ``guaranteeAccepted`` per ``nbo_guarantee_accepted``: ``reset`` to null, or ``sticky``
at the first offer's value, the reading in which a session-wide flag cannot be attributed), and the
``slow-apply:S`` confirm fault applies a confirm S seconds after it arrived, after our read timeout.
The processor runs as Lambda runs it (handler, moto, CONFIRM_SETTLE_SECONDS=3, read timeout 1.5 s).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from geft_local.flinks_sandbox import FlinksSandbox, Scenario

from tests.support.pipeline import Items, receive
from tests.support.streams import StreamFeed

Invoke = Callable[..., dict[str, Any]]


def _guarantees(table_items: Items, session_id: str) -> dict[int, dict[str, Any]]:
    """The session's guarantee items by the amount their webhook carried."""
    return {
        int(json.loads(item["rawBody"])["amount"]): item
        for item in table_items()
        if item["pk"] == session_id and str(item["sk"]).startswith("GUARANTEE#")
    }


def _first_guarantee_confirmed(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Invoke,
    feed: StreamFeed,
    scenario: Scenario,
) -> str:
    session_id = sandbox.add_session(scenario=scenario)
    receive(invoke_receiver, session_id, amount=250)
    assert invoke_processor(feed.next_event()) == {"batchItemFailures": []}
    return session_id


@pytest.mark.parametrize("reading", ["reset", "sticky"])
def test_finding_3a_an_outage_on_the_second_guarantee_does_not_recover_the_first_ones_accept(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
    reading: str,
) -> None:
    # GIVEN a session whose first guarantee was accepted and confirmed
    scenario = Scenario.preset("accept", nbo_guarantee_accepted=reading)
    session_id = _first_guarantee_confirmed(sandbox, invoke_receiver, invoke_processor, feed, scenario)
    assert sandbox.confirms_for(session_id, offer=1) == [True]
    # AND a second guarantee the policy rejects (300 asked, 100 guaranteed: a shortfall)
    sandbox.offer_guarantee(session_id, amount=300, highest_debit_amount_to_guarantee=100)
    receive(invoke_receiver, session_id, amount=300)
    second = feed.next_event()

    # WHEN its confirms meet 503s for a whole invocation, and the stream retries once Flinks recovers
    sandbox.add_faults(session_id, "confirm", ["503"] * 40)
    assert len(invoke_processor(second, timeout_seconds=4.0)["batchItemFailures"]) == 1
    sandbox.clear_faults(session_id)
    assert invoke_processor(second) == {"batchItemFailures": []}

    # THEN the second guarantee's own decision reached Flinks: a reject, for the second offer
    assert sandbox.confirms_for(session_id, offer=2) == [False]
    assert sandbox.confirms_for(session_id, offer=1) == [True]  # the first untouched
    item = _guarantees(table_items, session_id)[300]
    assert (item["status"], item["decision"], item["decisionRule"]) == ("CONFIRMED", "reject", "shortfall")


def test_finding_3b_reset_a_timed_out_confirm_of_the_second_guarantee_is_sent_once_it_settled(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
) -> None:
    # GIVEN a session whose first guarantee was rejected (a shortfall) and confirmed
    scenario = Scenario.preset("shortfall", nbo_guarantee_accepted="reset")
    session_id = _first_guarantee_confirmed(sandbox, invoke_receiver, invoke_processor, feed, scenario)
    assert sandbox.confirms_for(session_id, offer=1) == [False]
    # AND a second, fully guaranteed one the policy accepts
    sandbox.offer_guarantee(session_id, amount=100)
    receive(invoke_receiver, session_id, amount=100)
    second = feed.next_event()

    # WHEN its first confirm times out (Flinks did not act on it), and the stream retries
    sandbox.add_faults(session_id, "confirm", ["timeout"])
    assert len(invoke_processor(second)["batchItemFailures"]) == 1
    assert _guarantees(table_items, session_id)[100]["confirmAttempted"] is True
    assert invoke_processor(second) == {"batchItemFailures": []}  # waits out the settle time first

    # THEN /details showed the second offer undecided, so its accept was sent, once: not "opposite decision"
    assert sandbox.confirms_for(session_id, offer=2) == [True]
    item = _guarantees(table_items, session_id)[100]
    assert (item["status"], item["decision"]) == ("CONFIRMED", "accept")
    assert "failureReason" not in item


def test_finding_3b_sticky_an_unattributable_decision_holds_the_second_guarantee_for_a_person(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
) -> None:
    # GIVEN the pessimistic reading: /details keeps showing the first offer's reject
    scenario = Scenario.preset("shortfall", nbo_guarantee_accepted="sticky")
    session_id = _first_guarantee_confirmed(sandbox, invoke_receiver, invoke_processor, feed, scenario)
    sandbox.offer_guarantee(session_id, amount=100)
    receive(invoke_receiver, session_id, amount=100)
    second = feed.next_event()

    # WHEN the second guarantee's first confirm times out, and the stream retries after the settle time
    sandbox.add_faults(session_id, "confirm", ["timeout"])
    assert len(invoke_processor(second)["batchItemFailures"]) == 1
    assert invoke_processor(second) == {"batchItemFailures": []}

    # THEN the reject /details shows cannot be told apart from the first guarantee's: the second is
    # neither FAILED "opposite decision" nor confirmed blind, but held in REVIEW saying why
    item = _guarantees(table_items, session_id)[100]
    assert item["status"] == "REVIEW"
    assert "another guarantee of this session was also answered" in item["holdReason"]
    assert sandbox.confirms_for(session_id, offer=2) == []


def test_finding_4_a_confirm_flinks_applies_after_our_timeout_is_not_posted_again(
    sandbox: FlinksSandbox,
    invoke_receiver: Invoke,
    invoke_processor: Invoke,
    feed: StreamFeed,
    table_items: Items,
) -> None:
    # GIVEN a session whose confirm Flinks applies 2.5 s after it arrives (our read timeout is 1.5 s)
    session_id = sandbox.add_session(
        scenario=Scenario.preset("accept", faults={"confirm": ["slow-apply:2.5"]})
    )
    receive(invoke_receiver, session_id)
    event = feed.next_event()

    # WHEN the confirm times out, and the stream's retry arrives at once
    assert len(invoke_processor(event)["batchItemFailures"]) == 1
    assert invoke_processor(event) == {"batchItemFailures": []}

    # THEN the retry waited out the settle time, read /details, found the late-applied accept and
    # recorded it: one confirm in all reached Flinks
    confirms = sandbox.calls("/guarantees/confirm", session_id=session_id)
    assert len(confirms) == 1
    assert sandbox.confirms_for(session_id) == [True]
    item = _guarantees(table_items, session_id)[250]
    assert (item["status"], item["decision"], item["decisionRule"]) == (
        "CONFIRMED",
        "accept",
        "recovered-from-flinks",
    )
