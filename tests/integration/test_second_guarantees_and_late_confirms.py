"""Issue 11's findings 3a, 3b and 4 through the handler, moto and the Flinks sandbox: a session's second
guarantee (Flinks' Next Best Offer) never inherits the first one's decision.

The sandbox models a second offer (``offer_guarantee`` makes it current: ``/details`` shows its amounts,
and ``guaranteeAccepted`` per ``nbo_guarantee_accepted``). Every reading and interleaving of the findings
(3a under both readings, 3b's timed-out confirm of the second guarantee, 4's confirm applied after our
timeout) is a case of the state machine on fakes in tests/unit/test_processor_state_machine.py
(``test_second_guarantee_*``, ``test_a_slow_confirm_is_never_posted_twice``); a confirm applied late is
also run to a settled ledger in test_decision_faults.py (``confirm-slow-apply``). Here: the second
offer end to end, as Flinks' JSON and our table carry it.
"""

from __future__ import annotations

import json

from tests.support.pipeline import Pipeline


def test_finding_3a_an_outage_on_the_second_guarantee_does_not_recover_the_first_ones_accept(
    pipeline: Pipeline,
) -> None:
    # GIVEN a session whose first guarantee was accepted and confirmed
    session_id = pipeline.session(nbo_guarantee_accepted="reset")
    pipeline.receive(session_id, amount=250)
    assert pipeline.process() == {"batchItemFailures": []}
    assert pipeline.sandbox.confirms_for(session_id, offer=1) == [True]
    # AND a second guarantee the policy rejects (300 asked, 100 guaranteed: a shortfall)
    pipeline.sandbox.offer_guarantee(session_id, amount=300, highest_debit_amount_to_guarantee=100)
    pipeline.receive(session_id, amount=300)
    second = pipeline.feed.next_event()

    # WHEN its confirms meet 503s for a whole (short) invocation, and the stream retries once Flinks
    # recovers
    pipeline.sandbox.add_faults(session_id, "confirm", ["503"] * 40)
    assert len(pipeline.process(second, timeout_seconds=2.5)["batchItemFailures"]) == 1
    pipeline.sandbox.clear_faults(session_id)
    assert pipeline.process(second) == {"batchItemFailures": []}

    # THEN the second guarantee's own decision reached Flinks: a reject, for the second offer
    assert pipeline.sandbox.confirms_for(session_id, offer=2) == [False]
    assert pipeline.sandbox.confirms_for(session_id, offer=1) == [True]  # the first untouched
    [item] = [
        item
        for item in pipeline.items()
        if item["pk"] == session_id and json.loads(item.get("rawBody", "{}")).get("amount") == 300
    ]
    assert (item["status"], item["decision"], item["decisionRule"]) == ("CONFIRMED", "reject", "shortfall")
