"""The verdict on a ``pip-audit --format json`` report, for ``make reliability-audit``.

pip-audit prints "No known vulnerabilities found" and exits 0 even when it could audit nothing (its
vulnerability service unreachable: from this workplace PyPI's per-release JSON API answers 404 and
api.osv.dev does not resolve), so its exit code is not trusted. This reads its report instead:

- any known vulnerability: ``VULNERABLE`` lines, exit 1;
- no dependency in the report: exit 2;
- a dependency it could not audit: a ``NOT AUDITED`` block naming each one; exit 3 in CI
  (``CI=true``), and everywhere when it audited nothing at all. A partial audit on a developer's
  machine warns and exits 0, so the audited part still counts.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

VULNERABLE, NOTHING_IN_REPORT, NOT_AUDITED = 1, 2, 3


def verdict(report: Mapping[str, object], *, in_ci: bool) -> int:
    dependencies = report.get("dependencies")
    if not isinstance(dependencies, list) or not dependencies:
        print("pip-audit: NOT AUDITED: the report lists no dependencies", file=sys.stderr)
        return NOTHING_IN_REPORT
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = len(dependencies) - len(skipped)
    for dependency in vulnerable:
        ids = ", ".join(v.get("id", "?") for v in dependency["vulns"])
        print(f"VULNERABLE {dependency['name']}=={dependency.get('version', '?')}: {ids}", file=sys.stderr)
    if skipped:
        print(
            f"NOT AUDITED: pip-audit could not audit {len(skipped)} of {len(dependencies)} locked "
            "dependencies (its vulnerability service was unreachable; see docs/reliability.md):",
            file=sys.stderr,
        )
        for dependency in skipped:
            print(f"  NOT AUDITED {dependency['name']}: {dependency['skip_reason']}", file=sys.stderr)
    print(f"pip-audit: {audited} audited, {len(vulnerable)} vulnerable, {len(skipped)} NOT AUDITED")
    if vulnerable:
        return VULNERABLE
    if skipped and (in_ci or audited == 0):
        return NOT_AUDITED
    return 0


def main(argv: list[str]) -> int:
    report = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    return verdict(report, in_ci=os.environ.get("CI", "").lower() in {"1", "true", "yes"})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
