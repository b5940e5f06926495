"""A local Flinks Pay G-EFT sandbox that enforces the documented API strictly (flinks-geft.md §3-§7).

Use it in-process (``with FlinksSandbox() as sandbox: sandbox.base_url``) or as a process::

    python -m geft_local.flinks_sandbox --port 8765 --username U --password P

It serves ``POST /api/v1/authorize`` and the session endpoints ``details``, ``status`` and
``guarantees/confirm``; plays per-session scenarios and fault plans; journals every API call (secrets
redacted) so tests can count exactly what a client sent; and offers an admin API under ``/_sandbox/``
so another process can register sessions and read their state. ``emit_guarantee_webhook`` plays
Flinks' side of the guarantee webhook (signed ``X-Webhook-Signature: sha256=<HEX>``).

Tokens: each is bound to the first session it is used on (one token per session, §3.3) and refused
(401) after its ``expires_in`` (``token_ttl_s``).

A session can receive further guarantees (Flinks' Next Best Offer): ``offer_guarantee`` (or the admin
API) adds one; ``/details`` then shows that offer's amount, highest debit amount and, when the scenario
exposes ids, its ``guaranteeId``; ``guaranteeAccepted`` either resets to null for the new offer or
stays at the last decided offer's value (``Scenario.nbo_guarantee_accepted``: ``reset``/``sticky``).
Confirms apply to the current offer and are journaled with its number.

Fault kinds (per endpoint, played in order; see ``Fault``): an HTTP status (``503``,
``429:retry-after=2``), ``timeout``, ``malformed``, ``reset``, ``lost``, ``oversize:N`` and
``oversize-chunked:N`` (a 2xx body of N bytes, streamed), ``dribble:S`` and ``dribble-body:S`` (one
byte every S seconds), and for confirms ``slow-apply:S`` (applied and answered S seconds late).
A scenario's ``details_patch`` and ``status_patch`` (JSON merge patches) shape its answers otherwise
than documented: a field dropped, renamed or of another type (``make contract``'s tests).

Admin API (JSON; errors are ProblemDetails: 400 bad input, 404 unknown session or path)::

    GET    /_sandbox/health                      {"ok": true}
    GET    /_sandbox/calls                       {"calls": [journal entries]}
    POST   /_sandbox/sessions                    a Scenario's fields (snake_case), optional "preset"
                                                 and "session_id" -> 201 {"sessionId": "..."}
    GET    /_sandbox/sessions/{id}               state: referenceId, decision, status, statusDetails,
                                                 pendingFaults, offers (each with its confirms),
                                                 confirms, calls
    POST   /_sandbox/sessions/{id}/status        {"status": "...", "statusDetails": "..." | null}
    POST   /_sandbox/sessions/{id}/faults        {"details": ["503", ...], "confirm": [...], ...}
    DELETE /_sandbox/sessions/{id}/faults        forget the planned faults (Flinks recovered)
    POST   /_sandbox/sessions/{id}/offers        {"amount": N, "highestDebitAmountToGuarantee": N?,
                                                 "guaranteeId": "..."?} -> 201 with the state

Stdlib only. Every sleep and hang has a ceiling, and ``stop()`` wakes them and frees the port.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import http.client
import itertools
import json
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, ClassVar, Literal, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

MAX_PAUSE_S = 30.0
"""Ceiling for any single sleep the sandbox or the emitter makes (latency, hang, spacing, timeout)."""

MAX_BODY_BYTES = 1 << 20
IDLE_CONNECTION_TIMEOUT_S = 10.0
DEFAULT_USERNAME = "sandbox-user"
DEFAULT_PASSWORD = "sandbox-pass"  # noqa: S105 - a local sandbox's well-known test credential

Endpoint = Literal["authorize", "details", "status", "confirm"]
SESSION_ENDPOINTS: tuple[Endpoint, ...] = ("details", "status", "confirm")
Transport = Literal["basic", "form"]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SESSION_PATH = re.compile(r"/api/v2/sessions/(?P<sid>[^/]+)/(?P<rest>details|status|guarantees/confirm)")
_ADMIN_SESSION_PATH = re.compile(r"/_sandbox/sessions/(?P<sid>[^/]+)(?P<rest>/status|/faults|/offers)?")
_FAULT = re.compile(r"(?P<status>[1-5]\d\d)(?::retry-after=(?P<retry_after>[^\s]+))?")
_SIZED_FAULT = re.compile(r"(?P<kind>oversize|oversize-chunked):(?P<size>\d{1,12})")
_TIMED_FAULT = re.compile(r"(?P<kind>dribble|dribble-body|slow-apply):(?P<seconds>\d{1,3}(?:\.\d{1,3})?)")
_FAULT_WORDS: dict[str, Literal["timeout", "malformed", "reset", "lost"]] = {
    "timeout": "timeout",
    "malformed": "malformed",
    "reset": "reset",
    "lost": "lost",
}
_FAULT_FORMS = (
    "oversize:N",
    "oversize-chunked:N",
    "dribble:S",
    "dribble-body:S",
    "slow-apply:S",
)
MAX_OVERSIZE_BYTES = 1 << 40
"""Ceiling for an ``oversize`` answer (streamed in chunks, never built in memory)."""
NBO_ACCEPTED_READINGS = ("reset", "sticky")
_STREAM_CHUNK_BYTES = 64 * 1024
_REDACTED = "[redacted]"
_SECRET_HEADERS = frozenset({"x-api-key", "cookie", "set-cookie", "proxy-authorization"})
_PROBLEM_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    405: "https://tools.ietf.org/html/rfc9110#section-15.5.6",
    409: "https://tools.ietf.org/html/rfc9110#section-15.5.10",
    413: "https://tools.ietf.org/html/rfc9110#section-15.5.14",
    415: "https://tools.ietf.org/html/rfc9110#section-15.5.16",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    502: "https://tools.ietf.org/html/rfc9110#section-15.6.3",
    503: "https://tools.ietf.org/html/rfc9110#section-15.6.4",
    504: "https://tools.ietf.org/html/rfc9110#section-15.6.5",
}
_PROBLEM_TITLES = {401: "Authentication Required", 404: "Session Not Found"}
_MALFORMED_BODY = b"<html><body>upstream answered something that is not JSON</body></html>"


# -- scenarios -----------------------------------------------------------------------------------------


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
            _money(getattr(self, name), name)
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
        _validate_fault_plan(self.faults)
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


@dataclass(frozen=True)
class JournalEntry:
    """One API call as the sandbox saw it. Authorization, x-api-key and Password values are redacted."""

    seq: int
    at: float
    method: str
    path: str
    endpoint: str
    session_id: str | None
    headers: dict[str, str]
    body: str
    response_status: int | None = None
    """None while unanswered, and for calls dropped without an answer (reset, lost, stop)."""
    fault: str | None = None
    decision: bool | None = None
    """For a confirm that reached the session: the ``guaranteeAccepted`` it carried."""
    repeat: bool = False
    """A confirm for an offer that was already decided (answered 200; the decision is unchanged)."""
    offer: int | None = None
    """For a confirm that reached the session: the offer (1, 2, ...) it was applied to."""
    response_bytes: int | None = None
    """Body bytes written for an ``oversize`` or ``dribble`` answer before it ended or the client left."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Offer:
    """One guarantee of a session: the first one, or a Next Best Offer after it."""

    number: int
    amount: Decimal | None
    highest_debit: Decimal | None
    guarantee_id: str | None
    decision: bool | None = None
    decided_at: datetime | None = None

    def to_json(self, confirms: list[bool]) -> dict[str, Any]:
        return {
            "offer": self.number,
            "amount": self.amount,
            "highestDebitAmountToGuarantee": self.highest_debit,
            "guaranteeId": self.guarantee_id,
            "decision": self.decision,
            "confirms": confirms,
        }


