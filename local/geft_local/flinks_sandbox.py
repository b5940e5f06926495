"""The Flinks sandbox as a process of its own (``testkit.flinks`` is the sandbox itself)::

    python -m geft_local.flinks_sandbox --port 8765 --username U --password P

Prints ``FLINKS_SANDBOX_URL=<url>`` once it serves, then runs until SIGINT or SIGTERM. The admin API,
scenarios and fault kinds are described in ``testkit.flinks``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from testkit.flinks import DEFAULT_PASSWORD, DEFAULT_USERNAME, FlinksSandbox
from testkit.flinks.sandbox import Transport


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geft_local.flinks_sandbox", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument("--transports", default="basic,form", help="accepted authorize transports")
    parser.add_argument("--client-id", default=None)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--token-ttl-s", type=int, default=299)
    parser.add_argument("--hang-s", type=float, default=2.0)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--status-without-auth", action="store_true")
    parser.add_argument(
        "--allow-shared-tokens", action="store_true", help="accept one token on several sessions"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    transports: list[Transport] = []
    for name in args.transports.split(","):
        if name.strip() not in ("basic", "form"):
            parser.error("--transports takes basic, form or basic,form")
        transports.append("basic" if name.strip() == "basic" else "form")
    sandbox = FlinksSandbox(
        host=args.host,
        port=args.port,
        username=args.username,
        password=args.password,
        accepted_transports=transports,
        client_id=args.client_id,
        api_key=args.api_key,
        token_ttl_s=args.token_ttl_s,
        hang_s=args.hang_s,
        latency_ms=args.latency_ms,
        status_requires_auth=not args.status_without_auth,
        bind_tokens_to_session=not args.allow_shared_tokens,
        verbose=args.verbose,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    sandbox.start()
    print(f"FLINKS_SANDBOX_URL={sandbox.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
