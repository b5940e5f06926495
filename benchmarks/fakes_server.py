"""The fakes in a process of their own: moto's server (writes made atomic) and the Flinks sandbox.

    python -m benchmarks.fakes_server LATENCY_MS USERNAME PASSWORD [sandbox-only]

Prints one JSON line ``{"moto": URL, "sandbox": URL}`` and serves until its stdin closes. On a
2-core machine this keeps moto's and the sandbox's CPU off the processor's interpreter (and GIL),
so the processor's own CPU can be measured apart from theirs.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    latency_ms, username, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    with_moto = sys.argv[4:] != ["sandbox-only"]
    from geft_local.aws import MotoServer

    from testkit.aws import make_conditional_writes_atomic
    from testkit.flinks import FlinksSandbox

    moto = MotoServer() if with_moto else None
    if moto is not None:
        make_conditional_writes_atomic()
        moto.start()
    with FlinksSandbox(username=username, password=password, latency_ms=latency_ms) as sandbox:
        print(json.dumps({"moto": moto.url if moto else "", "sandbox": sandbox.base_url}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or exits)
    if moto is not None:
        moto.stop()


if __name__ == "__main__":
    main()
