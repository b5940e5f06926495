"""Item 4: webhook-to-confirm latency through the local stack (``geft_local.stack.LocalStack``).

Real HTTP to its API gateway on 127.0.0.1, function containers as separate processes, moto in server
mode, the stream pump polling every 250 ms, and a Flinks sandbox of ours with a fixed latency.
Latency comes from the items themselves (``webhookToConfirmMs`` = ``confirmedAtMs - receivedAtMs``).
Run as a child: ``python -m benchmarks.e2e_bench OUT.json [--quick]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_SECRET, summary
from benchmarks.inprocess import FLINKS_PASSWORD, FLINKS_USERNAME, prepare

LATENCIES_MS = (0, 50)
WEBHOOKS = 100
RATE_PER_S = 10  # open loop: one webhook every 100 ms, whatever the pipeline is doing
WARM_UP = 5


def stack_available() -> str | None:
    """None when the local stack can be imported, else why not."""
    try:
        from geft_local.config import LocalConfig  # noqa: F401
        from geft_local.stack import LocalStack  # noqa: F401
    except ImportError as error:
        return f"geft_local.stack is not importable: {error}"
    return None


def run(latency_ms: int, webhooks: int) -> dict[str, Any]:
    from geft_local.config import LocalConfig
    from geft_local.console import Console
    from geft_local.flinks_sandbox import FlinksSandbox
    from geft_local.stack import LocalStack
    from geft_local.stream_pump import POLL_INTERVAL_S

    with (
        tempfile.TemporaryDirectory(prefix="geft-bench-e2e-") as run_dir,
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
            stack_name=f"geft-bench-e2e-{latency_ms}ms",
        )
        started = time.perf_counter()
        with LocalStack(config, console=Console(stream=None)) as stack:
            startup_s = time.perf_counter() - started
            for session_id in [sandbox.add_session() for _ in range(WARM_UP)]:  # warm containers
                _deliver(sandbox, stack.webhook_url, session_id)
                if stack.wait_for_guarantee(session_id, timeout=30) is None:
                    raise RuntimeError("the local stack did not confirm a warm-up guarantee")
            sandbox.clear_journal()
            sessions = [sandbox.add_session() for _ in range(webhooks)]
            acks = []
            next_at = time.perf_counter()
            for session_id in sessions:
                time.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += 1 / RATE_PER_S
                acks.append(_deliver(sandbox, stack.webhook_url, session_id))
            latencies, pending = [], []
            for session_id in sessions:
                item = stack.wait_for_guarantee(session_id, timeout=60)
                if item is None or item.get("status") != "CONFIRMED":
                    pending.append(session_id)
                    continue
                latencies.append(float(item["webhookToConfirmMs"]))
            if pending:
                raise RuntimeError(f"{len(pending)} guarantees were not confirmed through the local stack")
            calls = [entry.endpoint for entry in sandbox.calls()]
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


def _deliver(sandbox: Any, url: str, session_id: str) -> float:
    delivery = sandbox.emit_guarantee_webhook(url, BENCH_SECRET, session_id, attempts=1, timeout=10)
    if not delivery.delivered:
        raise RuntimeError(f"the gateway refused a webhook: {delivery.attempts}")
    return float(delivery.attempts[-1][1])


def main() -> None:
    prepare()
    out = sys.argv[1]
    webhooks = 30 if "--quick" in sys.argv else WEBHOOKS
    missing = stack_available()
    result: dict[str, Any]
    if missing:
        result = {"status": "awaits-stack", "reason": missing}
    else:
        result = {"status": "measured", "runs": [run(latency, webhooks) for latency in LATENCIES_MS]}
    with open(out, "w") as stream:
        json.dump(result, stream)


if __name__ == "__main__":
    main()
