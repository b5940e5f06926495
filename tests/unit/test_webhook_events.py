"""Classification of signed bodies and the replay window (pure, no AWS)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from geft.webhook_events import (
    GuaranteeEvent,
    QuarantineReason,
    ReplayWindow,
    SessionStatusEvent,
    UnrecognizedEvent,
    classify,
    parse_when,
)

SESSION = "aadd08f2-83ce-456d-84ed-c68cfed4ee7b"


def _json(document: object) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "expected_key"),
    [
        pytest.param({"sessionId": SESSION}, "single", id="bare"),
        pytest.param({"sessionId": SESSION, "amount": 500}, "amount:500.00", id="amount"),
        pytest.param({"sessionId": SESSION, "amount": 500.5}, "amount:500.50", id="amount-decimal"),
        pytest.param({"sessionId": SESSION, "guaranteeId": "g-1", "amount": 5}, "id:g-1", id="guarantee-id"),
        pytest.param({"data": {"sessionId": SESSION, "amount": 7}}, "amount:7.00", id="data-envelope"),
        pytest.param({"sessionId": SESSION.upper()}, "single", id="uppercase-uuid"),
        pytest.param({"sessionId": SESSION, "status": "InProgress"}, "single", id="non-final-status"),
        pytest.param({"sessionId": SESSION, "amount": True}, "single", id="bool-is-not-an-amount"),
    ],
)
def test_guarantee_events(body: dict[str, object], expected_key: str) -> None:
    event = classify(_json(body))

    assert isinstance(event, GuaranteeEvent)
    assert event.session_id == SESSION  # canonical lowercase, so case never splits a session
    assert event.guarantee_key == expected_key


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {"type": "SessionSetupStatusChanged", "sessionId": SESSION, "status": "Completed"}, id="typed"
        ),
        pytest.param(
            {"eventType": "sessionsetupstatuschanged", "sessionId": SESSION, "status": "Failed"}, id="case"
        ),
        pytest.param(
            {"sessionId": SESSION, "status": "Canceled", "statusDetails": "EFT0501"}, id="final-status"
        ),
        pytest.param({"sessionId": SESSION, "status": "Expired"}, id="expired"),
    ],
)
def test_session_status_events(body: dict[str, object]) -> None:
    event = classify(_json(body))

    assert isinstance(event, SessionStatusEvent)
    assert event.session_id == SESSION
    assert event.status == body["status"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"\xff\xfe", QuarantineReason.NOT_UTF8, id="not-utf8"),
        pytest.param(b"{not json", QuarantineReason.NOT_JSON, id="not-json"),
        pytest.param(b"", QuarantineReason.NOT_JSON, id="empty"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, QuarantineReason.NOT_JSON, id="deeply-nested"),
        pytest.param(b'{"sessionId": 1' + b"0" * 5000 + b"}", QuarantineReason.NOT_JSON, id="huge-integer"),
        pytest.param(b'"just a string"', QuarantineReason.NOT_AN_OBJECT, id="string"),
        pytest.param(b"null", QuarantineReason.NOT_AN_OBJECT, id="null"),
        pytest.param(_json({"sessionId": "123"}), QuarantineReason.NO_SESSION_ID, id="not-uuid"),
        pytest.param(
            _json({"sessionId": "{" + SESSION + "}"}), QuarantineReason.NO_SESSION_ID, id="braced-uuid"
        ),
        pytest.param(_json({"sessionId": 42}), QuarantineReason.NO_SESSION_ID, id="number"),
        pytest.param(_json({"amount": 5}), QuarantineReason.NO_SESSION_ID, id="no-session"),
        pytest.param(
            _json({"type": "SessionSetupStatusChanged", "sessionId": SESSION, "status": "Weird"}),
            QuarantineReason.UNKNOWN_STATUS,
            id="status-unknown",
        ),
        pytest.param(
            _json({"type": "SessionSetupStatusChanged", "status": "Completed"}),
            QuarantineReason.NO_SESSION_ID,
            id="status-without-session",
        ),
    ],
)
def test_unrecognized_bodies_are_quarantined(raw: bytes, reason: QuarantineReason) -> None:
    event = classify(raw)

    assert isinstance(event, UnrecognizedEvent)
    assert event.reason is reason


def test_duplicate_keys_keep_the_last_value_as_json_does() -> None:
    event = classify(b'{"sessionId": "not-a-uuid", "sessionId": "' + SESSION.encode() + b'"}')

    assert isinstance(event, GuaranteeEvent)


def test_absurd_amount_does_not_expand() -> None:
    event = classify(b'{"sessionId": "' + SESSION.encode() + b'", "amount": 1e999999999}')

    assert isinstance(event, GuaranteeEvent)
    assert len(event.guarantee_key) < 80


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T12:00:00Z", NOW),
        ("2026-11-23T12:00:00+00:00", NOW),
        ("2026-11-23T07:00:00-05:00", NOW),
        ("2026-11-23T12:00:00", NOW),  # no offset: taken as UTC
        (int(NOW.timestamp()), NOW),
        (str(int(NOW.timestamp())), NOW),
        (int(NOW.timestamp()) * 1000, NOW),  # epoch milliseconds
        ("yesterday", None),
        (True, None),
        (None, None),
        ({"at": 1}, None),
        (float("nan"), None),
    ],
)
def test_parse_when(value: object, expected: datetime | None) -> None:
    assert parse_when(value) == expected


@pytest.mark.parametrize(
    ("when", "admitted"),
    [
        (None, True),  # the payload is unpublished: a missing `when` is not a reason to refuse
        (NOW, True),
        (NOW - timedelta(hours=23, minutes=59), True),
        (NOW - timedelta(hours=24, seconds=1), False),
        (NOW + timedelta(minutes=4), True),  # clock skew
        (NOW + timedelta(minutes=6), False),
    ],
)
def test_replay_window(when: datetime | None, admitted: bool) -> None:
    window = ReplayWindow(max_age_seconds=86_400, max_future_seconds=300)

    assert window.admits(when, NOW) is admitted


def test_replay_window_zero_turns_the_check_off() -> None:
    assert ReplayWindow(max_age_seconds=0, max_future_seconds=0).admits(NOW - timedelta(days=999), NOW)
