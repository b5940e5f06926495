"""Per-call CPU of FlinksClient with ``trust_env`` off (the default) and on, against the sandbox.

    python -m benchmarks.flinks_client_bench [--calls N] [--rounds R]

The sandbox runs in its own process so only the client's CPU is counted (``time.process_time`` of
this process). Rounds alternate between the two settings and the median per-call CPU is reported,
with the ratio measured in the same run. Every exchange is also counted through ``on_call``, to check
that both settings made the same calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from geft.flinks_client import CallObservation, FlinksClient, FlinksCredentials

from benchmarks.paths import REPO
from testkit.flinks import SandboxAdmin

USERNAME, PASSWORD = "bench-user", "bench-password"


@contextmanager
def sandbox_process() -> Iterator[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "local"), str(REPO)])}
    command = [sys.executable, "-m", "geft_local.flinks_sandbox", "--port", "0"]
    command += ["--username", USERNAME, "--password", PASSWORD, "--allow-shared-tokens"]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip().removeprefix("FLINKS_SANDBOX_URL=")
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def cpu_per_call_us(base_url: str, session_id: str, *, trust_env: bool, calls: int) -> tuple[float, int]:
    exchanges: list[CallObservation] = []
    client = FlinksClient(
        base_url, lambda: FlinksCredentials(USERNAME, PASSWORD), trust_env=trust_env, on_call=exchanges.append
    )
    try:
        session = client.for_session(session_id, deadline=time.monotonic() + 3600)
        session.status()  # connect and authorize outside the measurement
        started = time.process_time()
        for _ in range(calls):
            session.status()
        elapsed = time.process_time() - started
    finally:
        client.close()
    return elapsed / calls * 1e6, len(exchanges) - 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    with sandbox_process() as base_url:
        session_id = SandboxAdmin(base_url).add_session()
        samples: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for trust_env in (False, True):
                per_call, exchanges = cpu_per_call_us(
                    base_url, session_id, trust_env=trust_env, calls=args.calls
                )
                assert exchanges == args.calls
                samples[trust_env].append(per_call)
    off, on = statistics.median(samples[False]), statistics.median(samples[True])
    result = {
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "environment_variables": len(os.environ),
        "cpu_us_per_call_trust_env_off": round(off, 1),
        "cpu_us_per_call_trust_env_on": round(on, 1),
        "saved_us_per_call": round(on - off, 1),
        "ratio_on_over_off": round(on / off, 3),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
