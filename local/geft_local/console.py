"""The local stack's console: one timestamped line per thing that happened, kept for tests to read."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TextIO


class Console:
    """Thread-safe line sink. ``stream=None`` keeps the lines without printing them."""

    def __init__(
        self,
        stream: TextIO | None = sys.stdout,
        *,
        keep: int = 5000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._lines: deque[str] = deque(maxlen=keep)
        self._changed = threading.Condition()

    def emit(self, component: str, message: str) -> None:
        stamp = datetime.fromtimestamp(self._clock()).strftime("%H:%M:%S.%f")[:-3]
        line = f"{stamp} {component:<8} {message}"
        with self._changed:
            self._lines.append(line)
            if self._stream is not None:
                self._stream.write(line + "\n")
                self._stream.flush()
            self._changed.notify_all()

    def lines(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    def wait_for(self, text: str, *, timeout: float, start: int = 0) -> str | None:
        """The first kept line (from index ``start``) containing ``text``; None after ``timeout`` s."""
        give_up_at = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in list(self._lines)[start:]:
                    if text in line:
                        return line
                remaining = give_up_at - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
