"""The sandbox's HTTP side: reads a request, hands it to the sandbox, and writes its ``Reply`` with the
transport's misbehaviour (a dropped connection, an oversized or dribbled body)."""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import sys
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from testkit.flinks.responses import Reply, oversize_body, problem
from testkit.flinks.scenarios import MAX_PAUSE_S
from testkit.http import Handler, LoopbackServer

if TYPE_CHECKING:
    from testkit.flinks.sandbox import FlinksSandbox

MAX_BODY_BYTES = 1 << 20


class SandboxHandler(Handler):
    server: LoopbackServer[FlinksSandbox]

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.verbose:
            sys.stderr.write(f"flinks-sandbox {self.address_string()} {format % args}\n")

    def dispatch(self) -> None:
        sandbox = self.server.app
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self.send(problem(411, title="Length Required", detail="send a Content-Length"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self.send(problem(413 if length > 0 else 400, detail="bad or too large Content-Length"))
            return
        request = self.request_of(self.rfile.read(length) if length else b"")
        if request.path.startswith("/_sandbox/"):
            reply = sandbox.handle_admin(request)
        else:
            reply = sandbox.handle_api(request)
        if reply.drop:
            self._drop()
        elif reply.body_size is not None or reply.dribble_s is not None:
            written = self._stream(reply)
            if reply.journal_index is not None:
                sandbox.update_journal(reply.journal_index, response_bytes=written)
        else:
            self.send(reply)

    def _stream(self, reply: Reply) -> int:
        """Writes an ``oversize`` or ``dribble`` reply; returns the body bytes written before it ended
        or the client went away. The connection is closed afterwards."""
        self.close_connection = True
        size = reply.body_size if reply.body_size is not None else len(reply.body)
        lines = [f"{self.protocol_version} {reply.status} {HTTPStatus(reply.status).phrase}"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        lines.append("Transfer-Encoding: chunked" if reply.chunked else f"Content-Length: {size}")
        lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        body = oversize_body(size) if reply.body_size is not None else iter([reply.body])
        written = 0
        try:
            if reply.dribble_s is not None:
                return self._dribble(head, body, reply.dribble_s, whole=reply.dribble_whole)
            self.wfile.write(head)
            for chunk in body:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if reply.chunked else chunk)
                written += len(chunk)
            if reply.chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass  # the client stopped reading (as a size cap should)
        return written

    def _dribble(self, head: bytes, body: Iterable[bytes], every_s: float, *, whole: bool) -> int:
        sandbox = self.server.app
        give_up_at = time.monotonic() + MAX_PAUSE_S
        if not whole:
            self.wfile.write(head)
            self.wfile.flush()
        pieces = [(head, False)] if whole else []
        written = 0
        for chunk, is_body in itertools.chain(pieces, ((chunk, True) for chunk in body)):
            for index in range(len(chunk)):
                if sandbox.stopping or time.monotonic() >= give_up_at:
                    return written
                self.wfile.write(chunk[index : index + 1])
                self.wfile.flush()
                written += is_body
                sandbox.pause(every_s)
        return written

    def _drop(self) -> None:
        """Closes the connection without a byte of answer (an RST where the platform allows it)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
