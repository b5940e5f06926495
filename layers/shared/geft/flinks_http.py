"""The HTTP plumbing of the Flinks client: a total deadline per exchange, enforced on every socket
read; whether the whole request was written; answers read in chunks up to a cap.

``new_http_session`` mounts urllib3 connection classes whose ``http.client`` response reads the
socket through ``_DeadlineReader``: before each ``recv`` the socket timeout becomes what is left of the
exchange's deadline (at most the read timeout), so a server dribbling a byte at a time cannot hold
an exchange past it. The same classes mark the exchange's request as written once every byte of it
was handed to the socket: before that, the server cannot have a whole request to act on.
``ExchangeContext.active()`` tells them the exchange in progress on this thread.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import threading
from collections.abc import Callable, Iterator
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Literal

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError

BodyProblem = Literal["too-large", "timeout", "cut-off"]

_READ_CHUNK_BYTES = 64 * 1024


def read_capped(response: requests.Response, cap: int) -> tuple[bytes, BodyProblem | None]:
    """The body, read in chunks and never past ``cap`` bytes (decoded); a declared length over the cap
    is refused before a byte is read."""
    declared = response.headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > cap:
        return b"", "too-large"
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = response.raw.read(min(_READ_CHUNK_BYTES, cap + 1 - total), decode_content=True)
            if not chunk:
                return b"".join(chunks), None
            total += len(chunk)
            if total > cap:
                return b"", "too-large"
            chunks.append(chunk)
    except (ReadTimeoutError, TimeoutError):
        return b"", "timeout"
    except (Urllib3Error, OSError, http.client.HTTPException):
        return b"", "cut-off"


class ExchangeContext:
    """The exchange in progress on this thread: its deadline, and whether the request was written."""

    _current = threading.local()

    def __init__(self, deadline: float, read_timeout: float, monotonic: Callable[[], float]) -> None:
        self.deadline = deadline
        self.read_timeout = read_timeout
        self.monotonic = monotonic
        self.request_written = False

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._current.context = self
        try:
            yield
        finally:
            self._current.context = None

    @classmethod
    def current(cls) -> ExchangeContext | None:
        context: ExchangeContext | None = getattr(cls._current, "context", None)
        return context


class _DeadlineReader(io.RawIOBase):
    """A socket reader that gives every ``recv`` only what is left of the exchange's deadline."""

    def __init__(self, raw: Any, sock: Any, context: ExchangeContext) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._deadline = context.deadline
        self._read_timeout = context.read_timeout
        self._monotonic = context.monotonic

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - self._monotonic()
        if left <= 0:
            raise TimeoutError("the Flinks call's deadline was reached")
        self._sock.settimeout(min(self._read_timeout, left))
        count: int = self._raw.readinto(buffer)
        return count

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._raw.close()
        super().close()


class _DeadlineHTTPResponse(http.client.HTTPResponse):
    """http.client's response reading the status line, headers and body through ``_DeadlineReader``."""

    def __init__(
        self, sock: socket.socket, debuglevel: int = 0, method: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        context = ExchangeContext.current()
        if context is not None:
            self.fp.close()
            self.fp = io.BufferedReader(_DeadlineReader(sock.makefile("rb", buffering=0), sock, context))


class _WrittenTracking:
    """Marks the exchange's request as written once every byte of it was handed to the socket: before
    that, Flinks cannot have a whole request to act on."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)  # type: ignore[misc]
        context = ExchangeContext.current()
        if context is not None:
            context.request_written = True


class _HTTPConnection(_WrittenTracking, urllib3.connection.HTTPConnection):
    response_class = _DeadlineHTTPResponse


class _HTTPSConnection(_WrittenTracking, urllib3.connection.HTTPSConnection):
    response_class = _DeadlineHTTPResponse


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOL_CLASSES: dict[str, type[urllib3.HTTPConnectionPool]] = {
    "http": _HTTPConnectionPool,
    "https": _HTTPSConnectionPool,
}


class _FlinksAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.ProxyManager:
        manager: urllib3.ProxyManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is urllib3.ProxyManager:  # a SOCKS manager keeps its own connection classes
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


def new_http_session(pool_maxsize: int, *, trust_env: bool) -> requests.Session:
    http = requests.Session()
    http.verify = True
    # Off unless opted in: no proxy, CA bundle or .netrc credentials from the environment.
    http.trust_env = trust_env
    # No server cookie may carry state from one Flinks session (or thread) to another.
    http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = _FlinksAdapter(pool_connections=4, pool_maxsize=max(1, pool_maxsize), max_retries=0)
    http.mount("https://", adapter)
    http.mount("http://", adapter)
    return http
