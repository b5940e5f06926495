"""Numbers no real webhook carries, in fields the receiver reads: found by the receiver fuzz
(tests/integration/test_receiver_fuzz.py). Classification must never raise on a signed body."""

from __future__ import annotations

import pytest
from geft.webhook_events import GuaranteeEvent, classify, parse_when

SESSION_ID = "2a884d4c-00a9-4adb-9057-d7db4690b42f"


@pytest.mark.parametrize(
    "when", ["1e999999999", "-1e999999999", "1E+1000000", '"1e999999999"', "9" * 4000, "1e-999999999"]
)
def test_when_beyond_decimal_range_is_unreadable_not_a_crash(when: str) -> None:
    # GIVEN a guarantee whose `when` is a number far beyond any date (and beyond Decimal's Emax)
    body = f'{{"sessionId":"{SESSION_ID}","when":{when}}}'.encode()

    # WHEN it is classified
    event = classify(body)

    # THEN it is a guarantee whose `when` is unreadable (so the replay window does not apply)
    assert isinstance(event, GuaranteeEvent)
    assert event.when is None or event.when.year == 1970


def test_parse_when_of_an_overflowing_decimal_string() -> None:
    assert parse_when("1e999999999") is None
