"""The local stack's console: one timestamped line per thing that happened, kept for tests to read."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TextIO


class Console:
    """Thread-safe line sink. ``stream=None`` keeps the lines without printing them; ``keep=None`` keeps
    them all."""

    def __init__(
        self,
        stream: TextIO | None = sys.stdout,
        *,
        keep: int | None = 5000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._lines: deque[str] = deque(maxlen=keep)
        self._changed = threading.Condition()

    def emit(self, component: str, message: str) -> None:
        stamp = datetime.fromtimestamp(self._clock()).strftime("%H:%M:%S.%f")[:-3]
        self.record(f"{stamp} {component:<8} {message}")

    def record(self, line: str) -> None:
        """Keep (and print) a line as it is: another process's console, read line by line."""
        with self._changed:
            self._lines.append(line)
            if self._stream is not None:
                self._stream.write(line + "\n")
                self._stream.flush()
            self._changed.notify_all()

    def lines(self, start: int = 0) -> list[str]:
        with self._changed:
            return list(self._lines)[start:]

    def wait_for(
        self,
        text: str | re.Pattern[str],
        *,
        timeout: float,
        start: int = 0,
        gone: Callable[[], bool] = lambda: False,
    ) -> str | None:
        """The first kept line (from index ``start``) containing ``text`` (or matching it, a pattern);
        None after ``timeout`` s, or once ``gone()`` says no such line can come (asked twice a second)."""

        def found(line: str) -> bool:
            return bool(text.search(line)) if isinstance(text, re.Pattern) else text in line

        give_up_at = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in list(self._lines)[start:]:
                    if found(line):
                        return line
                remaining = give_up_at - time.monotonic()
                if remaining <= 0 or gone():
                    return None
                self._changed.wait(min(remaining, 0.5))
