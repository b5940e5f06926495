"""Flinks Pay G-EFT API adapter: authorize, session details/status, and the guarantee confirm call.

Only the decision processor imports this module (it is the only place ``requests`` is used). Every
failure leaves as a typed ``FlinksError``; nothing here logs, so tokens, credentials and bodies cannot
leak through logs, and error messages never carry them either.

Threading: one ``FlinksClient`` (one ``requests.Session``, one connection pool) is shared by the
processor's worker threads; each thread uses its own ``SessionCalls`` (not thread-safe by design).
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from geft.backoff import RetryPolicy, backoff_delay, parse_retry_after
from geft.errors import (
    FlinksAuthError,
    FlinksPermanentError,
    FlinksProtocolError,
    FlinksSessionNotFoundError,
    FlinksTransientError,
    SecretError,
)
from geft.secrets import JsonSecret

CredentialTransport = Literal["basic", "form"]

_T = TypeVar("_T")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Answers after which Flinks may already have acted on the request (the failure came after it arrived).
_MAYBE_PROCESSED_STATUSES = frozenset({500, 502, 504})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_AUTH_REFUSED_STATUSES = frozenset({400, 401, 403})
_DOCUMENTED_EXPIRES_IN_S = 299.0
_TOKEN_EXPIRY_MARGIN_S = 5.0
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
    """Outcome of a confirm call that Flinks accepted.

    ``body_readable`` is False when the 2xx answer had no JSON object body: the decision is recorded
    all the same. ``already_recorded`` is True when an earlier attempt of this call had an unknown
    outcome (timeout, dropped connection, 500/502/504) and ``/details`` showed our decision already
    recorded, so the confirm was not sent again; ids then come from ``/details``.
    """

    session_id: str | None
    reference_id: str | None
    body_readable: bool
    already_recorded: bool = False


class ClientStats:
    """Thread-safe counters for benchmarks: HTTP requests sent, authorize requests, retries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._authorize_calls = 0
        self._requests_sent = 0
        self._retries = 0

    @property
    def authorize_calls(self) -> int:
        with self._lock:
            return self._authorize_calls

    @property
    def requests_sent(self) -> int:
        """Every HTTP request sent, authorize requests included."""
        with self._lock:
            return self._requests_sent

    @property
    def retries(self) -> int:
        """Backoff waits started (attempts after the first), across all calls."""
        with self._lock:
            return self._retries

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "authorize_calls": self._authorize_calls,
                "requests_sent": self._requests_sent,
                "retries": self._retries,
            }

    def count_request(self, *, authorize: bool) -> None:
        with self._lock:
            self._requests_sent += 1
            if authorize:
                self._authorize_calls += 1

    def count_retry(self) -> None:
        with self._lock:
            self._retries += 1


class FlinksClient:
    """Holds the connection pool, the credential source and the retry settings; hands out ``SessionCalls``."""

    def __init__(
        self,
        base_url: str,
        credentials: Callable[[], FlinksCredentials],
        *,
        http: requests.Session | None = None,
        credential_transport: CredentialTransport = "basic",
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe as a default
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        pool_maxsize: int = 16,
    ) -> None:
        base = base_url.strip().rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("base_url must be an absolute http(s) URL without query or fragment")
        if credential_transport not in ("basic", "form"):
            raise ValueError("credential_transport must be 'basic' or 'form'")
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        if http is not None and http.verify is False:
            raise ValueError("TLS certificate verification must stay enabled on the injected session")
        self._base_url = base
        self._credentials = credentials
        self._http = http if http is not None else _new_http_session(pool_maxsize)
        self._transport: CredentialTransport = credential_transport
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._retry = retry
        self._sleep = sleep
        self._monotonic = monotonic
        self._rand = rand
        self.stats = ClientStats()

    @property
    def http(self) -> requests.Session:
        """The pooled session (exposed so tests can check that TLS verification is on)."""
        return self._http

    def for_session(self, session_id: str, *, deadline: float) -> SessionCalls:
        """Calls for one Flinks session, all finished by ``deadline`` (a ``monotonic()`` timestamp)."""
        if not isinstance(session_id, str) or not _UUID.fullmatch(session_id):
            raise ValueError("session_id must be a UUID (8-4-4-4-12 hex)")
        if not math.isfinite(deadline):
            raise ValueError("deadline must be a finite monotonic timestamp")
        return SessionCalls(self, session_id, deadline)

    def close(self) -> None:
        self._http.close()


