"""Import every module of the named packages, for ``make py311-compat``.

``python -m tests.support.import_smoke PACKAGE...`` (packages importable from PYTHONPATH). Run on
python3.11 with only the layer's locked dependencies installed, it proves what ships (and the operator
CLI) still imports on the oldest Python we support: a 3.12+ stdlib name or syntax fails here, not in a
user's hands. ``__main__`` modules are skipped (importing them runs them). Exit 1 naming each failure.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback


def module_names(package_name: str) -> list[str]:
    package = importlib.import_module(package_name)
    names = [package_name]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            names.append(info.name)
    return names


def main(packages: list[str]) -> int:
    imported, failed = 0, 0
    for package_name in packages:
        try:
            names = module_names(package_name)
        except Exception:  # any import-time error is the finding
            names, failed = [], failed + 1
            print(f"import-smoke: {package_name}: {traceback.format_exc(limit=1)}", file=sys.stderr)
        for name in names:
            try:
                importlib.import_module(name)
                imported += 1
            except Exception:  # any import-time error is the finding
                failed += 1
                print(f"import-smoke: {name}: {traceback.format_exc(limit=1)}", file=sys.stderr)
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"import-smoke: Python {version}: {imported} modules imported, {failed} failed")
    return 1 if failed or not imported else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
