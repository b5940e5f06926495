"""Print the ``X-Webhook-Signature`` header value Flinks would send for a body.

    python -m geft_local.sign [--secret S] FILE|-

Signs the exact bytes of FILE (``-``: stdin), so send them unchanged (``curl --data-binary``). The
secret defaults to $WEBHOOK_SECRET, else the local stack's ``local-dev-webhook-secret``. Needs
``layers/shared`` on PYTHONPATH (it uses the service's own ``geft.signature.compute_signature``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from geft.signature import compute_signature

from geft_local.config import DEFAULT_WEBHOOK_SECRET


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geft_local.sign", description="Print the X-Webhook-Signature value for a body."
    )
    parser.add_argument(
        "--secret",
        default=os.environ.get("WEBHOOK_SECRET") or DEFAULT_WEBHOOK_SECRET,
        help="signing secret (default: $WEBHOOK_SECRET, else the local stack's default)",
    )
    parser.add_argument("body", help="file holding the exact body bytes, or - for stdin")
    args = parser.parse_args(argv)
    try:
        body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
    except OSError as error:
        parser.error(f"cannot read {args.body}: {error.strerror}")
    print(compute_signature(body, args.secret))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
