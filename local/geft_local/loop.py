"""A background loop of the local stack (the stream pump, the flow and topic monitors): one daemon
thread running ``_run`` until asked to stop; ``signal_stop`` only asks, ``stop`` also waits for it."""

from __future__ import annotations

import threading


class Loop:
    thread_name = "loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def signal_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError
