"""Flinks Pay G-EFT API adapter: authorize, session details/status, and the guarantee confirm call.

Only the functions that call Flinks import this module (it is the only place ``requests`` is used).
Every failure leaves as a typed ``FlinksError``; nothing here logs, so tokens, credentials and bodies
cannot leak through logs, and error messages never carry them either.

Outbound limits, each enforced here rather than trusted to the server:

* one host: every request goes to the validated base URL's scheme, host and port (redirects are not
  followed, and a URL for anywhere else is refused before it is sent);
* a total deadline per HTTP exchange (connect, then every socket read gets what is left of
  ``connect_timeout + read_timeout``, clipped to the session's deadline), so a server dribbling a
  byte at a time cannot hold a call past it;
* a size cap on every answer, enforced while streaming the body, so an oversized answer is never
  held in memory;
* no proxies, CA bundles or ``.netrc`` from the environment unless ``trust_env`` opts in.

(The deadline and the size cap are enforced by ``geft.flinks_http``; the token pool is
``geft.flinks_tokens``; the base-URL check is ``geft.flinks_settings``.)

Confirms are sent at most once per call when their outcome may have reached Flinks: a read timeout,
a connection dropped after the request was written, a 500/502/504 or a cut-off answer raises
``FlinksConfirmOutcomeUnknownError`` at once. What to do next (read ``/details``, after a while) is
the caller's rule, not the client's.

Threading: one ``FlinksClient`` (one ``requests.Session``, one connection pool, one token pool) is
shared by the caller's threads; each thread uses its own ``SessionCalls`` (not thread-safe by design).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

import requests

from geft.backoff import RetryPolicy, backoff_delay, parse_retry_after
from geft.errors import (
    FlinksAuthError,
    FlinksConfirmOutcomeUnknownError,
    FlinksConflictError,
    FlinksPermanentError,
    FlinksProtocolError,
    FlinksResponseTooLargeError,
    FlinksSessionNotFoundError,
    FlinksTransientError,
    SecretError,
)
from geft.flinks_http import BodyProblem, ExchangeContext, new_http_session, read_capped
from geft.flinks_settings import (
    DEFAULT_MAX_RESPONSE_BYTES,
    CredentialTransport,
    FlinksSettings,
    flinks_base_url,
)
from geft.flinks_tokens import TokenPool, TokenPoolCounters
from geft.secrets import JsonSecret

Operation = Literal["authorize", "details", "status", "confirm"]
StatusClass = Literal["2xx", "3xx", "4xx", "5xx", "timeout", "connection-error", "too-large"]

_T = TypeVar("_T")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Refused before Flinks' handling (a gateway or the server's front door said no): safe to send again.
_NOT_PROCESSED_STATUSES = frozenset({408, 429, 503})
# Failures after which Flinks may already have acted on the request.
_MAYBE_PROCESSED_STATUSES = frozenset({500, 502, 504})
# What a read-only client may send: nothing that changes a session at Flinks.
READ_ONLY_OPERATIONS: frozenset[Operation] = frozenset({"authorize", "details", "status"})
_AUTH_REFUSED_STATUSES = frozenset({400, 401, 403})
_DOCUMENTED_EXPIRES_IN_S = 299.0
_SESSION_TOKEN_MARGIN_S = 5.0
_REFILL_COOLDOWN_S = 5.0
_READ_CHUNK_BYTES = 64 * 1024
_REASON_MAX_CHARS = 160
_REASON_KEYS = ("title", "detail", "error_description", "error", "message", "Message")


@dataclass(frozen=True)
class FlinksCredentials:
    """What Flinks issued at onboarding. ``repr`` hides the password and the API key."""

    username: str
    password: str = field(repr=False)
    client_id: str | None = None
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_secret(cls, document: Mapping[str, Any]) -> FlinksCredentials:
        """From the API secret's JSON: ``{"username", "password"}`` plus optional ``clientId``/``apiKey``."""
        username, password = document.get("username"), document.get("password")
        if not isinstance(username, str) or not username or not isinstance(password, str) or not password:
            raise SecretError('Flinks API secret must be JSON {"username": "...", "password": "..."}')
        client_id, api_key = document.get("clientId"), document.get("apiKey")
        return cls(
            username=username,
            password=password,
            client_id=client_id if isinstance(client_id, str) and client_id else None,
            api_key=api_key if isinstance(api_key, str) and api_key else None,
        )


