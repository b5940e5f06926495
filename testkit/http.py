"""One HTTP server for everything that plays a remote party on 127.0.0.1: the Flinks sandbox, the local
stack's API gateway, and the small recording servers tests stand up.

``LoopbackServer`` serves each connection in its own daemon thread, keeps track of them, and ``stop()``
closes every open connection and frees the port (bounded). ``Handler`` answers every method through
``dispatch()`` and writes an ``Answer``. ``RecordingServer`` answers each request with a function of it
and keeps every request it received.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

IDLE_CONNECTION_TIMEOUT_S = 10.0
App = TypeVar("App")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """The path without the query string."""
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, document: object, *headers: tuple[str, str]) -> Answer:
        content = (("Content-Type", "application/json"), *headers)
        return cls(status, json.dumps(document).encode(), content)


class LoopbackServer(ThreadingHTTPServer, Generic[App]):
    """``app`` is what the handlers serve (``self.server.app``)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # a burst of clients must not meet dropped SYNs (socketserver's default is 5)
    quiet_errors = False

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], app: App, *, name: str
    ) -> None:
        self.app = app
        self.name = name
        self._tracking = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._thread: threading.Thread | None = None
        super().__init__(address, handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, poll_interval: float = 0.02) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": poll_interval}, name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every open connection, free the port, wait (bounded) for the handlers."""
        if self._thread is not None:
            self.shutdown()
        with self._tracking:
            connections, handlers = list(self._connections), list(self._handlers)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.server_close()
        give_up_at = time.monotonic() + timeout
        for thread in handlers:
            thread.join(max(0.0, give_up_at - time.monotonic()))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self.quiet_errors:
            super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve, args=(request, client_address), daemon=True, name=f"{self.name}-conn"
        )
        with self._tracking:
            self._connections.add(request)
            self._handlers.add(thread)
        thread.start()

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._tracking:
                self._connections.discard(request)
                self._handlers.discard(threading.current_thread())


class Handler(BaseHTTPRequestHandler):
    """Every method goes to ``dispatch``; nothing is logged unless a subclass says so."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT_S
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def do_GET(self) -> None:
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def dispatch(self) -> None:
        raise NotImplementedError

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a server here prints its own lines, if any."""

    def request_of(self, body: bytes) -> Request:
        headers = {name.lower(): value for name, value in self.headers.items()}
        return Request(self.command, self.path.split("?", 1)[0], headers, body)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, answer: Answer) -> None:
        """Status, headers, Content-Length (and ``Connection: close`` when closing), then the body."""
        try:
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class RecordingServer(LoopbackServer["RecordingServer"]):
    """``with RecordingServer(answer) as server:`` every request is kept in ``requests`` and answered
    with ``answer(request)`` (by default an empty 200)."""

    quiet_errors = True  # a client refusing to talk (TLS to plain HTTP) is a test's point

    def __init__(self, answer: Callable[[Request], Answer] = lambda request: Answer(200)) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        super().__init__(("127.0.0.1", 0), _RecordingHandler, self, name="recording-server")

    def serve_tls(self, context: ssl.SSLContext) -> None:
        """Speak HTTPS with ``context`` (call before entering); the handshake happens per connection."""
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _RecordingHandler(Handler):
    server: LoopbackServer[RecordingServer]

    def dispatch(self) -> None:
        request = self.request_of(self.read_body())
        recording = self.server.app
        recording.requests.append(request)
        self.send(recording.answer(request))