@dataclass
class _Session:
    session_id: str
    scenario: Scenario
    reference_id: str
    offers: list[_Offer]
    available_balance: Decimal | None
    faults: dict[str, deque[Fault]]
    status: str
    status_details: str | None
    created_at: datetime
    aggregation_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    updated_at: datetime | None = None

    @property
    def current(self) -> _Offer:
        return self.offers[-1]

    @property
    def amount(self) -> Decimal | None:
        return self.current.amount

    @property
    def highest_debit(self) -> Decimal | None:
        return self.current.highest_debit

    @property
    def decision(self) -> bool | None:
        """The current offer's decision."""
        return self.current.decision

    @property
    def decided_at(self) -> datetime | None:
        return self.current.decided_at

    def shown_accepted(self) -> bool | None:
        """``guaranteeDetails.guaranteeAccepted`` as ``/details`` shows it (``nbo_guarantee_accepted``)."""
        if self.current.decision is not None or self.scenario.nbo_guarantee_accepted == "reset":
            return self.current.decision
        decided = [offer.decision for offer in self.offers if offer.decision is not None]
        return decided[-1] if decided else None


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    """Close the connection without answering (status and body are ignored)."""
    body_size: int | None = None
    """Stream a synthetic body of this many bytes instead of ``body`` (``oversize``)."""
    chunked: bool = False
    dribble_s: float | None = None
    dribble_whole: bool = False
    journal_index: int | None = None


# -- the sandbox -------------------------------------------------------------------------------------