@dataclass(frozen=True)
class ConfirmResult:
    """A confirm Flinks answered 2xx. ``body_readable`` is False when the answer had no readable JSON
    object body (cut off, too large, not JSON): the decision is recorded all the same."""

    session_id: str | None
    reference_id: str | None
    body_readable: bool


@dataclass(frozen=True)
class CallObservation:
    """One HTTP exchange with Flinks, as the ``on_call`` observer sees it.

    ``attempt`` counts the exchanges of this operation within one call (1 for the first, 2 for a
    retry or the repeat after a 401). ``latency_ms`` runs from sending to the last byte read (or the
    failure). ``status_code`` is None when no status line arrived.
    """

    operation: Operation
    status_code: int | None
    status_class: StatusClass
    latency_ms: float
    attempt: int


CallObserver = Callable[[CallObservation], None]


@dataclass(frozen=True)
class _Token:
    value: str
    credentials: FlinksCredentials
    # Never used at or after these: mint time (taken when the authorize request was sent) + expires_in
    # - margin, on both clocks (a frozen Lambda container may not advance the monotonic one).
    usable_until_monotonic: float
    usable_until_wall: float

    def usable(self, now_monotonic: float, now_wall: float) -> bool:
        return now_monotonic < self.usable_until_monotonic and now_wall < self.usable_until_wall


