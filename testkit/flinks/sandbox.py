"""State and endpoints: the sandbox's sessions (offers, planned faults, status), its tokens and its
journal, and what each API and admin call does to them. ``FlinksSandbox`` is the public face."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlencode

from testkit.flinks.responses import (
    DROPPED,
    Reply,
    after_fault,
    details_body,
    json_reply,
    legacy_details_body,
    merge_patch,
    problem,
)
from testkit.flinks.scenarios import (
    MAX_PAUSE_S,
    SESSION_ENDPOINTS,
    Endpoint,
    Fault,
    Scenario,
    canonical_uuid,
    money,
    parse_authorize_faults,
    validate_fault_plan,
)
from testkit.flinks.server import SandboxHandler
from testkit.flinks.webhooks import DeliveryResult, emit_guarantee_webhook
from testkit.http import LoopbackServer, Request

DEFAULT_USERNAME = "sandbox-user"
DEFAULT_PASSWORD = "sandbox-pass"  # noqa: S105 - a local sandbox's well-known test credential
Transport = Literal["basic", "form"]

_SESSION_PATH = re.compile(r"/api/v2/sessions/(?P<sid>[^/]+)/(?P<rest>details|status|guarantees/confirm)")
_ADMIN_SESSION_PATH = re.compile(r"/_sandbox/sessions/(?P<sid>[^/]+)(?P<rest>/status|/faults|/offers)?")
_REDACTED = "[redacted]"
_SECRET_HEADERS = frozenset({"x-api-key", "cookie", "set-cookie", "proxy-authorization"})


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
class Offer:
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
class Session:
    session_id: str
    scenario: Scenario
    reference_id: str
    offers: list[Offer]
    available_balance: Decimal | None
    faults: dict[str, deque[Fault]]
    status: str
    status_details: str | None
    created_at: datetime
    aggregation_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    updated_at: datetime | None = None

    @property
    def current(self) -> Offer:
        return self.offers[-1]

    def shown_accepted(self) -> bool | None:
        """``guaranteeDetails.guaranteeAccepted`` as ``/details`` shows it (``nbo_guarantee_accepted``)."""
        if self.current.decision is not None or self.scenario.nbo_guarantee_accepted == "reset":
            return self.current.decision
        decided = [offer.decision for offer in self.offers if offer.decision is not None]
        return decided[-1] if decided else None


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
        self._sessions: dict[str, Session] = {}
        self._unregistered: set[str] = set()
        self._tokens: dict[str, float] = {}
        self._token_sessions: dict[str, str] = {}
        self._authorize_faults: deque[Fault] = deque(parse_authorize_faults(authorize_faults))
        self._journal: list[JournalEntry] = []

        self._stopping = threading.Event()
        self._server: LoopbackServer[FlinksSandbox] | None = None

    # lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        self._stopping.clear()
        self._server = LoopbackServer((self._host, self._port), SandboxHandler, self, name="flinks-sandbox")
        self._server.start()
        return self

    def stop(self) -> None:
        """Wake every sleeping handler, close every connection, free the port; bounded (a few seconds)."""
        server, self._server = self._server, None
        if server is not None:
            self._stopping.set()
            server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("sandbox not started")
        return self._server.port

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host  # noqa: S104 - a bind-all host
        return f"http://{host}:{self.port}"

    # sessions -------------------------------------------------------------------------------------

    def add_session(self, session_id: str | None = None, scenario: Scenario | None = None) -> str:
        """Registers a session (unless the scenario says ``registered=False``) and returns its id."""
        scenario = scenario if scenario is not None else Scenario()
        sid = canonical_uuid(session_id) if session_id is not None else str(uuid.uuid4())
        if sid is None:
            raise ValueError("session_id must be a UUID")
        with self._lock:
            if sid in self._sessions or sid in self._unregistered:
                raise ValueError(f"session {sid} already exists")
            if not scenario.registered:
                self._unregistered.add(sid)
                return sid
            amount = money(scenario.amount, "amount")
            highest = money(scenario.highest_debit_amount_to_guarantee, "highest_debit_amount_to_guarantee")
            if highest is None and scenario.guarantee_offered:
                highest = amount
            guarantee_id = scenario.guarantee_id
            if guarantee_id is None and scenario.expose_guarantee_ids:
                guarantee_id = str(uuid.uuid4())
            self._sessions[sid] = Session(
                session_id=sid,
                scenario=scenario,
                reference_id=scenario.reference_id or f"SANDBOX-{sid[:8].upper()}",
                offers=[Offer(1, amount, highest, guarantee_id)],
                available_balance=money(scenario.available_balance, "available_balance"),
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
        value = money(amount, "amount")
        highest = money(highest_debit_amount_to_guarantee, "highest_debit_amount_to_guarantee")
        if guarantee_id is not None and (not isinstance(guarantee_id, str) or not guarantee_id.strip()):
            raise ValueError("guarantee_id must be a non-empty string")
        with self._lock:
            session = self._session(session_id)
            if guarantee_id is None and session.scenario.expose_guarantee_ids:
                guarantee_id = str(uuid.uuid4())
            number = len(session.offers) + 1
            session.offers.append(
                Offer(number, value, highest if highest is not None else value, guarantee_id)
            )
            session.status, session.status_details = "InProgress", None
            session.updated_at = datetime.now(UTC)
        return number

    def add_faults(self, session_id: str, endpoint: str, faults: Sequence[str]) -> None:
        """Appends faults to a session's plan for one endpoint."""
        parsed = [Fault.parse(spec) for spec in faults]
        if endpoint not in SESSION_ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        validate_fault_plan({endpoint: faults})
        with self._lock:
            self._session(session_id).faults.setdefault(endpoint, deque()).extend(parsed)

    def clear_faults(self, session_id: str) -> None:
        """Forgets every planned fault of a session: Flinks has recovered."""
        with self._lock:
            self._session(session_id).faults.clear()

    def add_authorize_faults(self, faults: Sequence[str]) -> None:
        parsed = parse_authorize_faults(faults)
        with self._lock:
            self._authorize_faults.extend(parsed)

    def clear_authorize_faults(self) -> None:
        with self._lock:
            self._authorize_faults.clear()

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
                return session.current.decision
            if not 1 <= offer <= len(session.offers):
                raise KeyError(f"session {session_id} has no offer {offer}")
            return session.offers[offer - 1].decision

    def session_state(self, session_id: str) -> dict[str, Any]:
        """What the admin API returns for a session: state, its confirms and its calls."""
        sid = canonical_uuid(session_id)
        if sid is None:
            raise ValueError("session_id must be a UUID")
        with self._lock:
            session = self._sessions.get(sid)
            calls = [entry for entry in self._journal if entry.session_id == sid]
            state: dict[str, Any] = {"sessionId": sid, "registered": session is not None}
            if session is not None:
                state |= {
                    "referenceId": session.reference_id,
                    "decision": session.current.decision,
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

    def set_credentials(self, username: str, password: str) -> None:
        """Flinks moved to other API credentials: the next authorize must carry these."""
        with self._lock:
            self._username, self._password = username, password

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
        sid = canonical_uuid(session_id) if session_id is not None else None
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

    def issued_tokens(self) -> list[str]:
        """Every bearer token issued so far (the journal redacts them)."""
        with self._lock:
            return list(self._tokens)

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
        sid = canonical_uuid(session_id)
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

    def _session(self, session_id: str) -> Session:
        sid = canonical_uuid(session_id)
        session = self._sessions.get(sid or "")
        if session is None:
            raise KeyError(f"unknown session {session_id}")
        return session

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(min(seconds, MAX_PAUSE_S))

    def _record(self, request: Request, endpoint: str, session_id: str | None) -> int:
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

    def update_journal(self, index: int, **changes: Any) -> None:
        with self._lock:
            if index < len(self._journal):
                self._journal[index] = replace(self._journal[index], **changes)

    def handle_api(self, request: Request) -> Reply:
        """Every API call is journaled first (even a wrong method or path), then answered."""
        if request.path == "/api/v1/authorize":
            index = self._record(request, "authorize", None)
            if request.method != "POST":
                answer, fault = problem(405, detail="use POST", headers=(("Allow", "POST"),)), None
            else:
                answer, fault = self._authorize(request, index)
        elif (match := _SESSION_PATH.fullmatch(request.path)) is not None:
            endpoint = _endpoint_of(match["rest"])
            sid = canonical_uuid(match["sid"])
            index = self._record(request, endpoint, sid)
            allowed = "POST" if endpoint == "confirm" else "GET"
            if request.method != allowed:
                answer, fault = problem(405, detail=f"use {allowed}", headers=(("Allow", allowed),)), None
            else:
                answer, fault = self._session_call(request, endpoint, match["sid"], sid, index)
        else:
            index = self._record(request, "unknown", None)
            answer, fault = problem(404, title="Not Found", detail="no such endpoint"), None
        self.update_journal(index, response_status=None if answer.drop else answer.status, fault=fault)
        return replace(answer, journal_index=index)

    def _authorize(self, request: Request, index: int) -> tuple[Reply, str | None]:
        self.pause(self._latency_ms / 1000)
        with self._lock:
            fault = self._authorize_faults.popleft() if self._authorize_faults else None
        if fault is not None:
            self.update_journal(index, fault=fault.spec)
        if fault is not None and fault.kind in ("status", "timeout", "reset"):
            return self._play(fault), fault.spec
        return after_fault(self._issue_token(request), fault)

    def _issue_token(self, request: Request) -> Reply:
        if _media_type(request.headers) != "application/x-www-form-urlencoded":
            return problem(415, detail="Content-Type must be application/x-www-form-urlencoded")
        try:
            form = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return json_reply(400, {"error": "invalid_request", "title": "Bad Request", "status": 400})
        grant_types = [value for key, value in form if key == "grant_type"]
        if grant_types != ["client_credentials"]:
            return json_reply(400, {"error": "unsupported_grant_type", "title": "Bad Request", "status": 400})
        if not (self._valid_credentials(request.headers, form) and self._identity_ok(request.headers)):
            body = {"error": "invalid_client", "title": "Authentication Required", "status": 401}
            return json_reply(401, body, headers=(("WWW-Authenticate", 'Basic realm="flinks"'),))
        token = str(uuid.uuid4())
        with self._lock:
            self._tokens[token] = time.monotonic() + self._token_ttl_s
        return json_reply(
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
        self, request: Request, endpoint: Endpoint, raw_sid: str, sid: str | None, index: int
    ) -> tuple[Reply, str | None]:
        with self._lock:
            session = self._sessions.get(sid or "")
            latency_ms = self._latency_ms + (session.scenario.latency_ms if session is not None else 0)
        self.pause(latency_ms / 1000)
        needs_auth = endpoint != "status" or self._status_requires_auth
        if needs_auth and not self._bearer_ok(request.headers, sid):
            return problem(401, detail="a valid bearer token is required"), None
        if sid is None:
            return problem(400, title="Bad Request", detail=f"sessionId {raw_sid[:64]!r} is not a UUID"), None
        if session is None:
            return problem(404, detail=f"no session {sid}"), None
        with self._lock:
            plan = session.faults.get(endpoint)
            fault = plan.popleft() if plan else None
        if fault is not None:
            self.update_journal(index, fault=fault.spec)
        if fault is not None and fault.kind in ("status", "timeout", "reset"):
            return self._play(fault), fault.spec
        if fault is not None and fault.kind == "slow-apply":
            self.pause(fault.seconds or 0.0)  # Flinks is still applying it: /details shows no decision
            if self._stopping.is_set():
                return DROPPED, fault.spec
        if endpoint == "confirm":
            answer = self._confirm(request, session, index)
        elif endpoint == "details":
            answer = self._details(session)
        else:
            answer = self._status(session)
        return after_fault(answer, fault)

    def _play(self, fault: Fault) -> Reply:
        if fault.kind == "reset":
            return DROPPED
        if fault.kind == "timeout":
            self.pause(self._hang_s)
            if self._stopping.is_set():
                return DROPPED
            return problem(504, title="Gateway Timeout", detail="the sandbox hung on purpose")
        status = fault.status or 500
        headers = (("Retry-After", fault.retry_after),) if fault.retry_after is not None else ()
        return problem(status, detail=f"sandbox fault {fault.spec}", headers=headers)

    def _confirm(self, request: Request, session: Session, index: int) -> Reply:
        if _media_type(request.headers) != "application/json":
            return problem(415, detail="Content-Type must be application/json")
        try:
            document = json.loads(request.body, object_pairs_hook=_no_duplicate_keys)
        except (ValueError, RecursionError):
            return problem(400, title="Bad Request", detail="body is not valid JSON")
        if not (isinstance(document, dict) and set(document) == {"guaranteeAccepted"}):
            return problem(
                400, title="Bad Request", detail='body must be exactly {"guaranteeAccepted": <boolean>}'
            )
        accepted = document["guaranteeAccepted"]
        if not isinstance(accepted, bool):
            return problem(400, title="Bad Request", detail="guaranteeAccepted must be a JSON boolean")
        with self._lock:
            offer = session.current
            repeat = offer.decision is not None
            if not repeat:
                now = datetime.now(UTC)
                offer.decision, offer.decided_at, session.updated_at = accepted, now, now
                session.status, session.status_details = (
                    ("Completed", "EFT0301") if accepted else ("Failed", "EFT0402")
                )
        self.update_journal(index, decision=accepted, repeat=repeat, offer=offer.number)
        return json_reply(200, {"sessionId": session.session_id, "referenceId": session.reference_id})

    def _details(self, session: Session) -> Reply:
        with self._lock:
            if session.status == "Initiated":
                session.status, session.status_details = "InProgress", None
                session.updated_at = datetime.now(UTC)
            shape = legacy_details_body if session.scenario.legacy_details_shape else details_body
            body = shape(session)
        return json_reply(200, merge_patch(body, session.scenario.details_patch))

    def _status(self, session: Session) -> Reply:
        with self._lock:
            body = {
                "sessionId": session.session_id,
                "referenceId": session.reference_id,
                "amount": session.current.amount,
                "status": session.status,
                "statusDetails": session.status_details,
            }
        return json_reply(200, merge_patch(body, session.scenario.status_patch))

    def handle_admin(self, request: Request) -> Reply:
        try:
            return self._admin(request)
        except (ValueError, TypeError) as exc:
            return problem(400, title="Bad Request", detail=str(exc))
        except KeyError as exc:
            return problem(404, title="Not Found", detail=str(exc.args[0]) if exc.args else "unknown")

    def _admin(self, request: Request) -> Reply:
        path, method = request.path, request.method
        if path == "/_sandbox/health" and method == "GET":
            return json_reply(200, {"ok": True})
        if path == "/_sandbox/calls" and method == "GET":
            return json_reply(200, {"calls": [entry.to_json() for entry in self.calls()]})
        if path == "/_sandbox/sessions" and method == "POST":
            document = _json_body(request)
            session_id = document.pop("session_id", document.pop("sessionId", None))
            sid = self.add_session(session_id, Scenario.from_json(document))
            return json_reply(201, {"sessionId": sid})
        match = _ADMIN_SESSION_PATH.fullmatch(path)
        if match is None:
            return problem(404, title="Not Found", detail="no such admin endpoint")
        return self._admin_session(request, match["sid"], match["rest"])

    def _admin_session(self, request: Request, sid: str, rest: str | None) -> Reply:
        method = request.method
        if rest is None and method == "GET":
            return json_reply(200, self.session_state(sid))
        if rest == "/status" and method == "POST":
            document = _json_body(request)
            status, details = document.get("status"), document.get("statusDetails")
            if not isinstance(status, str) or not (details is None or isinstance(details, str)):
                raise ValueError('body must be {"status": "...", "statusDetails": "..." | null}')
            self.set_status(sid, status, details)
            return json_reply(200, self.session_state(sid))
        if rest == "/faults" and method == "POST":
            for endpoint, plan in _json_body(request).items():
                if isinstance(plan, str) or not isinstance(plan, list):
                    raise ValueError("body must map an endpoint to a list of faults")
                self.add_faults(sid, endpoint, plan)
            return json_reply(200, self.session_state(sid))
        if rest == "/faults" and method == "DELETE":  # Flinks has recovered
            self.clear_faults(sid)
            return json_reply(200, self.session_state(sid))
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
            return json_reply(201, self.session_state(sid))
        return problem(405, detail="method not allowed here")


def _endpoint_of(rest: str) -> Endpoint:
    if rest == "details":
        return "details"
    return "status" if rest == "status" else "confirm"


def _json_body(request: Request) -> dict[str, Any]:
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