class FlinksSandbox:
    """The sandbox server and its state. Thread-safe; one lock guards sessions, tokens and journal."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        accepted_transports: Iterable[Transport] = ("basic", "form"),
        client_id: str | None = None,
        api_key: str | None = None,
        token_ttl_s: int = 299,
        hang_s: float = 2.0,
        latency_ms: int = 0,
        authorize_faults: Sequence[str] = (),
        status_requires_auth: bool = True,
        bind_tokens_to_session: bool = True,
        verbose: bool = False,
    ) -> None:
        """``client_id``/``api_key``: when set, every API call must carry them as headers.

        ``status_requires_auth``: the docs disagree whether ``/status`` needs a bearer (§5.3); strict by
        default. ``bind_tokens_to_session`` (on by default: "one token per session", §3.3): a token
        used on one session is refused (401) on any other. ``token_ttl_s``: the ``expires_in`` issued;
        a token is refused (401) once it has passed.
        """
        transports = frozenset(accepted_transports)
        if not transports or not transports <= {"basic", "form"}:
            raise ValueError("accepted_transports must be a non-empty subset of {'basic', 'form'}")
        if not 0 <= hang_s <= MAX_PAUSE_S:
            raise ValueError(f"hang_s must be within 0..{MAX_PAUSE_S}")
        if not 0 <= latency_ms <= MAX_PAUSE_S * 1000:
            raise ValueError(f"latency_ms must be within 0..{int(MAX_PAUSE_S * 1000)}")
        if token_ttl_s < 1:
            raise ValueError("token_ttl_s must be at least 1")
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._transports = transports
        self._client_id = client_id
        self._api_key = api_key
        self._token_ttl_s = token_ttl_s
        self._hang_s = hang_s
        self._latency_ms = latency_ms
        self._status_requires_auth = status_requires_auth
        self._bind_tokens = bind_tokens_to_session
        self.verbose = verbose

        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._unregistered: set[str] = set()
        self._tokens: dict[str, float] = {}
        self._token_sessions: dict[str, str] = {}
        self._authorize_faults: deque[Fault] = deque(_authorize_faults(authorize_faults))
        self._journal: list[JournalEntry] = []

        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None

    # lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler, self)
        self._server = server
        self._serve_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="flinks-sandbox", daemon=True
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Wake every sleeping handler, close every connection, free the port; bounded (a few seconds)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        server.join_handlers(timeout=5.0)
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=5.0)
            self._serve_thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("sandbox not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self.port}"

    # sessions -------------------------------------------------------------------------------------

    def add_session(self, session_id: str | None = None, scenario: Scenario | None = None) -> str:
        """Registers a session (unless the scenario says ``registered=False``) and returns its id."""
        scenario = scenario if scenario is not None else Scenario()
        sid = _canonical_uuid(session_id) if session_id is not None else str(uuid.uuid4())
        if sid is None:
            raise ValueError("session_id must be a UUID")
        with self._lock:
            if sid in self._sessions or sid in self._unregistered:
                raise ValueError(f"session {sid} already exists")
            if not scenario.registered:
                self._unregistered.add(sid)
                return sid
            amount = _money(scenario.amount, "amount")
            highest = _money(scenario.highest_debit_amount_to_guarantee, "highest_debit_amount_to_guarantee")
            if highest is None and scenario.guarantee_offered:
                highest = amount
            guarantee_id = scenario.guarantee_id
            if guarantee_id is None and scenario.expose_guarantee_ids:
                guarantee_id = str(uuid.uuid4())
            self._sessions[sid] = _Session(
                session_id=sid,
                scenario=scenario,
                reference_id=scenario.reference_id or f"SANDBOX-{sid[:8].upper()}",
                offers=[_Offer(1, amount, highest, guarantee_id)],
                available_balance=_money(scenario.available_balance, "available_balance"),
                faults={
                    endpoint: deque(Fault.parse(spec) for spec in plan)
                    for endpoint, plan in scenario.faults.items()
                },
                status=scenario.status,
                status_details=scenario.status_details,
                created_at=datetime.now(UTC),
            )
        return sid

    def offer_guarantee(
        self,
        session_id: str,
        *,
        amount: Decimal | int | float | str | None,
        highest_debit_amount_to_guarantee: Decimal | int | float | str | None = None,
        guarantee_id: str | None = None,
    ) -> int:
        """Flinks emits another guarantee for the session (a Next Best Offer); returns its number (2, ...).

        ``/details`` then shows this offer's amount and highest debit amount (equal to ``amount``
        unless given), its ``guaranteeId`` when the scenario exposes ids (one is generated if none is
        given), and ``guaranteeAccepted`` per ``Scenario.nbo_guarantee_accepted``. Confirms from now
        on apply to this offer; the session is back at the guarantee step.
        """
        money = _money(amount, "amount")
        highest = _money(highest_debit_amount_to_guarantee, "highest_debit_amount_to_guarantee")
        if guarantee_id is not None and (not isinstance(guarantee_id, str) or not guarantee_id.strip()):
            raise ValueError("guarantee_id must be a non-empty string")
        with self._lock:
            session = self._session(session_id)
            if guarantee_id is None and session.scenario.expose_guarantee_ids:
                guarantee_id = str(uuid.uuid4())
            number = len(session.offers) + 1
            session.offers.append(
                _Offer(number, money, highest if highest is not None else money, guarantee_id)
            )
            session.status, session.status_details = "InProgress", None
            session.updated_at = datetime.now(UTC)
        return number

    def add_faults(self, session_id: str, endpoint: str, faults: Sequence[str]) -> None:
        """Appends faults to a session's plan for one endpoint."""
        parsed = [Fault.parse(spec) for spec in faults]
        if endpoint not in SESSION_ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        _validate_fault_plan({endpoint: faults})
        with self._lock:
            self._session(session_id).faults.setdefault(endpoint, deque()).extend(parsed)

    def clear_faults(self, session_id: str) -> None:
        """Forgets every planned fault of a session: Flinks has recovered."""
        with self._lock:
            self._session(session_id).faults.clear()

    def add_authorize_faults(self, faults: Sequence[str]) -> None:
        parsed = _authorize_faults(faults)
        with self._lock:
            self._authorize_faults.extend(parsed)

    def set_status(self, session_id: str, status: str, status_details: str | None) -> None:
        with self._lock:
            session = self._session(session_id)
            session.status, session.status_details = status, status_details
            session.updated_at = datetime.now(UTC)

    def decision_of(self, session_id: str, *, offer: int | None = None) -> bool | None:
        """The decision recorded for an offer (the current one by default)."""
        with self._lock:
            session = self._session(session_id)
            if offer is None:
                return session.decision
            if not 1 <= offer <= len(session.offers):
                raise KeyError(f"session {session_id} has no offer {offer}")
            return session.offers[offer - 1].decision

    def session_state(self, session_id: str) -> dict[str, Any]:
        """What the admin API returns for a session: state, its confirms and its calls."""
        sid = _canonical_uuid(session_id)
        if sid is None:
            raise ValueError("session_id must be a UUID")
        with self._lock:
            session = self._sessions.get(sid)
            calls = [entry for entry in self._journal if entry.session_id == sid]
            state: dict[str, Any] = {"sessionId": sid, "registered": session is not None}
            if session is not None:
                state |= {
                    "referenceId": session.reference_id,
                    "decision": session.decision,
                    "status": session.status,
                    "statusDetails": session.status_details,
                    "pendingFaults": {k: [f.spec for f in v] for k, v in session.faults.items() if v},
                    "offers": [
                        offer.to_json(
                            [
                                entry.decision
                                for entry in calls
                                if entry.offer == offer.number and entry.decision is not None
                            ]
                        )
                        for offer in session.offers
                    ],
                }
        state["confirms"] = [
            entry.decision for entry in calls if entry.endpoint == "confirm" and entry.decision is not None
        ]
        state["calls"] = [entry.to_json() for entry in calls]
        return state

    def expire_tokens(self) -> None:
        """Every token issued so far becomes expired (the next use answers 401)."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0.0

    # journal --------------------------------------------------------------------------------------

    def calls(
        self, path_suffix: str | None = None, *, session_id: str | None = None, method: str | None = None
    ) -> list[JournalEntry]:
        """API calls received, oldest first, optionally filtered by path suffix, session and method."""
        sid = _canonical_uuid(session_id) if session_id is not None else None
        with self._lock:
            entries = list(self._journal)
        return [
            entry
            for entry in entries
            if (path_suffix is None or entry.path.endswith(path_suffix))
            and (session_id is None or entry.session_id == sid)
            and (method is None or entry.method == method.upper())
        ]

    def confirms_for(self, session_id: str, *, offer: int | None = None) -> list[bool]:
        """The ``guaranteeAccepted`` of every confirm that reached the session, in order (repeats too),
        of one offer when ``offer`` is given.

        Confirms a fault answered instead of the session (500, timeout, reset, ...) are not listed;
        see ``calls()`` for those.
        """
        return [
            entry.decision
            for entry in self.calls(session_id=session_id)
            if entry.endpoint == "confirm"
            and entry.decision is not None
            and (offer is None or entry.offer == offer)
        ]

    @property
    def authorize_count(self) -> int:
        return len(self.calls("/api/v1/authorize"))

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return len(self._tokens)

    def clear_journal(self) -> None:
        with self._lock:
            self._journal.clear()

    # webhook --------------------------------------------------------------------------------------

    def emit_guarantee_webhook(
        self,
        url: str,
        secret: str,
        session_id: str,
        *,
        body: dict[str, Any] | None = None,
        offer: int | None = None,
        attempts: int = 3,
        timeout: float = 5.0,
        spacing_s: float = 0.0,
    ) -> DeliveryResult:
        """``emit_guarantee_webhook`` with ``referenceId``, and ``amount`` and ``guaranteeId`` (when the
        offer has one) of an offer (the current one by default), taken from the session."""
        reference_id: str | None = None
        amount: Decimal | None = None
        guarantee_id: str | None = None
        sid = _canonical_uuid(session_id)
        with self._lock:
            session = self._sessions.get(sid or "")
            if session is not None:
                if offer is not None and not 1 <= offer <= len(session.offers):
                    raise KeyError(f"session {session_id} has no offer {offer}")
                chosen = session.offers[offer - 1] if offer is not None else session.current
                reference_id, amount, guarantee_id = session.reference_id, chosen.amount, chosen.guarantee_id
        return emit_guarantee_webhook(
            url,
            secret,
            session_id,
            body=body,
            reference_id=reference_id,
            amount=amount,
            guarantee_id=guarantee_id,
            attempts=attempts,
            timeout=timeout,
            spacing_s=spacing_s,
        )

    # request handling (called from handler threads) -----------------------------------------------

    def _session(self, session_id: str) -> _Session:
        sid = _canonical_uuid(session_id)
        session = self._sessions.get(sid or "")
        if session is None:
            raise KeyError(f"unknown session {session_id}")
        return session

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(min(seconds, MAX_PAUSE_S))

    def _record(self, request: _Request, endpoint: str, session_id: str | None) -> int:
        headers = _redacted_headers(request.headers)
        body = request.body.decode("utf-8", errors="replace")
        if endpoint == "authorize":
            body = _redacted_form(body)
        with self._lock:
            index = len(self._journal)
            self._journal.append(
                JournalEntry(
                    seq=index + 1,
                    at=time.time(),
                    method=request.method,
                    path=request.path,
                    endpoint=endpoint,
                    session_id=session_id,
                    headers=headers,
                    body=body,
                )
            )
        return index

    def _update(self, index: int, **changes: Any) -> None:
        with self._lock:
            if index < len(self._journal):
                self._journal[index] = replace(self._journal[index], **changes)

    def handle_api(self, request: _Request) -> _Answer:
        """Every API call is journaled first (even a wrong method or path), then answered."""
        if request.path == "/api/v1/authorize":
            index = self._record(request, "authorize", None)
            if request.method != "POST":
                answer, fault = _problem(405, detail="use POST", headers=(("Allow", "POST"),)), None
            else:
                answer, fault = self._authorize(request, index)
        elif (match := _SESSION_PATH.fullmatch(request.path)) is not None:
            endpoint = _endpoint_of(match["rest"])
            sid = _canonical_uuid(match["sid"])
            index = self._record(request, endpoint, sid)
            allowed = "POST" if endpoint == "confirm" else "GET"
            if request.method != allowed:
                answer, fault = _problem(405, detail=f"use {allowed}", headers=(("Allow", allowed),)), None
            else:
                answer, fault = self._session_call(request, endpoint, match["sid"], sid, index)
        else:
            index = self._record(request, "unknown", None)
            answer, fault = _problem(404, title="Not Found", detail="no such endpoint"), None
        self._update(index, response_status=None if answer.drop else answer.status, fault=fault)
        return replace(answer, journal_index=index)

    def _authorize(self, request: _Request, index: int) -> tuple[_Answer, str | None]:
        self._pause(self._latency_ms / 1000)
        with self._lock:
            fault = self._authorize_faults.popleft() if self._authorize_faults else None
        if fault is not None:
            self._update(index, fault=fault.spec)
        if fault is not None and fault.kind in ("status", "timeout", "reset"):
            return self._play(fault), fault.spec
        return _after_fault(self._issue_token(request), fault)

    def _issue_token(self, request: _Request) -> _Answer:
        if _media_type(request.headers) != "application/x-www-form-urlencoded":
            return _problem(415, detail="Content-Type must be application/x-www-form-urlencoded")
        try:
            form = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return _json_answer(400, {"error": "invalid_request", "title": "Bad Request", "status": 400})
        grant_types = [value for key, value in form if key == "grant_type"]
        if grant_types != ["client_credentials"]:
            return _json_answer(
                400, {"error": "unsupported_grant_type", "title": "Bad Request", "status": 400}
            )
        if not (self._valid_credentials(request.headers, form) and self._identity_ok(request.headers)):
            body = {"error": "invalid_client", "title": "Authentication Required", "status": 401}
            return _json_answer(401, body, headers=(("WWW-Authenticate", 'Basic realm="flinks"'),))
        token = str(uuid.uuid4())
        with self._lock:
            self._tokens[token] = time.monotonic() + self._token_ttl_s
        return _json_answer(
            200, {"access_token": token, "token_type": "bearer", "expires_in": self._token_ttl_s}
        )

    def _valid_credentials(self, headers: Mapping[str, str], form: list[tuple[str, str]]) -> bool:
        valid = False
        if "basic" in self._transports:
            valid |= self._basic_ok(headers.get("authorization", ""))
        if "form" in self._transports:
            usernames = [value for key, value in form if key == "Username"]
            passwords = [value for key, value in form if key == "Password"]
            if len(usernames) == 1 and len(passwords) == 1:
                valid |= _same(usernames[0], self._username) & _same(passwords[0], self._password)
        return valid

    def _basic_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, colon, password = decoded.partition(":")
        return bool(colon) and _same(username, self._username) & _same(password, self._password)

    def _identity_ok(self, headers: Mapping[str, str]) -> bool:
        if self._client_id is not None and not _same(headers.get("x-client-id", ""), self._client_id):
            return False
        return self._api_key is None or _same(headers.get("x-api-key", ""), self._api_key)

    def _bearer_ok(self, headers: Mapping[str, str], sid: str | None) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        with self._lock:
            expires_at = self._tokens.get(token)
            if expires_at is None or time.monotonic() >= expires_at:
                return False
            if self._bind_tokens and sid is not None:
                bound = self._token_sessions.setdefault(token, sid)
                if bound != sid:
                    return False
        return self._identity_ok(headers)

    def _session_call(
        self, request: _Request, endpoint: Endpoint, raw_sid: str, sid: str | None, index: int
    ) -> tuple[_Answer, str | None]:
        with self._lock:
            session = self._sessions.get(sid or "")
            latency_ms = self._latency_ms + (session.scenario.latency_ms if session is not None else 0)
        self._pause(latency_ms / 1000)
        needs_auth = endpoint != "status" or self._status_requires_auth
        if needs_auth and not self._bearer_ok(request.headers, sid):
            return _problem(401, detail="a valid bearer token is required"), None
        if sid is None:
            return _problem(
                400, title="Bad Request", detail=f"sessionId {raw_sid[:64]!r} is not a UUID"
            ), None
        if session is None:
            return _problem(404, detail=f"no session {sid}"), None
        with self._lock:
            plan = session.faults.get(endpoint)
            fault = plan.popleft() if plan else None
        if fault is not None:
            self._update(index, fault=fault.spec)
        if fault is not None and fault.kind in ("status", "timeout", "reset"):
            return self._play(fault), fault.spec
        if fault is not None and fault.kind == "slow-apply":
            self._pause(fault.seconds or 0.0)  # Flinks is still applying it: /details shows no decision
            if self._stopping.is_set():
                return _Answer(status=0, drop=True), fault.spec
        if endpoint == "confirm":
            answer = self._confirm(request, session, index)
        elif endpoint == "details":
            answer = self._details(session)
        else:
            answer = self._status(session)
        return _after_fault(answer, fault)

    def _play(self, fault: Fault) -> _Answer:
        if fault.kind == "reset":
            return _Answer(status=0, drop=True)
        if fault.kind == "timeout":
            self._pause(self._hang_s)
            if self._stopping.is_set():
                return _Answer(status=0, drop=True)
            return _problem(504, title="Gateway Timeout", detail="the sandbox hung on purpose")
        status = fault.status or 500
        headers = (("Retry-After", fault.retry_after),) if fault.retry_after is not None else ()
        return _problem(status, detail=f"sandbox fault {fault.spec}", headers=headers)

    def _confirm(self, request: _Request, session: _Session, index: int) -> _Answer:
        if _media_type(request.headers) != "application/json":
            return _problem(415, detail="Content-Type must be application/json")
        try:
            document = json.loads(request.body, object_pairs_hook=_no_duplicate_keys)
        except (ValueError, RecursionError):
            return _problem(400, title="Bad Request", detail="body is not valid JSON")
        if not (isinstance(document, dict) and set(document) == {"guaranteeAccepted"}):
            return _problem(
                400, title="Bad Request", detail='body must be exactly {"guaranteeAccepted": <boolean>}'
            )
        accepted = document["guaranteeAccepted"]
        if not isinstance(accepted, bool):
            return _problem(400, title="Bad Request", detail="guaranteeAccepted must be a JSON boolean")
        with self._lock:
            offer = session.current
            repeat = offer.decision is not None
            if not repeat:
                now = datetime.now(UTC)
                offer.decision, offer.decided_at, session.updated_at = accepted, now, now
                session.status, session.status_details = (
                    ("Completed", "EFT0301") if accepted else ("Failed", "EFT0402")
                )
        self._update(index, decision=accepted, repeat=repeat, offer=offer.number)
        return _json_answer(200, {"sessionId": session.session_id, "referenceId": session.reference_id})

    def _details(self, session: _Session) -> _Answer:
        with self._lock:
            if session.status == "Initiated":
                session.status, session.status_details = "InProgress", None
                session.updated_at = datetime.now(UTC)
            body = _legacy_details(session) if session.scenario.legacy_details_shape else _details(session)
        return _json_answer(200, merge_patch(body, session.scenario.details_patch))

    def _status(self, session: _Session) -> _Answer:
        with self._lock:
            body = {
                "sessionId": session.session_id,
                "referenceId": session.reference_id,
                "amount": session.amount,
                "status": session.status,
                "statusDetails": session.status_details,
            }
        return _json_answer(200, merge_patch(body, session.scenario.status_patch))

    def handle_admin(self, request: _Request) -> _Answer:
        try:
            return self._admin(request)
        except (ValueError, TypeError) as exc:
            return _problem(400, title="Bad Request", detail=str(exc))
        except KeyError as exc:
            return _problem(404, title="Not Found", detail=str(exc.args[0]) if exc.args else "unknown")

    def _admin(self, request: _Request) -> _Answer:
        path, method = request.path, request.method
        if path == "/_sandbox/health" and method == "GET":
            return _json_answer(200, {"ok": True})
        if path == "/_sandbox/calls" and method == "GET":
            return _json_answer(200, {"calls": [entry.to_json() for entry in self.calls()]})
        if path == "/_sandbox/sessions" and method == "POST":
            document = _json_body(request)
            session_id = document.pop("session_id", document.pop("sessionId", None))
            sid = self.add_session(session_id, Scenario.from_json(document))
            return _json_answer(201, {"sessionId": sid})
        match = _ADMIN_SESSION_PATH.fullmatch(path)
        if match is None:
            return _problem(404, title="Not Found", detail="no such admin endpoint")
        return self._admin_session(request, match["sid"], match["rest"])

    def _admin_session(self, request: _Request, sid: str, rest: str | None) -> _Answer:
        method = request.method
        if rest is None and method == "GET":
            return _json_answer(200, self.session_state(sid))
        if rest == "/status" and method == "POST":
            document = _json_body(request)
            status, details = document.get("status"), document.get("statusDetails")
            if not isinstance(status, str) or not (details is None or isinstance(details, str)):
                raise ValueError('body must be {"status": "...", "statusDetails": "..." | null}')
            self.set_status(sid, status, details)
            return _json_answer(200, self.session_state(sid))
        if rest == "/faults" and method == "POST":
            for endpoint, plan in _json_body(request).items():
                if isinstance(plan, str) or not isinstance(plan, list):
                    raise ValueError("body must map an endpoint to a list of faults")
                self.add_faults(sid, endpoint, plan)
            return _json_answer(200, self.session_state(sid))
        if rest == "/faults" and method == "DELETE":  # Flinks has recovered
            self.clear_faults(sid)
            return _json_answer(200, self.session_state(sid))
        if rest == "/offers" and method == "POST":
            document = _json_body(request)
            unknown = sorted(set(document) - {"amount", "highestDebitAmountToGuarantee", "guaranteeId"})
            if unknown or "amount" not in document:
                raise ValueError(
                    'body must be {"amount": N, "highestDebitAmountToGuarantee": N?, "guaranteeId": "..."?}'
                )
            self.offer_guarantee(
                sid,
                amount=document["amount"],
                highest_debit_amount_to_guarantee=document.get("highestDebitAmountToGuarantee"),
                guarantee_id=document.get("guaranteeId"),
            )
            return _json_answer(201, self.session_state(sid))
        return _problem(405, detail="method not allowed here")


# -- HTTP plumbing -------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # a burst of clients must not meet dropped SYNs (socketserver's default is 5)

    def __init__(self, address: tuple[str, int], handler: type[_Handler], sandbox: FlinksSandbox) -> None:
        self.sandbox = sandbox
        self._tracking_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            daemon=True,
            name="flinks-sandbox-conn",
        )
        with self._tracking_lock:
            self._connections.add(request)
            self._handler_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._tracking_lock:
                self._connections.discard(request)
                self._handler_threads.discard(threading.current_thread())

    def close_connections(self) -> None:
        with self._tracking_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def join_handlers(self, timeout: float) -> None:
        give_up_at = time.monotonic() + timeout
        with self._tracking_lock:
            threads = list(self._handler_threads)
        for thread in threads:
            thread.join(max(0.0, give_up_at - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT_S
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sandbox.verbose:
            sys.stderr.write(f"flinks-sandbox {self.address_string()} {format % args}\n")

    def _dispatch(self) -> None:
        sandbox = self.server.sandbox
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._write(_problem(411, title="Length Required", detail="send a Content-Length"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._write(_problem(413 if length > 0 else 400, detail="bad or too large Content-Length"))
            return
        body = self.rfile.read(length) if length else b""
        request = _Request(
            method=self.command,
            path=urlsplit(self.path).path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        if request.path.startswith("/_sandbox/"):
            answer = sandbox.handle_admin(request)
        else:
            answer = sandbox.handle_api(request)
        if answer.drop:
            self._drop()
        elif answer.body_size is not None or answer.dribble_s is not None:
            written = self._stream(answer)
            if answer.journal_index is not None:
                sandbox._update(answer.journal_index, response_bytes=written)
        else:
            self._write(answer)

    def _write(self, answer: _Answer) -> None:
        try:
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _stream(self, answer: _Answer) -> int:
        """Writes an ``oversize`` or ``dribble`` answer; returns the body bytes written before it ended
        or the client went away. The connection is closed afterwards."""
        self.close_connection = True
        size = answer.body_size if answer.body_size is not None else len(answer.body)
        lines = [f"{self.protocol_version} {answer.status} {HTTPStatus(answer.status).phrase}"]
        lines += [f"{name}: {value}" for name, value in answer.headers]
        lines.append("Transfer-Encoding: chunked" if answer.chunked else f"Content-Length: {size}")
        lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        body = _oversize_body(size) if answer.body_size is not None else iter([answer.body])
        written = 0
        try:
            if answer.dribble_s is not None:
                return self._dribble(head, body, answer.dribble_s, whole=answer.dribble_whole)
            self.wfile.write(head)
            for chunk in body:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if answer.chunked else chunk)
                written += len(chunk)
            if answer.chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass  # the client stopped reading (as a size cap should)
        return written

    def _dribble(self, head: bytes, body: Iterable[bytes], every_s: float, *, whole: bool) -> int:
        sandbox = self.server.sandbox
        give_up_at = time.monotonic() + MAX_PAUSE_S
        if not whole:
            self.wfile.write(head)
            self.wfile.flush()
        pieces = [(head, False)] if whole else []
        written = 0
        for chunk, is_body in itertools.chain(pieces, ((chunk, True) for chunk in body)):
            for index in range(len(chunk)):
                if sandbox._stopping.is_set() or time.monotonic() >= give_up_at:
                    return written
                self.wfile.write(chunk[index : index + 1])
                self.wfile.flush()
                written += is_body
                sandbox._pause(every_s)
        return written

    def _drop(self) -> None:
        """Closes the connection without a byte of answer (an RST where the platform allows it)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# -- webhook emitter -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryResult:
    """Each attempt as ``(HTTP status or None for a connection error/timeout, elapsed ms)``."""

    attempts: list[tuple[int | None, float]]
    delivered: bool