@dataclass
class _CallState:
    """Per logical call: whether we already re-authorized, whether an attempt may have reached Flinks."""

    reauthorized: bool = False
    maybe_processed: bool = False


class _RetryableFailure(Exception):
    """Internal: one attempt failed in a way worth another attempt within the deadline."""

    def __init__(
        self, error: FlinksTransientError, *, retry_after: float | None = None, maybe_processed: bool
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.maybe_processed = maybe_processed


class SessionCalls:
    """The calls for one session, sharing one bearer token obtained lazily on the first call.

    Not thread-safe: use one instance per thread (and per session) at a time.
    """

    def __init__(self, client: FlinksClient, session_id: str, deadline: float) -> None:
        self._client = client
        self._session_id = session_id
        self._deadline = deadline
        self._credentials: FlinksCredentials | None = None
        self._token: str | None = None
        self._token_expires_at = 0.0

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

        Before re-sending after an attempt whose outcome is unknown, reads ``/details``: if our decision
        is already recorded it returns without a second confirm; the opposite decision raises
        ``FlinksPermanentError``.
        """
        if not isinstance(accepted, bool):
            raise TypeError("accepted must be a bool")
        body = json.dumps({"guaranteeAccepted": accepted}).encode("ascii")

        def attempt(state: _CallState) -> ConfirmResult:
            if state.maybe_processed:
                recorded = self._recorded_decision(state)
                if recorded is not None:
                    decision, details = recorded
                    if decision is not accepted:
                        raise FlinksPermanentError(
                            "Flinks already records the opposite guarantee decision for this session"
                        )
                    return ConfirmResult(
                        session_id=_text_or_none(details.get("sessionId")),
                        reference_id=_text_or_none(details.get("referenceId")),
                        body_readable=False,
                        already_recorded=True,
                    )
            try:
                response = self._session_request(state, "POST", "guarantees/confirm", json_body=body)
                self._check_status("confirm", response)
            except _RetryableFailure as failure:
                state.maybe_processed = state.maybe_processed or failure.maybe_processed
                raise
            answer = _json_object(response)
            if answer is None:
                return ConfirmResult(session_id=None, reference_id=None, body_readable=False)
            return ConfirmResult(
                session_id=_text_or_none(answer.get("sessionId")),
                reference_id=_text_or_none(answer.get("referenceId")),
                body_readable=True,
            )

        return self._retrying("confirm", attempt)

    # -- internals -------------------------------------------------------------------------------------

    def _get_object(self, operation: Literal["details", "status"]) -> dict[str, Any]:
        def attempt(state: _CallState) -> dict[str, Any]:
            return self._read_object(state, operation)

        return self._retrying(operation, attempt)

    def _read_object(self, state: _CallState, operation: Literal["details", "status"]) -> dict[str, Any]:
        response = self._session_request(state, "GET", operation)
        self._check_status(operation, response)
        answer = _json_object(response)
        if answer is None:
            raise _RetryableFailure(
                FlinksProtocolError(
                    f"Flinks {operation} answered {response.status_code} without a JSON object body",
                    status_code=response.status_code,
                ),
                maybe_processed=False,
            )
        return answer

    def _recorded_decision(self, state: _CallState) -> tuple[bool, dict[str, Any]] | None:
        """The decision ``/details`` shows as recorded (with the details), or None while undecided."""
        details = self._read_object(state, "details")
        guarantee = details.get("guaranteeDetails")
        recorded = guarantee.get("guaranteeAccepted") if isinstance(guarantee, dict) else None
        return (recorded, details) if isinstance(recorded, bool) else None

    def _retrying(self, operation: str, attempt: Callable[[_CallState], _T]) -> _T:
        client = self._client
        state = _CallState()
        number = 0
        while True:
            number += 1
            try:
                return attempt(state)
            except _RetryableFailure as failure:
                if number >= client._retry.max_attempts:
                    _give_up(operation, failure, f"after {number} attempts")
                if failure.retry_after is not None:
                    delay = failure.retry_after
                else:
                    delay = backoff_delay(number, client._retry, client._rand)
                if delay >= self.time_left():
                    _give_up(operation, failure, "before the deadline")
                client.stats.count_retry()
                if delay > 0:
                    client._sleep(delay)

    def _session_request(
        self, state: _CallState, method: str, suffix: str, *, json_body: bytes | None = None
    ) -> requests.Response:
        """One exchange with the bearer token; on 401 re-authorizes once per call and repeats it."""
        url = f"{self._client._base_url}/api/v2/sessions/{self._session_id}/{suffix}"
        operation = suffix.rsplit("/", 1)[-1]
        while True:
            token = self._valid_token()
            headers = self._identity_headers()
            headers["Authorization"] = f"Bearer {token}"
            if json_body is not None:
                headers["Content-Type"] = "application/json"
            response = self._send(method, url, operation, headers=headers, data=json_body, authorize=False)
            if response.status_code != 401:
                return response
            if state.reauthorized:
                raise FlinksAuthError(
                    f"Flinks {operation} refused a freshly issued token (401)", status_code=401
                )
            state.reauthorized = True
            self._token = None

    def _valid_token(self) -> str:
        if self._token is None or self._client._monotonic() >= self._token_expires_at:
            return self._authorize()
        return self._token

    def _authorize(self) -> str:
        client = self._client
        credentials = client._credentials()
        self._credentials = credentials
        self._token = None
        started = client._monotonic()
        headers = self._identity_headers()
        form = {"grant_type": "client_credentials"}
        if client._transport == "basic":
            pair = f"{credentials.username}:{credentials.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form["Username"] = credentials.username
            form["Password"] = credentials.password
        response = self._send(
            "POST",
            f"{client._base_url}/api/v1/authorize",
            "authorize",
            headers=headers,
            data=form,
            authorize=True,
        )
        status = response.status_code
        if status in _AUTH_REFUSED_STATUSES:
            raise FlinksAuthError(
                f"Flinks authorize refused the credentials ({status}{self._reason(response)})",
                status_code=status,
            )
        self._check_status("authorize", response)
        answer = _json_object(response)
        token = answer.get("access_token") if answer is not None else None
        if not isinstance(token, str) or not token.strip():
            raise _RetryableFailure(
                FlinksProtocolError(
                    f"Flinks authorize answered {status} without an access_token", status_code=status
                ),
                maybe_processed=False,
            )
        expires_in = _seconds(answer.get("expires_in") if answer is not None else None)
        self._token = token.strip()
        self._token_expires_at = started + max(0.0, expires_in - _TOKEN_EXPIRY_MARGIN_S)
        return self._token

    def _identity_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        credentials = self._credentials
        if credentials is not None:
            if credentials.client_id:
                headers["x-client-id"] = credentials.client_id
            if credentials.api_key:
                headers["x-api-key"] = credentials.api_key
        return headers

    def _send(
        self,
        method: str,
        url: str,
        operation: str,
        *,
        headers: Mapping[str, str],
        data: bytes | dict[str, str] | None,
        authorize: bool,
    ) -> requests.Response:
        client = self._client
        left = self.time_left()
        if left <= 0:
            raise FlinksTransientError(f"Flinks {operation}: deadline reached before the request was sent")
        timeout = (min(client._connect_timeout, left), min(client._read_timeout, left))
        client.stats.count_request(authorize=authorize)
        try:
            return client._http.request(
                method, url, headers=dict(headers), data=data, timeout=timeout, allow_redirects=False
            )
        except requests.Timeout as exc:
            raise _RetryableFailure(
                FlinksTransientError(f"Flinks {operation} timed out"),
                maybe_processed=not isinstance(exc, requests.ConnectTimeout),
            ) from exc
        except requests.ConnectionError as exc:
            raise _RetryableFailure(
                FlinksTransientError(f"Flinks {operation}: connection failed"),
                maybe_processed=not _never_connected(exc),
            ) from exc
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            raise _RetryableFailure(
                FlinksTransientError(f"Flinks {operation}: answer cut off"), maybe_processed=True
            ) from exc
        except requests.RequestException as exc:
            raise FlinksPermanentError(
                f"Flinks {operation}: request could not be made ({type(exc).__name__})"
            ) from exc

    def _check_status(self, operation: str, response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in _RETRYABLE_STATUSES:
            retry_after = None
            if status in _RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise _RetryableFailure(
                FlinksTransientError(f"Flinks {operation} answered {status}", status_code=status),
                retry_after=retry_after,
                maybe_processed=status in _MAYBE_PROCESSED_STATUSES,
            )
        if status >= 500:
            raise FlinksTransientError(f"Flinks {operation} answered {status}", status_code=status)
        reason = self._reason(response)
        if status == 404 and operation != "authorize":
            raise FlinksSessionNotFoundError(
                f"Flinks {operation}: session not found (404{reason})", status_code=404
            )
        if 400 <= status < 500:
            raise FlinksPermanentError(
                f"Flinks {operation} rejected the request ({status}{reason})", status_code=status
            )
        raise FlinksPermanentError(f"Flinks {operation} answered an unexpected {status}", status_code=status)

    def _reason(self, response: requests.Response) -> str:
        """``": <title/detail>"`` from a JSON error body, scrubbed of anything secret, or ``""``."""
        answer = _json_object(response)
        if answer is None:
            return ""
        parts: list[str] = []
        for key in _REASON_KEYS:
            value = answer.get(key)
            if isinstance(value, str) and value.strip() and value.strip() not in parts:
                parts.append(value.strip())
            if len(parts) == 2:
                break
        text = " - ".join(parts)
        for secret in self._secrets():
            text = text.replace(secret, "[redacted]")
        text = "".join(ch if ch.isprintable() else " " for ch in text)[:_REASON_MAX_CHARS]
        return f": {text}" if text else ""

    def _secrets(self) -> list[str]:
        credentials = self._credentials
        values = [self._token] if self._token else []
        if credentials is not None:
            values += [credentials.password, credentials.username, credentials.api_key or ""]
        return [value for value in values if len(value) >= 4]


def _new_http_session(pool_maxsize: int) -> requests.Session:
    http = requests.Session()
    http.verify = True
    # No server cookie may carry state from one Flinks session (or thread) to another.
    http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, pool_maxsize), max_retries=0)
    http.mount("https://", adapter)
    http.mount("http://", adapter)
    return http


def _give_up(operation: str, failure: _RetryableFailure, why: str) -> NoReturn:
    last = failure.error
    if last.__cause__ is None:
        last.__cause__ = failure.__cause__  # keep the requests exception in the chain for debugging
    raise type(last)(f"Flinks {operation} gave up {why}: {last}", status_code=last.status_code) from last


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the connection was never established, so Flinks cannot have seen the request."""
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-finite JSON number {name}")


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        value = json.loads(response.content, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return _DOCUMENTED_EXPIRES_IN_S
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else _DOCUMENTED_EXPIRES_IN_S


def client_for_secret(
    base_url: str,
    secret: JsonSecret,
    *,
    credential_transport: CredentialTransport,
    connect_timeout: float,
    read_timeout: float,
    pool_maxsize: int,
) -> FlinksClient:
    """A client whose credentials come from the Flinks API secret (re-read after its cache age)."""
    return FlinksClient(
        base_url,
        lambda: FlinksCredentials.from_secret(secret.get()),
        credential_transport=credential_transport,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        pool_maxsize=pool_maxsize,
    )
