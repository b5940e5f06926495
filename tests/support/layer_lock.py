"""Is the layer ``sam build`` made exactly the hashed lock? For ``make lock-check``.

``python -m tests.support.layer_lock LOCK LAYER WHEELS [SOURCE]``: LOCK is the layer's requirements.txt,
LAYER the built ``.aws-sam/build/SharedLayer/python``, WHEELS the Lambda target's wheels downloaded from
LOCK with ``pip download --require-hashes``, SOURCE the layer's own code (default ``layers/shared``).

SAM's pip builder checks the lock's hashes only for what it downloads for this machine; a native wheel
for arm64 it fetches again by name and version, unchecked. So the layer is compared file by file with
the hash-checked wheels: exit 0 when it holds one distribution per locked package at the locked
version, every file of those wheels byte for byte, and nothing else besides the layer's own source;
exit 1 naming each difference.
"""

from __future__ import annotations

import hashlib
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalize(name: str) -> str:
    """PEP 503: ``Typing_Extensions`` and ``typing-extensions`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_text: str) -> dict[str, str]:
    """``name==version`` lines of a pip requirements lock (hash and comment lines skipped)."""
    pins = (_PIN.match(line) for line in lock_text.splitlines())
    return {normalize(m[1]): m[2] for m in pins if m}


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    path: Path

    def files(self) -> Iterator[tuple[str, bytes]]:
        """(path where an installer that only unpacks puts it, content) for each file in the wheel."""
        data_dir = f"{self.path.name.split('-')[0]}-{self.version}.data"
        data_libs = (f"{data_dir}/purelib/", f"{data_dir}/platlib/")
        with zipfile.ZipFile(self.path) as archive:
            for member in archive.infolist():
                if member.is_dir():
                    continue
                target = member.filename
                for prefix in data_libs:
                    if target.startswith(prefix):
                        target = target.removeprefix(prefix)
                yield target, archive.read(member)


def wheels_in(directory: Path) -> dict[str, Wheel]:
    wheels = {}
    for path in sorted(directory.glob("*.whl")):
        name, version = path.name.split("-")[:2]
        wheels[normalize(name)] = Wheel(normalize(name), version, path)
    return wheels


def _layer_distributions(layer: Path) -> dict[str, str]:
    found = {}
    for dist_info in layer.glob("*.dist-info"):
        name, version = dist_info.name.removesuffix(".dist-info").split("-", 1)
        found[normalize(name)] = version
    return found


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _is_cache(path: Path) -> bool:
    return "__pycache__" in path.parts


def differences(lock_text: str, layer: Path, wheel_dir: Path, source: Path) -> list[str]:
    """Every way the built layer differs from the lock; empty when it is exactly the lock."""
    locked = locked_versions(lock_text)
    wheels = wheels_in(wheel_dir)
    built = _layer_distributions(layer)
    problems = []
    for name in sorted(locked.keys() | built.keys() | wheels.keys()):
        want, have, wheel = locked.get(name), built.get(name), wheels.get(name)
        if want is None:
            found = have or (wheel and wheel.version)
            problems.append(f"{name}: {found} in the layer or the wheels, not locked")
        elif have != want:
            problems.append(f"{name}: locked {want}, layer has {have or 'nothing'}")
        elif wheel is None or wheel.version != want:
            problems.append(f"{name}: no hash-checked {want} wheel to compare the layer with")
    expected: dict[str, str] = {}
    for wheel in wheels.values():
        expected.update((path, _sha256(content)) for path, content in wheel.files())
    for path in source.rglob("*"):
        if path.is_file() and not _is_cache(path.relative_to(source)):
            expected[path.relative_to(source).as_posix()] = _sha256(path.read_bytes())
    actual = {
        path.relative_to(layer).as_posix(): _sha256(path.read_bytes())
        for path in layer.rglob("*")
        if path.is_file() and not _is_cache(path.relative_to(layer))
    }
    for path in sorted(expected.keys() - actual.keys()):
        problems.append(f"{path}: missing from the layer")
    for path in sorted(actual.keys() - expected.keys()):
        problems.append(f"{path}: in the layer, from no locked wheel and not our source")
    for path in sorted(p for p in expected.keys() & actual.keys() if expected[p] != actual[p]):
        problems.append(f"{path}: differs from the hash-checked wheel or our source")
    return problems


def main(argv: list[str]) -> int:
    lock, layer, wheel_dir = (Path(arg) for arg in argv[:3])
    source = Path(argv[3]) if len(argv) > 3 else Path("layers/shared")
    if not layer.is_dir():
        print(f"layer-lock: {layer} does not exist: run make build", file=sys.stderr)
        return 1
    problems = differences(lock.read_text(encoding="utf-8"), layer, wheel_dir, source)
    for problem in problems:
        print(f"layer-lock: {problem}", file=sys.stderr)
    if problems:
        print(f"layer-lock: {layer} is NOT what {lock} locks ({len(problems)} differences)", file=sys.stderr)
        return 1
    count = len(locked_versions(lock.read_text(encoding="utf-8")))
    print(f"layer-lock: {layer} holds exactly the {count} locked distributions, file for file")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
