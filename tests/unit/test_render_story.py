"""``geft-ops show``'s text: history columns never run together, and a session whose final status is
known is not shown as waiting for its reconciliation."""

from __future__ import annotations

from typing import Any

from geft_ops import render


def _entry(change: str, moved_from: str | None, to: str, by: str) -> dict[str, Any]:
    return {"at": "2026-12-01T10:00:00.000+00:00", "change": change, "from": moved_from, "to": to,
            "by": by, "note": None, "reason": None}  # fmt: skip


def _session(final: dict[str, Any] | None) -> dict[str, Any]:
    guarantee = {
        "guaranteeKey": "amount:250.00",
        "status": "CONFIRMED",
        "webhook": {"amount": 250},
        "decisionDetail": None,
        "shadow": None,
        "review": None,
        "confirm": None,
        "failureReason": None,
        "followUp": {"queue": "RECONCILE", "due": "2026-12-01T10:15:00.000+00:00"},
        "history": [
            _entry("received", None, "RECEIVED", "function:receiver"),
            _entry("follow-up-cleared", "CONFIRMED", "CONFIRMED", "function:reconciler"),
        ],
    }
    return {"sessionId": "s", "guarantees": [guarantee], "finalStatus": final, "sessionHistory": []}


def test_history_columns_are_as_wide_as_their_widest_cell_and_two_spaces_apart() -> None:
    text = render.story(_session(None))

    rows = [line for line in text.splitlines() if line.startswith("      2026")]
    assert rows[1].endswith("follow-up-cleared  CONFIRMED -> CONFIRMED  function:reconciler")
    assert rows[0].index("RECEIVED") == rows[1].index("CONFIRMED ->")
    assert rows[0].index("function:receiver") == rows[1].index("function:reconciler")


def test_a_queued_reconciliation_is_waiting_only_while_the_final_status_is_unknown() -> None:
    final = {"status": "Completed", "details": "EFT0301", "source": "webhook", "at": "2026-12-01T10:01:00Z"}

    assert "waiting    RECONCILE" in render.story(_session(None))
    assert "waiting" not in render.story(_session(final))