class FlinksClient:
    """Holds the connection pool, the credential source, the limits, the retry settings and the token
    pool; hands out ``SessionCalls``.

    ``read_only=True`` makes a client that can never change a session: any operation outside
    ``READ_ONLY_OPERATIONS`` (a confirm) raises ``FlinksPermanentError`` before anything is sent.
    """

    def __init__(
        self,
        base_url: str,
        credentials: Callable[[], FlinksCredentials],
        *,
        credential_transport: CredentialTransport = "basic",
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        trust_env: bool = False,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe as a default
        pool_maxsize: int = 16,
        token_pool_size: int = 0,
        token_pool_margin: float = 30.0,
        on_call: CallObserver | None = None,
        read_only: bool = False,
        refill_executor: Executor | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        base = flinks_base_url(base_url)
        if credential_transport not in ("basic", "form"):
            raise ValueError("credential_transport must be 'basic' or 'form'")
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int):
            raise ValueError("max_response_bytes must be an integer")
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        if not 0 <= token_pool_size <= 64:
            raise ValueError("token_pool_size must be within 0..64")
        if not (math.isfinite(token_pool_margin) and token_pool_margin >= 0):
            raise ValueError("token_pool_margin must be a finite number of seconds >= 0")
        origin = urlsplit(base)
        self._base_url = base
        self._origin = (origin.scheme, origin.hostname, origin.port)
        self._credentials = credentials
        self._http = new_http_session(pool_maxsize, trust_env=trust_env)
        self._transport: CredentialTransport = credential_transport
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_response_bytes = max_response_bytes
        self._retry = retry
        self._on_call = on_call
        self._read_only = read_only
        self._sleep = sleep
        self._monotonic = monotonic
        self._clock = clock
        self._rand = rand
        self._token_pool_margin = token_pool_margin
        self._token_pool: TokenPool[_Token] | None = (
            TokenPool(
                token_pool_size,
                self._mint_for_pool,
                monotonic=monotonic,
                clock=clock,
                executor=refill_executor,
            )
            if token_pool_size
            else None
        )

    def for_session(self, session_id: str, *, deadline: float) -> SessionCalls:
        """Calls for one Flinks session, all finished by ``deadline`` (a ``monotonic()`` timestamp)."""
        if not isinstance(session_id, str) or not _UUID.fullmatch(session_id):
            raise ValueError("session_id must be a UUID (8-4-4-4-12 hex)")
        if not math.isfinite(deadline):
            raise ValueError("deadline must be a finite monotonic timestamp")
        return SessionCalls(self, session_id, deadline)

    def token_pool_counters(self) -> TokenPoolCounters:
        """The token pool's counters (all zero when the pool is off)."""
        return self._token_pool.counters() if self._token_pool is not None else TokenPoolCounters()

    def close(self) -> None:
        if self._token_pool is not None:
            self._token_pool.close()
        self._http.close()

    # -- one HTTP exchange (called from SessionCalls and the token pool's refill) ---------------------

    def _exchange(
        self,
        operation: Operation,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        data: bytes | dict[str, str] | None,
        deadline: float,
        attempt: int,
    ) -> _HttpAnswer:
        """Sends one request and reads its answer within the limits. Failures before a status line
        arrives raise ``_ExchangeFailed``; a body that could not be read in full is reported on the
        answer (``body_problem``), because the status alone may already be the outcome."""
        self._permit(operation)
        target = urlsplit(url)
        if (target.scheme, target.hostname, target.port) != self._origin:
            raise FlinksPermanentError(f"Flinks {operation}: refusing to send to a host other than Flinks'")
        started = self._monotonic()
        left = deadline - started
        if left <= 0:
            raise FlinksTransientError(f"Flinks {operation}: deadline reached before the request was sent")
        exchange_deadline = started + min(left, self._connect_timeout + self._read_timeout)
        timeout = (min(self._connect_timeout, left), min(self._read_timeout, left))
        context = ExchangeContext(exchange_deadline, self._read_timeout, self._monotonic)
        status_class: StatusClass = "connection-error"
        status_code: int | None = None
        try:
            try:
                with context.active():
                    response = self._http.request(
                        method,
                        url,
                        headers=dict(headers),
                        data=data,
                        timeout=timeout,
                        allow_redirects=False,
                        stream=True,
                    )
            except requests.Timeout as exc:
                status_class = "timeout"
                raise _ExchangeFailed(operation, "timed out", sent=context.request_written) from exc
            except requests.ConnectionError as exc:
                # Connection refused, TLS handshake failure, reset, or dropped before any answer.
                raise _ExchangeFailed(operation, "connection failed", sent=context.request_written) from exc
            except requests.RequestException as exc:
                raise FlinksPermanentError(
                    f"Flinks {operation}: request could not be made ({type(exc).__name__})"
                ) from exc
            status_code = response.status_code
            status_class = _status_class(status_code)
            with contextlib.closing(response):
                body, problem = read_capped(response, self._max_response_bytes)
            if problem is not None:
                status_class = "connection-error" if problem == "cut-off" else problem
            return _HttpAnswer(status_code, response.headers, body, problem)
        finally:
            self._observe(operation, status_code, status_class, started, attempt)

    def _permit(self, operation: Operation) -> None:
        if self._read_only and operation not in READ_ONLY_OPERATIONS:
            raise FlinksPermanentError(f"Flinks {operation}: refused by a read-only client; nothing was sent")

    def _observe(
        self,
        operation: Operation,
        status_code: int | None,
        status_class: StatusClass,
        started: float,
        attempt: int,
    ) -> None:
        observer = self._on_call
        if observer is None:
            return
        latency_ms = round((self._monotonic() - started) * 1000, 3)
        with contextlib.suppress(Exception):  # an observer's bug must never break a call to Flinks
            observer(CallObservation(operation, status_code, status_class, latency_ms, attempt))

    def _mint_for_pool(self) -> _Token:
        """One background authorize for the token pool (on its thread), within one exchange's budget."""
        return self._mint(
            self._credentials(),
            deadline=self._monotonic() + self._connect_timeout + self._read_timeout,
            attempt=1,
            margin=self._token_pool_margin,
        )

    def _mint(
        self, credentials: FlinksCredentials, *, deadline: float, attempt: int, margin: float
    ) -> _Token:
        """One ``POST /api/v1/authorize``. Raises FlinksAuthError when the credentials are refused."""
        headers = _identity_headers(credentials)
        form = {"grant_type": "client_credentials"}
        if self._transport == "basic":
            pair = f"{credentials.username}:{credentials.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form["Username"] = credentials.username
            form["Password"] = credentials.password
        sent_monotonic, sent_wall = self._monotonic(), self._clock()
        answer = self._exchange(
            "authorize",
            "POST",
            f"{self._base_url}/api/v1/authorize",
            headers=headers,
            data=form,
            deadline=deadline,
            attempt=attempt,
        )
        status = answer.status
        secrets = _secrets_of(credentials)
        if status in _AUTH_REFUSED_STATUSES:
            raise FlinksAuthError(
                f"Flinks authorize refused the credentials ({status}{answer.reason(secrets)})",
                status_code=status,
            )
        _raise_for_status("authorize", answer, secrets)
        document = answer.json_object("authorize")
        token = document.get("access_token")
        if not isinstance(token, str) or not token.strip():
            raise _RetryableFailure(
                FlinksProtocolError(
                    f"Flinks authorize answered {status} without an access_token", status_code=status
                )
            )
        lifetime = max(0.0, _seconds(document.get("expires_in")) - margin)
        return _Token(token.strip(), credentials, sent_monotonic + lifetime, sent_wall + lifetime)


@dataclass
class _CallState:
    """Per logical call: whether we already re-authorized, and how many exchanges of each operation."""

    reauthorized: bool = False
    attempts: dict[str, int] = field(default_factory=dict)

    def next_attempt(self, operation: Operation) -> int:
        self.attempts[operation] = self.attempts.get(operation, 0) + 1
        return self.attempts[operation]


class _RetryableFailure(Exception):
    """Internal: one attempt failed in a way worth another attempt within the deadline.

    ``maybe_processed``: a confirm that may have reached Flinks' handling; never sent again here.
    """

    def __init__(
        self, error: FlinksTransientError, *, retry_after: float | None = None, maybe_processed: bool = False
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.maybe_processed = maybe_processed


class _ExchangeFailed(_RetryableFailure):
    """Internal: no status line arrived. ``sent``: the whole request had been written to the socket."""

    def __init__(self, operation: Operation, what: str, *, sent: bool) -> None:
        super().__init__(
            FlinksTransientError(f"Flinks {operation} {what}"),
            maybe_processed=sent and operation == "confirm",
        )


class SessionCalls:
    """The calls for one session, sharing one bearer token (from the pool, or obtained on the first call).

    Not thread-safe: use one instance per thread (and per session) at a time.
    """

    def __init__(self, client: FlinksClient, session_id: str, deadline: float) -> None:
        self._client = client
        self._session_id = session_id
        self._deadline = deadline
        self._token: _Token | None = None
        self._token_from_pool = False
        self._pool_tried = False

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def deadline(self) -> float:
        return self._deadline

    def time_left(self) -> float:
        return self._deadline - self._client._monotonic()

    def details(self) -> dict[str, Any]:
        """``GET /api/v2/sessions/{id}/details``; JSON numbers with a fraction come back as ``Decimal``."""
        return self._get_object("details")

    def status(self) -> dict[str, Any]:
        """``GET /api/v2/sessions/{id}/status`` (sent with the bearer token)."""
        return self._get_object("status")

    def confirm(self, accepted: bool) -> ConfirmResult:
        """``POST /api/v2/sessions/{id}/guarantees/confirm`` with ``{"guaranteeAccepted": <bool>}``.

        Sent again within the call only after failures that provably did not reach Flinks' handling
        (connection refused, connect timeout, 408, 429, 503, a 401 answered by re-authorizing once).
        Raises ``FlinksConfirmOutcomeUnknownError`` when the confirm may have been applied, and
        ``FlinksConflictError`` on a 409.
        """
        if not isinstance(accepted, bool):
            raise TypeError("accepted must be a bool")
        body = json.dumps({"guaranteeAccepted": accepted}).encode("ascii")

        def attempt(state: _CallState) -> ConfirmResult:
            answer = self._session_exchange(state, "confirm", "POST", "guarantees/confirm", json_body=body)
            if not 200 <= answer.status < 300:
                self._raise_for_status("confirm", answer)
            document = answer.optional_json_object()
            if document is None:
                return ConfirmResult(session_id=None, reference_id=None, body_readable=False)
            return ConfirmResult(
                session_id=_text_or_none(document.get("sessionId")),
                reference_id=_text_or_none(document.get("referenceId")),
                body_readable=True,
            )

        return self._retrying("confirm", attempt)

    # -- internals -------------------------------------------------------------------------------------

    def _get_object(self, operation: Literal["details", "status"]) -> dict[str, Any]:
        def attempt(state: _CallState) -> dict[str, Any]:
            answer = self._session_exchange(state, operation, "GET", operation)
            self._raise_for_status(operation, answer)
            return answer.json_object(operation)

        return self._retrying(operation, attempt)

    def _retrying(self, operation: Operation, attempt: Callable[[_CallState], _T]) -> _T:
        client = self._client
        state = _CallState()
        number = 0
        while True:
            number += 1
            try:
                return attempt(state)
            except _RetryableFailure as failure:
                if failure.maybe_processed:
                    _give_up(operation, failure, "with its outcome unknown", FlinksConfirmOutcomeUnknownError)
                if number >= client._retry.max_attempts:
                    _give_up(operation, failure, f"after {number} attempts")
                if failure.retry_after is not None:
                    delay = failure.retry_after
                else:
                    delay = backoff_delay(number, client._retry, client._rand)
                if delay >= self.time_left():
                    _give_up(operation, failure, "before the deadline")
                if delay > 0:
                    client._sleep(delay)

    def _session_exchange(
        self,
        state: _CallState,
        operation: Operation,
        method: str,
        suffix: str,
        *,
        json_body: bytes | None = None,
    ) -> _HttpAnswer:
        """One exchange with the bearer token; on 401 re-authorizes once per call and repeats it."""
        self._client._permit(operation)  # before a token is minted for it, too
        url = f"{self._client._base_url}/api/v2/sessions/{self._session_id}/{suffix}"
        while True:
            token = self._valid_token(state)
            headers = _identity_headers(token.credentials)
            headers["Authorization"] = f"Bearer {token.value}"
            if json_body is not None:
                headers["Content-Type"] = "application/json"
            answer = self._client._exchange(
                operation,
                method,
                url,
                headers=headers,
                data=json_body,
                deadline=self._deadline,
                attempt=state.next_attempt(operation),
            )
            if answer.status != 401:
                return answer
            if self._token_from_pool and self._client._token_pool is not None:
                self._client._token_pool.count_refused()
            if state.reauthorized:
                raise FlinksAuthError(
                    f"Flinks {operation} refused a freshly issued token (401)", status_code=401
                )
            state.reauthorized = True
            self._token = None

    def _valid_token(self, state: _CallState) -> _Token:
        client = self._client
        token = self._token
        if token is not None and token.usable(client._monotonic(), client._clock()):
            return token
        pool = client._token_pool
        if pool is not None and not self._pool_tried:
            self._pool_tried = True  # the first token only: after an expiry or a 401, authorize inline
            pooled = pool.take()
            if pooled is not None:
                self._token, self._token_from_pool = pooled, True
                return pooled
        self._token, self._token_from_pool = None, False
        credentials = client._credentials()
        self._token = client._mint(
            credentials,
            deadline=self._deadline,
            attempt=state.next_attempt("authorize"),
            margin=_SESSION_TOKEN_MARGIN_S,
        )
        return self._token

    def _raise_for_status(self, operation: Operation, answer: _HttpAnswer) -> None:
        secrets = _secrets_of(self._token.credentials) if self._token is not None else []
        if self._token is not None:
            secrets.append(self._token.value)
        _raise_for_status(operation, answer, secrets)


# -- answers -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    body_problem: BodyProblem | None

    def optional_json_object(self) -> dict[str, Any] | None:
        if self.body_problem is not None:
            return None
        try:
            value = json.loads(self.body, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return None
        return value if isinstance(value, dict) else None

    def json_object(self, operation: Operation) -> dict[str, Any]:
        """The 2xx body as a JSON object, or the failure that makes it unreadable."""
        if self.body_problem == "too-large":
            raise FlinksResponseTooLargeError(
                f"Flinks {operation} answered {self.status} with a body over the size cap; not read",
                status_code=self.status,
            )
        if self.body_problem is not None:
            what = "timed out" if self.body_problem == "timeout" else "answer cut off"
            raise _RetryableFailure(
                FlinksTransientError(
                    f"Flinks {operation} {what} while reading the body", status_code=self.status
                )
            )
        document = self.optional_json_object()
        if document is None:
            raise _RetryableFailure(
                FlinksProtocolError(
                    f"Flinks {operation} answered {self.status} without a JSON object body",
                    status_code=self.status,
                )
            )
        return document

    def reason(self, secrets: list[str]) -> str:
        """``": <title/detail>"`` from a JSON error body, scrubbed of anything secret, or ``""``."""
        document = self.optional_json_object()
        if document is None:
            return ""
        parts: list[str] = []
        for key in _REASON_KEYS:
            value = document.get(key)
            if isinstance(value, str) and value.strip() and value.strip() not in parts:
                parts.append(value.strip())
            if len(parts) == 2:
                break
        text = " - ".join(parts)
        for secret in secrets:
            if len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
        text = "".join(ch if ch.isprintable() else " " for ch in text)[:_REASON_MAX_CHARS]
        return f": {text}" if text else ""


def _raise_for_status(operation: Operation, answer: _HttpAnswer, secrets: list[str]) -> None:
    status = answer.status
    if 200 <= status < 300:
        return
    if status in _NOT_PROCESSED_STATUSES:
        raise _RetryableFailure(
            FlinksTransientError(f"Flinks {operation} answered {status}", status_code=status),
            retry_after=parse_retry_after(answer.headers.get("Retry-After")),
        )
    if status in _MAYBE_PROCESSED_STATUSES or (operation == "confirm" and status >= 500):
        raise _RetryableFailure(
            FlinksTransientError(f"Flinks {operation} answered {status}", status_code=status),
            maybe_processed=operation == "confirm",
        )
    if status >= 500:
        raise FlinksTransientError(f"Flinks {operation} answered {status}", status_code=status)
    reason = answer.reason(secrets)
    if status == 404 and operation != "authorize":
        raise FlinksSessionNotFoundError(
            f"Flinks {operation}: session not found (404{reason})", status_code=404
        )
    if status == 409:
        raise FlinksConflictError(f"Flinks {operation} answered 409 conflict{reason}", status_code=409)
    if 400 <= status < 500:
        raise FlinksPermanentError(
            f"Flinks {operation} rejected the request ({status}{reason})", status_code=status
        )
    raise FlinksPermanentError(f"Flinks {operation} answered an unexpected {status}", status_code=status)


def _status_class(status: int) -> StatusClass:
    if 200 <= status < 300:
        return "2xx"
    if 300 <= status < 400:
        return "3xx"
    return "4xx" if 400 <= status < 500 else "5xx"


def _identity_headers(credentials: FlinksCredentials) -> dict[str, str]:
    # identity: bodies are small JSON, and nothing has to be decompressed (no decompression bombs).
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    if credentials.client_id:
        headers["x-client-id"] = credentials.client_id
    if credentials.api_key:
        headers["x-api-key"] = credentials.api_key
    return headers


def _secrets_of(credentials: FlinksCredentials) -> list[str]:
    return [credentials.password, credentials.username, credentials.api_key or ""]


def _give_up(
    operation: str,
    failure: _RetryableFailure,
    why: str,
    error_type: type[FlinksTransientError] | None = None,
) -> NoReturn:
    last = failure.error
    if last.__cause__ is None:
        last.__cause__ = failure.__cause__  # keep the requests exception in the chain for debugging
    raise (error_type or type(last))(
        f"Flinks {operation} gave up {why}: {last}", status_code=last.status_code
    ) from last


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-finite JSON number {name}")


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return _DOCUMENTED_EXPIRES_IN_S
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else _DOCUMENTED_EXPIRES_IN_S


def client_for_secret(
    settings: FlinksSettings,
    secret: JsonSecret,
    *,
    pool_maxsize: int,
    token_pool_size: int = 0,
    token_pool_margin: float = 30.0,
    on_call: CallObserver | None = None,
) -> FlinksClient:
    """A client whose credentials come from the Flinks API secret (re-read after its cache age)."""
    return FlinksClient(
        settings.base_url,
        lambda: FlinksCredentials.from_secret(secret.get()),
        credential_transport=settings.credential_transport,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
        trust_env=settings.trust_env,
        pool_maxsize=pool_maxsize,
        token_pool_size=token_pool_size,
        token_pool_margin=token_pool_margin,
        on_call=on_call,
    )
