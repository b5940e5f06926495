"""The local stack's console lines: one line per state change, never one per write."""

from __future__ import annotations

from geft_local.flow import describe_change

SESSION = "aadd08f2-83ce-456d-84ed-c68cfed4ee7b"


def _image(sk: str, **attributes: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": SESSION}, "sk": {"S": sk}, **{k: {"S": v} for k, v in attributes.items()}}


def test_confirmed_is_shown_once_even_when_written_again() -> None:
    confirmed = _image("GUARANTEE#single", status="CONFIRMED", decision="accept", decisionRule="default")

    first = describe_change("MODIFY", confirmed, previous_status="DECIDING")
    follow_up = describe_change("MODIFY", confirmed, previous_status="CONFIRMED")

    assert first is not None
    assert "CONFIRMED" in first
    assert follow_up is None


def test_session_record_without_a_final_status_is_not_shown() -> None:
    assert describe_change("INSERT", _image("SESSION"), previous_status=None) is None
    line = describe_change("MODIFY", _image("SESSION", finalStatus="Completed"), previous_status=None)
    assert line == f"{SESSION} session final status Completed"
