"""Scenarios: how one sandbox session looks (``Scenario``, with named presets) and the misbehaviour
planned for its next calls (``Fault``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

MAX_PAUSE_S = 30.0
"""Ceiling for any single sleep the sandbox or the emitter makes (latency, hang, spacing, timeout)."""
MAX_OVERSIZE_BYTES = 1 << 40
"""Ceiling for an ``oversize`` answer (streamed in chunks, never built in memory)."""
NBO_ACCEPTED_READINGS = ("reset", "sticky")

Endpoint = Literal["authorize", "details", "status", "confirm"]
SESSION_ENDPOINTS: tuple[Endpoint, ...] = ("details", "status", "confirm")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FAULT = re.compile(r"(?P<status>[1-5]\d\d)(?::retry-after=(?P<retry_after>[^\s]+))?")
_SIZED_FAULT = re.compile(r"(?P<kind>oversize|oversize-chunked):(?P<size>\d{1,12})")
_TIMED_FAULT = re.compile(r"(?P<kind>dribble|dribble-body|slow-apply):(?P<seconds>\d{1,3}(?:\.\d{1,3})?)")
_FAULT_WORDS: dict[str, Literal["timeout", "malformed", "reset", "lost"]] = {
    "timeout": "timeout",
    "malformed": "malformed",
    "reset": "reset",
    "lost": "lost",
}
_FAULT_FORMS = ("oversize:N", "oversize-chunked:N", "dribble:S", "dribble-body:S", "slow-apply:S")


@dataclass(frozen=True)
class Fault:
    """One planned misbehaviour of one call.

    ``status``: answer that HTTP status (a ProblemDetails body; ``retry_after`` sets ``Retry-After``).
    ``timeout``: hang ``hang_s`` and then answer 504, without acting. ``malformed``: act normally but
    replace a 2xx body with non-JSON. ``reset``: drop the connection without acting or answering.
    ``lost``: act normally (a confirm IS recorded), then drop the connection without answering.
    ``oversize:N`` / ``oversize-chunked:N``: act normally, then answer a 2xx with a body of N bytes
    (``{"pad":"xxx..."}``), streamed in 64 KiB chunks and never built in memory, with a
    Content-Length (or chunked, without one). ``dribble:S``: act normally, then write the whole
    answer (status line included) one byte every S seconds; ``dribble-body:S`` sends the status line
    and headers at once and dribbles the body. A dribble gives up after ``MAX_PAUSE_S`` in all.
    ``slow-apply:S`` (confirm only): the confirm is applied S seconds after it arrived, and answered
    then; until then ``/details`` shows no decision for it.
    """

    spec: str
    kind: Literal["status", "timeout", "malformed", "reset", "lost", "oversize", "dribble", "slow-apply"]
    status: int | None = None
    retry_after: str | None = None
    size: int | None = None
    seconds: float | None = None
    chunked: bool = False
    """``oversize``: Transfer-Encoding chunked instead of a Content-Length."""
    whole_answer: bool = False
    """``dribble``: the status line and headers are dribbled too, not only the body."""

    @classmethod
    def parse(cls, spec: str) -> Fault:
        if not isinstance(spec, str):
            raise ValueError("a fault is a string such as '503:retry-after=1' or 'timeout'")
        text = spec.strip().lower()
        if text in _FAULT_WORDS:
            return cls(spec=text, kind=_FAULT_WORDS[text])
        if (sized := _SIZED_FAULT.fullmatch(text)) is not None:
            size = int(sized["size"])
            if not 0 < size <= MAX_OVERSIZE_BYTES:
                raise ValueError(f"fault {spec!r}: N must be within 1..{MAX_OVERSIZE_BYTES}")
            return cls(spec=text, kind="oversize", size=size, chunked=sized["kind"] == "oversize-chunked")
        if (timed := _TIMED_FAULT.fullmatch(text)) is not None:
            seconds = float(timed["seconds"])
            if not 0 < seconds <= MAX_PAUSE_S:
                raise ValueError(f"fault {spec!r}: S must be within 0..{MAX_PAUSE_S} seconds")
            if timed["kind"] == "slow-apply":
                return cls(spec=text, kind="slow-apply", seconds=seconds)
            return cls(spec=text, kind="dribble", seconds=seconds, whole_answer=timed["kind"] == "dribble")
        match = _FAULT.fullmatch(text)
        if match is None or int(match["status"]) < 400:
            raise ValueError(
                f"unknown fault {spec!r}: use a 4xx/5xx status (optionally ':retry-after=N'), one of "
                f"{sorted(_FAULT_WORDS)} or one of {list(_FAULT_FORMS)}"
            )
        return cls(spec=text, kind="status", status=int(match["status"]), retry_after=match["retry_after"])


@dataclass(frozen=True)
class Scenario:
    """How one sandbox session looks and behaves. Money accepts anything ``Decimal`` can read."""

    amount: Decimal | int | float | str | None = Decimal("250.00")
    highest_debit_amount_to_guarantee: Decimal | int | float | str | None = None
    """None means fully guaranteed (equal to ``amount``) when a guarantee is offered, else null."""
    guarantee_offered: bool = True
    overall_risk_level: str = "Low"
    transaction_risk_level: str = "Low"
    user_risk_level: str = "Low"
    other_risk_level: str = "Low"
    available_balance: Decimal | int | float | str | None = Decimal("5000.00")
    reference_id: str | None = None
    """None gives ``SANDBOX-<first 8 hex of the session id>``."""
    legacy_details_shape: bool = False
    latency_ms: int = 0
    faults: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Per endpoint (``details``, ``status``, ``confirm``): faults played by the next calls, in order."""
    status: str = "Initiated"
    status_details: str | None = "EFT0101"
    registered: bool = True
    """False: the sandbox does not know the session at all (details/confirm/status answer 404)."""
    guarantee_id: str | None = None
    """The first offer's id (None: one is generated when ``expose_guarantee_ids``)."""
    expose_guarantee_ids: bool = False
    """``/details`` shows ``guaranteeDetails.guaranteeId`` of the current offer (Flinks documents none)."""
    nbo_guarantee_accepted: str = "reset"
    """What ``guaranteeAccepted`` shows once a second offer (Next Best Offer) is pending: ``reset``
    (null until that offer is confirmed) or ``sticky`` (the last decided offer's value: the pessimistic
    reading, in which a session-wide flag cannot be attributed to the offer being answered)."""
    details_patch: Mapping[str, Any] = field(default_factory=dict)
    """A JSON merge patch (RFC 7386: ``null`` removes a field) applied to every ``/details`` answer: a
    shape Flinks may send but does not document (a field renamed, dropped or of another type)."""
    status_patch: Mapping[str, Any] = field(default_factory=dict)
    """The same for every ``/status`` answer."""

    PRESETS: ClassVar[tuple[str, ...]] = (
        "accept",
        "high-risk",
        "shortfall",
        "no-guarantee",
        "not-found",
        "outage-then-recover",
    )

    def __post_init__(self) -> None:
        for name in ("amount", "highest_debit_amount_to_guarantee", "available_balance"):
            money(getattr(self, name), name)
        _require(self, bool, ("guarantee_offered", "legacy_details_shape", "registered"))
        _require(self, str, ("overall_risk_level", "transaction_risk_level", "user_risk_level"))
        _require(self, str, ("other_risk_level", "status"))
        _require(self, str | None, ("status_details", "reference_id", "guarantee_id"))
        _require(self, bool, ("expose_guarantee_ids",))
        if self.nbo_guarantee_accepted not in NBO_ACCEPTED_READINGS:
            raise ValueError(f"nbo_guarantee_accepted must be one of {list(NBO_ACCEPTED_READINGS)}")
        if isinstance(self.latency_ms, bool) or not isinstance(self.latency_ms, int):
            raise ValueError("latency_ms must be an integer")
        if not 0 <= self.latency_ms <= MAX_PAUSE_S * 1000:
            raise ValueError(f"latency_ms must be within 0..{int(MAX_PAUSE_S * 1000)}")
        validate_fault_plan(self.faults)
        for name in ("details_patch", "status_patch"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name} must be a JSON object (a merge patch)")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Scenario:
        """A named scenario (see ``PRESETS``), with field overrides."""
        presets: dict[str, dict[str, Any]] = {
            "accept": {},
            "high-risk": {"overall_risk_level": "High"},
            "shortfall": {
                "amount": Decimal("250.00"),
                "highest_debit_amount_to_guarantee": Decimal("100.00"),
            },
            "no-guarantee": {"guarantee_offered": False},
            "not-found": {"registered": False},
            "outage-then-recover": {"faults": {"confirm": ["503", "503"], "details": ["500"]}},
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; use one of {list(cls.PRESETS)}")
        return cls(**{**presets[name], **overrides})

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Scenario:
        """From admin-API JSON: field names as here, plus an optional ``preset`` to start from."""
        values = dict(document)
        preset = values.pop("preset", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown scenario fields {unknown}")
        if preset is None:
            return cls(**values)
        if not isinstance(preset, str):
            raise ValueError("preset must be a string")
        return cls.preset(preset, **values)


def _require(scenario: Scenario, kind: Any, names: Iterable[str]) -> None:
    for name in names:
        if not isinstance(getattr(scenario, name), kind):
            raise ValueError(f"{name} has the wrong type")


def validate_fault_plan(faults: object) -> None:
    if not isinstance(faults, Mapping):
        raise ValueError("faults must map an endpoint to a list of faults")
    for endpoint, plan in faults.items():
        if endpoint not in SESSION_ENDPOINTS:
            raise ValueError(f"faults: unknown endpoint {endpoint!r}; use one of {list(SESSION_ENDPOINTS)}")
        if isinstance(plan, str) or not isinstance(plan, Sequence):
            raise ValueError(f"faults[{endpoint!r}] must be a list")
        for spec in plan:
            if Fault.parse(spec).kind == "slow-apply" and endpoint != "confirm":
                raise ValueError(f"faults[{endpoint!r}]: slow-apply is for confirm only")


def parse_authorize_faults(specs: Sequence[str]) -> list[Fault]:
    faults = [Fault.parse(spec) for spec in specs]
    if any(fault.kind == "slow-apply" for fault in faults):
        raise ValueError("slow-apply is for confirm only")
    return faults


def canonical_uuid(value: str | None) -> str | None:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        return None
    return value.lower()


def money(value: object, name: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise ValueError(f"{name} must be a number or a numeric string")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"{name} must be a number or a numeric string") from exc
    if not amount.is_finite():
        raise ValueError(f"{name} must be finite")
    return amount
