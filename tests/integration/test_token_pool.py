"""The per-container token pool against the Flinks sandbox over real HTTP on 127.0.0.1.

The sandbox enforces what the pool must respect: a token is bound to the first session it is used
on (a second session gets 401) and refused after its ``expires_in``. Refills run on an executor; a
few tests drive a manual one to decide exactly when a refill happens, the others use the client's
own thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import ExitStack
from typing import Any

import pytest
from geft.flinks_client import FlinksClient, FlinksCredentials, TokenPoolCounters

from testkit.flinks import FlinksSandbox
from tests.support.concurrency import all_at_once
from tests.support.constants import TEST_FLINKS_CREDENTIALS
from tests.support.flinks_calls import CallRecorder
from tests.support.ledger import audit
from tests.support.pipeline import Invoke, Pipeline

# What the shared sandbox fixture accepts (the stack's Flinks API secret holds them too).
USERNAME = TEST_FLINKS_CREDENTIALS["username"]
PASSWORD = TEST_FLINKS_CREDENTIALS["password"]
AUTHORIZE = "/api/v1/authorize"

ClientFactory = Callable[..., FlinksClient]


class ManualExecutor(Executor):
    """Runs submitted refills only when the test says so (on the test's thread)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Future[Any], Callable[[], Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.pending.append((future, lambda: fn(*args, **kwargs)))
        return future

    def run_pending(self) -> int:
        ran = 0
        while self.pending:
            future, work = self.pending.pop(0)
            future.set_result(work())
            ran += 1
        return ran


class Clocks:
    """A monotonic and a wall clock the test moves together."""

    def __init__(self) -> None:
        self.monotonic_now = 1_000.0
        self.wall_now = 1_900_000_000.0

    def monotonic(self) -> float:
        return self.monotonic_now

    def wall(self) -> float:
        return self.wall_now

    def advance(self, seconds: float) -> None:
        self.monotonic_now += seconds
        self.wall_now += seconds


@pytest.fixture
def make_client(sandbox: FlinksSandbox, recorder: CallRecorder) -> Iterator[ClientFactory]:
    with ExitStack() as stack:

        def factory(**options: Any) -> FlinksClient:
            options = {
                "connect_timeout": 1.0,
                "read_timeout": 2.0,
                "sleep": lambda _seconds: None,
                "on_call": recorder,
                **options,
            }
            client = FlinksClient(sandbox.base_url, lambda: FlinksCredentials(USERNAME, PASSWORD), **options)
            stack.callback(client.close)
            return client

        yield factory


def run_session(client: FlinksClient, sandbox: FlinksSandbox, deadline_s: float = 10.0) -> str:
    session_id = sandbox.add_session()
    calls = client.for_session(session_id, deadline=client._monotonic() + deadline_s)
    calls.details()
    calls.confirm(True)
    return session_id


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    give_up_at = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < give_up_at, "condition not met in time"
        time.sleep(0.01)


def warmed_pool(make_client: ClientFactory, sandbox: FlinksSandbox, *, size: int) -> FlinksClient:
    """A client whose pool of ``size`` its own refill thread has filled, after a first session that
    found the pool empty and authorized inline."""
    client = make_client(token_pool_size=size)
    run_session(client, sandbox)
    wait_until(lambda: client.token_pool_counters().minted == size)
    return client


def _pool_threads(recorder: CallRecorder) -> set[str]:
    return {call.thread for call in recorder.calls if call.thread.startswith("flinks-token-pool")}


def inline_authorizes(recorder: CallRecorder) -> int:
    return sum(
        1
        for call in recorder.calls
        if call.observation.operation == "authorize" and not call.thread.startswith("flinks-token-pool")
    )


def test_each_pooled_token_serves_exactly_one_session_and_is_minted_off_the_callers_thread(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN a pool of two, warmed by a first session (which found the pool empty and authorized inline)
    client = warmed_pool(make_client, sandbox, size=2)

    # WHEN two more sessions run
    later = [run_session(client, sandbox) for _ in range(2)]

    # THEN neither authorized on its own thread: each used one pooled token, which the sandbox (tokens
    # bound to their first session) accepted, so no token served two sessions
    assert inline_authorizes(recorder) == 1
    assert client.token_pool_counters().used == 2
    assert all(sandbox.confirms_for(session_id) == [True] for session_id in later)
    assert all(entry.response_status == 200 for entry in sandbox.calls())
    authorizing_threads = [
        call.thread for call in recorder.calls if call.observation.operation == "authorize"
    ]
    assert authorizing_threads.count(threading.current_thread().name) == 1  # the warm-up's, inline
    assert {thread.rsplit("_", 1)[0] for thread in authorizing_threads} == {
        threading.current_thread().name,
        "flinks-token-pool",
    }


def test_a_pooled_token_is_never_used_past_expires_in_minus_the_margin(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN a pool filled with 299 s tokens and a 30 s margin, on clocks the test moves
    clocks, executor = Clocks(), ManualExecutor()
    client = make_client(
        token_pool_size=2,
        token_pool_margin=30.0,
        monotonic=clocks.monotonic,
        clock=clocks.wall,
        refill_executor=executor,
    )
    run_session(client, sandbox)
    executor.run_pending()
    assert client.token_pool_counters() == TokenPoolCounters(minted=2)

    # WHEN one session comes just before the margin, and one just after the next token's margin
    clocks.advance(299 - 30 - 1)
    run_session(client, sandbox)
    clocks.advance(2)
    run_session(client, sandbox)

    # THEN the first used a pooled token; the second found the other one too old: discarded as waste
    # (it was still valid at Flinks), and the session authorized inline
    _assert_pool_served(client, sandbox, used=1, wasted=1)


def _assert_pool_served(client: FlinksClient, sandbox: FlinksSandbox, *, used: int, wasted: int) -> None:
    """The pool's tokens used and discarded as too old, and every call Flinks answered accepted (a
    token tried after it expired would show as a 401)."""
    counters = client.token_pool_counters()
    assert (counters.used, counters.wasted) == (used, wasted)
    assert all(entry.response_status == 200 for entry in sandbox.calls())


def test_with_short_lived_tokens_the_margin_holds_on_real_clocks(
    make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN Flinks issuing 3 s tokens, a 2 s margin, and a full pool
    with FlinksSandbox(username=USERNAME, password=PASSWORD, token_ttl_s=3) as short_lived:
        client = FlinksClient(
            short_lived.base_url,
            lambda: FlinksCredentials(USERNAME, PASSWORD),
            token_pool_size=1,
            token_pool_margin=2.0,
            on_call=recorder,
        )
        try:
            run_session(client, short_lived)
            wait_until(lambda: client.token_pool_counters().minted == 1)
            minted_at = time.monotonic()

            # WHEN the next session comes more than 1 s (lifetime - margin) after the token was minted
            time.sleep(max(0.0, 1.2 - (time.monotonic() - minted_at)))
            run_session(client, short_lived)
        finally:
            client.close()

        # THEN the pooled token was not used (no 401 either: it was discarded, not tried)
        _assert_pool_served(client, short_lived, used=0, wasted=1)


def test_a_refused_pooled_token_reauthorizes_once_inline(
    sandbox: FlinksSandbox, make_client: ClientFactory
) -> None:
    # GIVEN a full pool whose tokens Flinks then refuses (revoked or expired early on its side)
    executor = ManualExecutor()
    client = make_client(token_pool_size=1, refill_executor=executor)
    run_session(client, sandbox)
    executor.run_pending()
    sandbox.expire_tokens()
    before = len(sandbox.calls())

    # WHEN a session uses the pooled token
    session_id = run_session(client, sandbox)

    # THEN one 401, one inline authorize, and the session goes on as today
    calls = sandbox.calls()[before:]
    assert [(entry.endpoint, entry.response_status) for entry in calls] == [
        ("details", 401),
        ("authorize", 200),
        ("details", 200),
        ("confirm", 200),
    ]
    assert sandbox.confirms_for(session_id) == [True]
    assert client.token_pool_counters().refused == 1


def test_pool_off_is_todays_behaviour(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN / WHEN three sessions without a pool
    client = make_client(token_pool_size=0)
    for _ in range(3):
        run_session(client, sandbox)

    # THEN each authorized inline, once, and nothing ran in the background
    assert inline_authorizes(recorder) == 3
    assert sandbox.authorize_count == 3
    assert client.token_pool_counters() == TokenPoolCounters()
    assert {call.thread for call in recorder.calls} == {threading.current_thread().name}


def test_a_refill_failure_does_not_fail_a_session(sandbox: FlinksSandbox, make_client: ClientFactory) -> None:
    # GIVEN a refill that meets a Flinks authorize outage
    executor = ManualExecutor()
    client = make_client(token_pool_size=2, refill_executor=executor)
    run_session(client, sandbox)
    sandbox.add_authorize_faults(["503"])
    executor.run_pending()
    assert client.token_pool_counters().refill_failures == 1

    # WHEN the next session comes (the outage is over)
    session_id = run_session(client, sandbox)

    # THEN it authorized inline, as without a pool, and was not failed by the refill
    assert sandbox.confirms_for(session_id) == [True]
    assert client.token_pool_counters().used == 0
    assert executor.pending == []  # and the failed refill waits a few seconds before trying again


def test_many_threads_never_get_the_same_token(
    sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN a full pool of eight and sixteen sessions at once
    client = warmed_pool(make_client, sandbox, size=8)

    # WHEN
    all_at_once(16, lambda: run_session(client, sandbox))

    # THEN every session was served, none with a token another had used (the sandbox would 401 it);
    # the pool's refills may still be in flight (unanswered yet): the journal is read once they are
    wait_until(lambda: all(entry.response_status is not None for entry in sandbox.calls()))
    assert all(entry.response_status == 200 for entry in sandbox.calls())
    authorized_inline = {
        call.thread
        for call in recorder.calls
        if call.observation.operation == "authorize" and call.observation.status_class == "2xx"
    } - {threading.current_thread().name, *(name for name in _pool_threads(recorder))}
    assert len(authorized_inline) + client.token_pool_counters().used == 16
    assert client.token_pool_counters().used >= 8


@pytest.mark.parametrize("pool_size", [1, 3])
def test_waste_is_at_most_the_pool_size_per_token_lifetime(
    pool_size: int, sandbox: FlinksSandbox, make_client: ClientFactory, recorder: CallRecorder
) -> None:
    # GIVEN sessions so sparse (one per token lifetime) that every pooled token expires unused
    clocks, executor = Clocks(), ManualExecutor()
    client = make_client(
        token_pool_size=pool_size, monotonic=clocks.monotonic, clock=clocks.wall, refill_executor=executor
    )
    lifetimes = 5

    # WHEN
    for _ in range(lifetimes):
        run_session(client, sandbox)
        executor.run_pending()
        clocks.advance(299.0)

    # THEN each lifetime wasted at most the pool's size: authorizes <= sessions + pool size * lifetimes
    counters = client.token_pool_counters()
    assert counters.wasted == pool_size * (lifetimes - 1)
    assert sandbox.authorize_count == lifetimes + counters.minted
    assert sandbox.authorize_count <= lifetimes + pool_size * lifetimes


# -- the processor with the pool on ------------------------------------------------------------------


def test_a_warm_processor_confirms_without_authorizing_on_the_critical_path(
    template: dict[str, Any], pipeline: Pipeline, configure_processor: Callable[..., Invoke]
) -> None:
    from decision_processor import handler

    # GIVEN the processor with the template's default pool size, warmed by a first batch
    sandbox = pipeline.sandbox
    pool_size = int(template["Parameters"]["FlinksTokenPoolSize"]["Default"])
    invoke = configure_processor(FLINKS_TOKEN_POOL_SIZE=str(pool_size))
    for session_id in [pipeline.session() for _ in range(2)]:
        pipeline.receive(session_id)
    assert invoke(pipeline.feed.next_event()) == {"batchItemFailures": []}
    wait_until(lambda: handler._dependencies()._flinks.token_pool_counters().minted >= pool_size)

    # WHEN the next batch arrives
    for session_id in [pipeline.session() for _ in range(2)]:
        pipeline.receive(session_id)
    authorizes_before = sandbox.authorize_count
    used_before = handler._dependencies()._flinks.token_pool_counters().used
    assert invoke(pipeline.feed.next_event()) == {"batchItemFailures": []}

    # THEN its sessions used pooled tokens (one each: the sandbox binds tokens to sessions), and
    # nothing was confirmed twice
    assert handler._dependencies()._flinks.token_pool_counters().used - used_before == 2
    assert audit(sandbox, pipeline.items).confirmed == 4
    assert all(entry.response_status == 200 for entry in sandbox.calls())
    assert sandbox.authorize_count - authorizes_before <= 2  # refills only, replacing what was used
