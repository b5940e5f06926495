"""Item 4: webhook-to-confirm latency through the local stack (``geft_local.stack.LocalStack``).

Real HTTP to its API gateway on 127.0.0.1, function containers as separate processes, moto in server
mode, the stream pump polling every 250 ms, and a Flinks sandbox of ours with a fixed latency.
Latency comes from the items themselves (``webhookToConfirmMs`` = ``confirmedAtMs - receivedAtMs``).
Run as a child: ``python -m benchmarks.e2e_bench OUT.json [--quick]``.

``running_stack``, ``warm_up``, ``deliver`` and ``settled_items`` are also how the capacity model's
local-stack check (``capacity.local_check``) drives the stack.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_SECRET, HEADLINE_FLINKS_MS, summary
from benchmarks.inprocess import FLINKS_PASSWORD, FLINKS_USERNAME, prepare

LATENCIES_MS = (HEADLINE_FLINKS_MS, 50, 0)
WEBHOOKS = 100
RATE_PER_S = 10  # open loop: one webhook every 100 ms, whatever the pipeline is doing
WARM_UP = 5


@dataclass(frozen=True)
class RunningStack:
    stack: Any  # geft_local.stack.LocalStack
    sandbox: Any  # testkit.flinks.FlinksSandbox
    startup_s: float


@contextmanager
def running_stack(latency_ms: int, name: str) -> Iterator[RunningStack]:
    """The local stack on free ports, its processor talking to our sandbox at ``latency_ms`` per call."""
    from geft_local.config import LocalConfig
    from geft_local.console import Console
    from geft_local.stack import LocalStack

    from testkit.flinks import FlinksSandbox

    with (
        tempfile.TemporaryDirectory(prefix=f"geft-{name}-") as run_dir,
        FlinksSandbox(username=FLINKS_USERNAME, password=FLINKS_PASSWORD, latency_ms=latency_ms) as sandbox,
    ):
        config = LocalConfig(
            port=0,
            sandbox_port=0,
            webhook_secret=BENCH_SECRET,
            flinks_base_url=sandbox.base_url,
            flinks_username=FLINKS_USERNAME,
            flinks_password=FLINKS_PASSWORD,
            run_dir=Path(run_dir),
            stack_name=f"geft-{name}",
        )
        started = time.perf_counter()
        with LocalStack(config, console=Console(stream=None)) as stack:
            yield RunningStack(stack, sandbox, time.perf_counter() - started)


def warm_up(running: RunningStack, count: int = WARM_UP) -> None:
    """Send ``count`` guarantees one at a time, each confirmed before the next: warm containers."""
    for session_id in [running.sandbox.add_session() for _ in range(count)]:
        deliver(running, session_id)
        if running.stack.wait_for_guarantee(session_id, timeout=30) is None:
            raise RuntimeError("the local stack did not confirm a warm-up guarantee")


@dataclass(frozen=True)
class Delivery:
    session_id: str
    sent_at_s: float  # epoch seconds (time.time()), the clock the items' timestamps use
    ack_ms: float


def deliver(running: RunningStack, session_id: str) -> float:
    """One signed guarantee webhook, as Flinks sends it; the time to its 200 in ms."""
    delivery = running.sandbox.emit_guarantee_webhook(
        running.stack.webhook_url, BENCH_SECRET, session_id, attempts=1, timeout=10
    )
    if not delivery.delivered:
        raise RuntimeError(f"the gateway refused a webhook: {delivery.attempts}")
    return float(delivery.attempts[-1][1])


def send_open_loop(
    running: RunningStack, sessions: Sequence[str], offsets_s: Sequence[float], *, senders: int = 1
) -> list[Delivery]:
    """Webhook ``i`` for ``sessions[i]`` sent ``offsets_s[i]`` seconds after the start, whatever the
    pipeline is doing (open loop); ``senders`` threads so a slow answer does not delay the next one."""
    started = time.perf_counter()
    lock = threading.Lock()
    deliveries: list[Delivery] = []

    def send(index: int) -> None:
        time.sleep(max(0.0, started + offsets_s[index] - time.perf_counter()))
        sent_at = time.time()
        ack_ms = deliver(running, sessions[index])
        with lock:
            deliveries.append(Delivery(sessions[index], sent_at, ack_ms))

    if senders == 1:
        for index in range(len(sessions)):
            send(index)
    else:
        with ThreadPoolExecutor(max_workers=senders) as pool:
            list(pool.map(send, range(len(sessions))))
    return sorted(deliveries, key=lambda delivery: delivery.sent_at_s)


def settled_items(running: RunningStack, sessions: Sequence[str], *, timeout: float) -> list[dict[str, Any]]:
    """Each session's guarantee once CONFIRMED; raises if any is not confirmed within ``timeout`` s."""
    give_up_at = time.monotonic() + timeout
    items, pending = [], []
    for session_id in sessions:
        item = running.stack.wait_for_guarantee(session_id, timeout=max(1.0, give_up_at - time.monotonic()))
        if item is None or item.get("status") != "CONFIRMED":
            pending.append(session_id)
            continue
        items.append(item)
    if pending:
        raise RuntimeError(f"{len(pending)} guarantees were not confirmed through the local stack")
    return items


def run(latency_ms: int, webhooks: int) -> dict[str, Any]:
    from geft_local.stream_pump import POLL_INTERVAL_S

    with running_stack(latency_ms, f"bench-e2e-{latency_ms}ms") as running:
        warm_up(running)
        running.sandbox.clear_journal()
        sessions = [running.sandbox.add_session() for _ in range(webhooks)]
        offsets = [index / RATE_PER_S for index in range(webhooks)]
        acks = [delivery.ack_ms for delivery in send_open_loop(running, sessions, offsets)]
        items = settled_items(running, sessions, timeout=60)
        latencies = [float(item["webhookToConfirmMs"]) for item in items]
        calls = [entry.endpoint for entry in running.sandbox.calls()]
        startup_s = running.startup_s
    calls_per_session = len(calls) / webhooks
    floor_ms = calls_per_session * latency_ms + POLL_INTERVAL_S * 1000
    return {
        "latency_ms": latency_ms,
        "webhooks": webhooks,
        "rate_per_s": RATE_PER_S,
        "stack_startup_s": startup_s,
        "webhook_to_confirm_ms": summary(latencies),
        "webhook_ack_ms": summary(acks),
        "calls_per_session": calls_per_session,
        "poll_interval_ms": POLL_INTERVAL_S * 1000,
        "floor_ms": floor_ms,
        "ratio_p50_to_floor": summary(latencies)["p50"] / floor_ms,
        "samples": latencies,
    }


def main() -> None:
    prepare()
    out = sys.argv[1]
    webhooks = 30 if "--quick" in sys.argv else WEBHOOKS
    result = {"status": "measured", "runs": [run(latency, webhooks) for latency in LATENCIES_MS]}
    with open(out, "w") as stream:
        json.dump(result, stream)


if __name__ == "__main__":
    main()
