"""A per-container pool of unused Flinks tokens, minted ahead on an executor.

Each token is handed to exactly one caller (popped under a lock) and never once it is no longer
usable (its lifetime minus a margin, as the token itself says); older ones are discarded and counted
as waste. Taking a token when the pool is below its size starts a refill on the executor, never on
the caller's thread and never waited for; a refill failure is silent (the caller authorizes inline
instead) and the next refill waits a few seconds. Stdlib only: minting is the caller's ``mint``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

REFILL_COOLDOWN_S = 5.0
REFILL_THREAD_PREFIX = "flinks-token-pool"


class PooledToken(Protocol):
    def usable(self, now_monotonic: float, now_wall: float) -> bool: ...


TokenT = TypeVar("TokenT", bound=PooledToken)


@dataclass(frozen=True)
class TokenPoolCounters:
    """What a container's token pool did so far (monotonic counters; emit the deltas as metrics).

    ``minted``: tokens the pool obtained in the background. ``used``: handed to a session.
    ``wasted``: discarded unused because they were about to expire. ``refused``: pooled tokens
    Flinks answered 401 (the session then re-authorized inline). ``refill_failures``: background
    authorize attempts that failed (silently: the sessions authorized inline instead).
    """

    minted: int = 0
    used: int = 0
    wasted: int = 0
    refused: int = 0
    refill_failures: int = 0


class TokenPool(Generic[TokenT]):
    """Up to ``size`` unused tokens; ``mint`` makes one (it may raise: the refill then stops)."""

    def __init__(
        self,
        size: int,
        mint: Callable[[], TokenT],
        *,
        monotonic: Callable[[], float],
        clock: Callable[[], float],
        executor: Executor | None = None,
    ) -> None:
        self._size = size
        self._mint = mint
        self._monotonic = monotonic
        self._clock = clock
        self._executor = executor
        self._owns_executor = executor is None
        self._lock = threading.Lock()
        self._tokens: deque[TokenT] = deque()
        self._refilling = False
        self._closed = False
        self._next_refill_at = -math.inf
        self._minted = self._used = self._wasted = self._refused = self._refill_failures = 0

    def take(self) -> TokenT | None:
        """The oldest usable token, or None (never waits); starts a refill when below size."""
        now_monotonic, now_wall = self._monotonic(), self._clock()
        with self._lock:
            token: TokenT | None = None
            while self._tokens:
                candidate = self._tokens.popleft()
                if candidate.usable(now_monotonic, now_wall):
                    token = candidate
                    self._used += 1
                    break
                self._wasted += 1
            start_refill = (
                not self._closed
                and not self._refilling
                and len(self._tokens) < self._size
                and now_monotonic >= self._next_refill_at
            )
            if start_refill:
                self._refilling = True
        if start_refill:
            self._start_refill()
        return token

    def count_refused(self) -> None:
        """A token from the pool was answered 401."""
        with self._lock:
            self._refused += 1

    def counters(self) -> TokenPoolCounters:
        with self._lock:
            return TokenPoolCounters(
                minted=self._minted,
                used=self._used,
                wasted=self._wasted,
                refused=self._refused,
                refill_failures=self._refill_failures,
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._tokens.clear()
            executor = self._executor if self._owns_executor else None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _start_refill(self) -> None:
        try:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=REFILL_THREAD_PREFIX)
            self._executor.submit(self._refill)
        except RuntimeError:  # the executor was shut down: the pool is closing
            with self._lock:
                self._refilling = False

    def _refill(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed or len(self._tokens) >= self._size:
                        return
                try:
                    token = self._mint()
                except Exception:  # silent by design: callers authorize inline meanwhile
                    with self._lock:
                        self._refill_failures += 1
                        self._next_refill_at = self._monotonic() + REFILL_COOLDOWN_S
                    return
                with self._lock:
                    if self._closed:
                        return
                    self._tokens.append(token)
                    self._minted += 1
        finally:
            with self._lock:
                self._refilling = False
