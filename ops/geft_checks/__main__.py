"""``bin/geft-check smoke ...`` / ``bin/geft-check contract ...`` (``make smoke``, ``make contract``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = "usage: geft-check {smoke,contract} [options]   (geft-check smoke --help, geft-check contract --help)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else ""
    if command == "smoke":
        from geft_checks import smoke  # noqa: PLC0415

        return smoke.main(args)
    if command == "contract":
        from geft_checks import contract  # noqa: PLC0415

        return contract.main(args)
    print(USAGE, file=sys.stdout if command in ("-h", "--help") else sys.stderr)
    return 0 if command in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