def sign_body(body: bytes, secret: str) -> str:
    """The ``X-Webhook-Signature`` value: ``sha256=`` + uppercase hex HMAC-SHA256 of the exact bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().upper()


def guarantee_webhook_body(
    session_id: str,
    *,
    reference_id: str | None = None,
    amount: Decimal | float | None = None,
    guarantee_id: str | None = None,
) -> dict[str, Any]:
    """The sandbox's guess at the (undocumented, §1.2) guarantee event body (``guaranteeId`` only
    when the offer has one)."""
    body: dict[str, Any] = {
        "type": "GuaranteeEmitted",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sessionId": session_id,
        "referenceId": reference_id,
        "amount": amount,
    }
    if guarantee_id is not None:
        body["guaranteeId"] = guarantee_id
    return body


def emit_guarantee_webhook(
    url: str,
    secret: str,
    session_id: str,
    *,
    body: dict[str, Any] | None = None,
    reference_id: str | None = None,
    amount: Decimal | float | None = None,
    guarantee_id: str | None = None,
    raw_body: bytes | None = None,
    attempts: int = 3,
    timeout: float = 5.0,
    spacing_s: float = 0.0,
) -> DeliveryResult:
    """Plays Flinks delivering a guarantee webhook: serialize once, sign those bytes, POST them until a 2xx.

    ``body`` replaces the default body; ``raw_body`` sends exact bytes (for signature-edge tests).
    A non-2xx answer, a timeout or a connection error is a failed attempt; the same bytes are re-sent up
    to ``attempts`` times, ``spacing_s`` apart. Redirects are not followed and no proxy is used.
    """
    if not 1 <= attempts <= 10:
        raise ValueError("attempts must be within 1..10")
    if not 0 < timeout <= MAX_PAUSE_S or not 0 <= spacing_s <= MAX_PAUSE_S:
        raise ValueError(f"timeout and spacing_s must be within 0..{MAX_PAUSE_S} seconds")
    if raw_body is None:
        document = (
            body
            if body is not None
            else guarantee_webhook_body(
                session_id, reference_id=reference_id, amount=amount, guarantee_id=guarantee_id
            )
        )
        raw_body = _dumps(document)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Webhook-Signature": sign_body(raw_body, secret),
        "User-Agent": "geft-local-flinks-sandbox",
    }
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    results: list[tuple[int | None, float]] = []
    for number in range(attempts):
        if number and spacing_s:
            time.sleep(spacing_s)
        request = urllib.request.Request(url, data=raw_body, headers=headers, method="POST")  # noqa: S310
        started = time.perf_counter()
        status: int | None
        try:
            with opener.open(request, timeout=timeout) as response:
                response.read()
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            status = None
        results.append((status, round((time.perf_counter() - started) * 1000, 3)))
        if status is not None and 200 <= status < 300:
            return DeliveryResult(attempts=results, delivered=True)
    return DeliveryResult(attempts=results, delivered=False)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# -- helpers -------------------------------------------------------------------------------------------


def _oversize_body(size: int) -> Iterator[bytes]:
    """``{"pad":"xxx..."}`` of exactly ``size`` bytes, in chunks: never ``size`` bytes at once."""
    prefix, suffix = (b'{"pad":"', b'"}') if size >= 10 else (b"", b"")
    left = size - len(prefix) - len(suffix)
    filler = b"x" * _STREAM_CHUNK_BYTES
    yield prefix
    while left > 0:
        step = min(left, _STREAM_CHUNK_BYTES)
        yield filler[:step]
        left -= step
    yield suffix


def merge_patch(document: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with the JSON merge patch ``patch`` applied (RFC 7386), as a new object."""
    merged = dict(document)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping):
            current = merged.get(key)
            merged[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            merged[key] = value
    return merged


def _require(scenario: Scenario, kind: Any, names: Iterable[str]) -> None:
    for name in names:
        if not isinstance(getattr(scenario, name), kind):
            raise ValueError(f"{name} has the wrong type")


def _validate_fault_plan(faults: object) -> None:
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


def _authorize_faults(specs: Sequence[str]) -> list[Fault]:
    faults = [Fault.parse(spec) for spec in specs]
    if any(fault.kind == "slow-apply" for fault in faults):
        raise ValueError("slow-apply is for confirm only")
    return faults


def _endpoint_of(rest: str) -> Endpoint:
    if rest == "details":
        return "details"
    return "status" if rest == "status" else "confirm"


def _after_fault(answer: _Answer, fault: Fault | None) -> tuple[_Answer, str | None]:
    """Applies a fault that lets the call act normally: ``lost`` drops the answer, ``malformed`` spoils it."""
    if fault is None:
        return answer, None
    if fault.kind == "lost":
        return replace(answer, drop=True), fault.spec
    if fault.kind == "malformed" and 200 <= answer.status < 300:
        return replace(answer, body=_MALFORMED_BODY, headers=(("Content-Type", "text/html"),)), fault.spec
    if fault.kind == "oversize" and 200 <= answer.status < 300:
        return replace(answer, body=b"", body_size=fault.size, chunked=fault.chunked), fault.spec
    if fault.kind == "dribble":
        return replace(answer, dribble_s=fault.seconds, dribble_whole=fault.whole_answer), fault.spec
    return answer, fault.spec


def _canonical_uuid(value: str | None) -> str | None:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        return None
    return value.lower()


def _money(value: object, name: str) -> Decimal | None:
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


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _dumps(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()


def _json_answer(status: int, document: object, *, headers: tuple[tuple[str, str], ...] = ()) -> _Answer:
    return _Answer(status, _dumps(document), (("Content-Type", "application/json; charset=utf-8"), *headers))


def _problem(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> _Answer:
    document: dict[str, Any] = {
        "type": _PROBLEM_TYPES.get(status, "about:blank"),
        "title": title or _PROBLEM_TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "traceId": str(uuid.uuid4()),
    }
    if detail:
        document["detail"] = detail
    return _Answer(
        status, _dumps(document), (("Content-Type", "application/problem+json; charset=utf-8"), *headers)
    )


def _json_body(request: _Request) -> dict[str, Any]:
    if not request.body:
        return {}
    document = json.loads(request.body)
    if not isinstance(document, dict):
        raise ValueError("body must be a JSON object")
    return document


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate key")
    return document


def _same(received: str, expected: str) -> bool:
    return hmac.compare_digest(received.encode("utf-8"), expected.encode("utf-8"))


def _redacted_headers(headers: Mapping[str, str]) -> dict[str, str]:
    redacted: dict[str, str] = {}
    for name, value in headers.items():
        if name == "authorization":
            scheme = value.split(" ", 1)[0]
            redacted[name] = f"{scheme} {_REDACTED}" if " " in value else _REDACTED
        elif name in _SECRET_HEADERS:
            redacted[name] = _REDACTED
        else:
            redacted[name] = value
    return redacted


def _redacted_form(body: str) -> str:
    try:
        pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return body if "password" not in body.lower() else _REDACTED
    return urlencode([(key, _REDACTED if key.lower() == "password" else value) for key, value in pairs])


def _details(session: _Session) -> dict[str, Any]:
    """The current documented ``/details`` shape (§5.4)."""
    scenario = session.scenario
    return {
        "sessionId": session.session_id,
        "status": session.status,
        "step": {
            "current": "GuaranteeOffer" if session.decision is None else "Complete",
            "aggregationRequestId": session.aggregation_request_id,
            "padId": None,
        },
        "referenceId": session.reference_id,
        "amount": session.amount,
        "type": "EFT",
        "direction": "DEBIT",
        "currency": "CAD",
        "options": {
            "guarantee": {"enable": True},
            "notificationPreferences": {"language": "EN"},
            "showConsentScreen": False,
        },
        "payor": {
            "email": "payor@example.com",
            "firstName": "Jean-Claude",
            "lastName": "Topinambour",
            "account": {
                "institutionCode": "777",
                "transitNumber": "00011",
                "accountNumber": "XXXXX1234",
                "accountLabel": "Chequing",
                "availableBalance": session.available_balance,
            },
        },
        "guaranteeDetails": {
            "guaranteeOffered": scenario.guarantee_offered,
            "guaranteeAccepted": session.shown_accepted(),
            "highestDebitAmountToGuarantee": session.highest_debit,
            "overallRiskLevel": scenario.overall_risk_level,
            "transactionRiskLevel": scenario.transaction_risk_level,
            "userRiskLevel": scenario.user_risk_level,
            "otherRiskLevel": scenario.other_risk_level,
            **({"guaranteeId": session.current.guarantee_id} if scenario.expose_guarantee_ids else {}),
        },
    }


def _legacy_details(session: _Session) -> dict[str, Any]:
    """The older documented ``/details`` shape: ``guarantee{status, approvedAt, coverage}``."""
    offered = session.scenario.guarantee_offered
    return {
        "sessionId": session.session_id,
        "status": session.status,
        "referenceId": session.reference_id,
        "amount": session.amount,
        "currency": "CAD",
        "created_at": session.created_at,
        "updated_at": session.updated_at or session.created_at,
        "completed_at": session.decided_at,
        "payor": {
            "firstName": "Jean-Claude",
            "lastName": "Topinambour",
            "verifiedAccount": {
                "institutionName": "Sandbox Bank",
                "accountType": "Chequing",
                "accountNumber": "XXXXX1234",
                "transitNumber": "00011",
                "institutionCode": "777",
            },
        },
        "guarantee": {
            "status": "Approved" if offered else "Declined",
            "approvedAt": session.created_at if offered else None,
            "coverage": session.highest_debit,
        },
    }


# -- process entry point -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geft_local.flinks_sandbox", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument("--transports", default="basic,form", help="accepted authorize transports")
    parser.add_argument("--client-id", default=None)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--token-ttl-s", type=int, default=299)
    parser.add_argument("--hang-s", type=float, default=2.0)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--status-without-auth", action="store_true")
    parser.add_argument(
        "--allow-shared-tokens", action="store_true", help="accept one token on several sessions"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    transports: list[Transport] = []
    for name in args.transports.split(","):
        if name.strip() not in ("basic", "form"):
            parser.error("--transports takes basic, form or basic,form")
        transports.append("basic" if name.strip() == "basic" else "form")
    sandbox = FlinksSandbox(
        host=args.host,
        port=args.port,
        username=args.username,
        password=args.password,
        accepted_transports=transports,
        client_id=args.client_id,
        api_key=args.api_key,
        token_ttl_s=args.token_ttl_s,
        hang_s=args.hang_s,
        latency_ms=args.latency_ms,
        status_requires_auth=not args.status_without_auth,
        bind_tokens_to_session=not args.allow_shared_tokens,
        verbose=args.verbose,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    sandbox.start()
    print(f"FLINKS_SANDBOX_URL={sandbox.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
