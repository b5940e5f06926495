"""The local stack's console lines: one line per change a write made, none for bookkeeping."""

from __future__ import annotations

from typing import Any

from geft_local.demo import outcome_line
from geft_local.flow import describe_change

SESSION = "aadd08f2-83ce-456d-84ed-c68cfed4ee7b"


def _image(sk: str, change: str | None, **attributes: Any) -> dict[str, dict[str, Any]]:
    image: dict[str, dict[str, Any]] = {"pk": {"S": SESSION}, "sk": {"S": sk}}
    image |= {k: ({"N": str(v)} if isinstance(v, int) else {"S": v}) for k, v in attributes.items()}
    if change is not None:
        image["changeKind"] = {"S": change}
        image["changedAtMs"] = {"N": "1"}
    return image


def _guarantee(change: str, status: str, **attributes: Any) -> dict[str, dict[str, Any]]:
    return _image(
        "GUARANTEE#single",
        change,
        recordType="GUARANTEE",
        sessionId=SESSION,
        guaranteeKey="single",
        status=status,
        rawBody="{}",
        receivedAtMs=1,
        **attributes,
    )


def test_a_confirm_is_one_line_and_bookkeeping_none() -> None:
    confirmed = _guarantee(
        "confirmed",
        "CONFIRMED",
        decision="accept",
        decisionRule="default",
        confirmedAtMs=5,
        webhookToConfirmMs=4,
    )
    bookkeeping = _guarantee("reconcile-pending", "CONFIRMED", decision="accept", decisionRule="default")

    line = describe_change(confirmed)

    assert line == f"{SESSION} decided accept (rule default) -> CONFIRMED, webhook-to-confirm 4 ms"
    assert describe_change(bookkeeping) is None


def test_a_release_says_why() -> None:
    released = _guarantee("released", "RECEIVED", attempts=1, changeReason="Flinks details answered 503")

    assert describe_change(released) == (
        f"{SESSION} attempt 1 failed transiently; claim released: Flinks details answered 503"
    )


def test_session_record_lines() -> None:
    assert describe_change(_image("SESSION", None, recordType="SESSION")) is None
    line = describe_change(_image("SESSION", "final-status", recordType="SESSION", finalStatus="Completed"))
    assert line == f"{SESSION} session final status Completed"


def test_the_demo_waits_for_the_line_that_ends_a_story_not_the_first() -> None:
    received = describe_change(_guarantee("received", "RECEIVED"))
    confirmed = describe_change(
        _guarantee("confirmed", "CONFIRMED", decision="reject", decisionRule="high-risk", confirmedAtMs=5)
    )
    held = describe_change(_guarantee("held", "REVIEW", changeReason="no fallback"))
    ending = outcome_line(SESSION)

    assert received is not None
    assert confirmed is not None
    assert held is not None
    assert not ending.search(received)
    assert ending.search(confirmed)
    assert ending.search(held)
    assert not outcome_line("another-session").search(confirmed)
