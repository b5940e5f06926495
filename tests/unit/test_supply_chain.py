"""The supply chain: one hashed lock per requirement file, the layer built from its lock, the audit's
verdict, the commit hooks, the per-test timeout and the boto3 stubs.

Offline. What needs the package registry (each lock is what ``make lock`` makes of its ``.in`` file
today, the layer's lock installs with ``--require-hashes`` on python3.13 and for Lambda's arm64, and the
built layer is that lock file for file) is ``make lock-check``, which ``make test`` runs before pytest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import layer_lock, pip_audit_verdict

REPO = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = REPO / "layers/shared/requirements.txt"
INPUTS = sorted((REPO / "requirements").glob("*.in"))
_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)$")


def lock_of(requirement_in: Path) -> Path:
    if requirement_in.stem == "runtime":
        return RUNTIME_LOCK
    return requirement_in.with_suffix(".txt")


def requirements(path: Path) -> list[str]:
    """A requirements file's entries, continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    entries = (line.split(" #")[0].strip() for line in joined.splitlines())
    return [entry for entry in entries if entry and not entry.startswith("#")]


def top_level_pins(requirement_in: Path) -> dict[str, str]:
    pins = {}
    for entry in requirements(requirement_in):
        if entry.startswith("-c "):
            continue
        match = _PINNED.match(entry)
        assert match, f"{requirement_in.name}: {entry!r} is not pinned with =="
        pins[layer_lock.normalize(match[1])] = match[3]
    return pins


def makefile_lock_targets() -> dict[str, list[str]]:
    """``LOCK_<name> := <lock file> <python version> <platform>`` lines of the Makefile."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return {m[1]: m[2].split() for m in re.finditer(r"^LOCK_([a-z]+) := (.+)$", text, flags=re.MULTILINE)}


# ----------------------------------------------------------------- the locks


def test_every_requirement_file_has_its_lock_and_make_lock_knows_it() -> None:
    # GIVEN the .in files and the locks `make lock` writes
    targets = makefile_lock_targets()

    # THEN each .in file has a lock target, and nothing else does
    assert {path.stem for path in INPUTS} == set(targets)
    for requirement_in in INPUTS:
        assert (REPO / targets[requirement_in.stem][0]) == lock_of(requirement_in)
        assert lock_of(requirement_in).is_file()


@pytest.mark.parametrize("requirement_in", INPUTS, ids=lambda path: path.stem)
def test_every_lock_pins_each_package_with_hashes(requirement_in: Path) -> None:
    # GIVEN a lock as make lock wrote it
    lock = lock_of(requirement_in)

    # THEN every entry is one exact version with at least one sha256, so pip can --require-hashes it
    entries = requirements(lock)
    assert entries
    for entry in entries:
        name_and_version = entry.split(" ")[0]
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[^=;\s]+", name_and_version), entry
        assert "--hash=sha256:" in entry, f"{lock.name}: {name_and_version} has no hash"


@pytest.mark.parametrize("requirement_in", INPUTS, ids=lambda path: path.stem)
def test_every_lock_holds_its_inputs_exact_pins(requirement_in: Path) -> None:
    # GIVEN the top-level pins a person wrote and the lock make lock wrote from them
    pins = top_level_pins(requirement_in)
    locked = layer_lock.locked_versions(lock_of(requirement_in).read_text(encoding="utf-8"))

    # THEN an edited .in file without `make lock` shows here already (make lock-check is the full check)
    assert {name: locked.get(name) for name in pins} == pins


def test_the_tests_run_the_exact_packages_the_layer_ships() -> None:
    # GIVEN the layer's lock and the test virtualenv's
    shipped = layer_lock.locked_versions(RUNTIME_LOCK.read_text(encoding="utf-8"))
    tested = layer_lock.locked_versions((REPO / "requirements/dev.txt").read_text(encoding="utf-8"))

    # THEN every shipped package (boto3, botocore, urllib3, ...) is tested at the version that ships
    assert {name: tested.get(name) for name in shipped} == shipped


def test_the_layer_lock_targets_the_runtime_the_template_deploys(template: dict[str, Any]) -> None:
    # GIVEN the template's runtime and layer build settings
    layer = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::LayerVersion")
    runtime = template["Globals"]["Function"]["Runtime"]

    # WHEN make lock resolves the layer's lock
    lock_file, python_version, platform = makefile_lock_targets()["runtime"]

    # THEN it is for that Python and that architecture, and sam build builds the layer from it
    assert runtime == layer["Metadata"]["BuildMethod"] == f"python{python_version}"
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[layer["Metadata"]["BuildArchitecture"]]
    assert platform.startswith(f"{machine}-")
    assert REPO / layer["Properties"]["ContentUri"] / "requirements.txt" == REPO / lock_file


def test_boto3_stubs_match_the_pinned_boto3() -> None:
    # GIVEN the dev lock
    locked = layer_lock.locked_versions((REPO / "requirements/dev.txt").read_text(encoding="utf-8"))

    # THEN the stubs describe the boto3 minor release we run, with one stub package per service we call
    assert locked["boto3-stubs"].split(".")[:2] == locked["boto3"].split(".")[:2]
    services = (
        "dynamodb dynamodbstreams secretsmanager sqs sns sts cloudformation lambda cloudwatch codedeploy"
    )
    assert {f"mypy-boto3-{service}" for service in services.split()} <= locked.keys()


# ----------------------------------------------------------------- the built layer is the lock


def _wheel(directory: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in files.items():
            archive.writestr(member, content)
        archive.writestr(f"{name}-{version}.dist-info/METADATA", f"Name: {name}\nVersion: {version}\n")
    return path


def _install_like_sam(wheel: Path, layer: Path) -> None:
    """SAM's pip builder unpacks each wheel and moves ``.data/purelib`` up to the root."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(layer)
    for data in layer.glob("*.data"):
        purelib = data / "purelib"
        if purelib.is_dir():
            shutil.copytree(purelib, layer, dirs_exist_ok=True)
            shutil.rmtree(purelib)


@pytest.fixture
def built_layer(tmp_path: Path) -> tuple[str, Path, Path, Path]:
    """A lock of two packages, their hash-checked wheels, our source, and the layer SAM would build."""
    wheels, layer, source = tmp_path / "wheels", tmp_path / "layer", tmp_path / "source"
    for directory in (wheels, layer, source / "geft"):
        directory.mkdir(parents=True)
    (source / "geft/__init__.py").write_text("VERSION = 1\n")
    (source / "requirements.txt").write_text("lock\n")
    _install_like_sam(_wheel(wheels, "demo_lib", "1.0", {"demo_lib/__init__.py": b"A = 1\n"}), layer)
    extra = {"other/__init__.py": b"B = 2\n", "other-2.1.data/purelib/other_extra.py": b"C = 3\n"}
    _install_like_sam(_wheel(wheels, "other", "2.1", extra), layer)
    shutil.copytree(source, layer, dirs_exist_ok=True)
    lock = "demo-lib==1.0 \\\n    --hash=sha256:00\nother==2.1 \\\n    --hash=sha256:11\n"
    return lock, layer, wheels, source


def test_a_layer_built_from_the_lock_matches_it(built_layer: tuple[str, Path, Path, Path]) -> None:
    # GIVEN a layer that holds exactly the locked wheels and our source
    lock, layer, wheels, source = built_layer

    # THEN nothing differs
    assert layer_lock.differences(lock, layer, wheels, source) == []


def test_a_layer_file_that_is_not_the_wheels_is_named(built_layer: tuple[str, Path, Path, Path]) -> None:
    # GIVEN a layer whose file was changed after the wheel's hash was checked
    lock, layer, wheels, source = built_layer
    (layer / "other/__init__.py").write_bytes(b"B = 'tampered'\n")

    # THEN that file is named
    assert layer_lock.differences(lock, layer, wheels, source) == [
        "other/__init__.py: differs from the hash-checked wheel or our source"
    ]


def test_a_layer_with_another_version_or_an_unlocked_package_is_named(
    built_layer: tuple[str, Path, Path, Path],
) -> None:
    # GIVEN a layer holding another version of a locked package and a package nobody locked
    lock, layer, wheels, source = built_layer
    (layer / "other-2.1.dist-info").rename(layer / "other-2.0.dist-info")
    (layer / "stray-0.1.dist-info").mkdir()
    (layer / "stray-0.1.dist-info/METADATA").write_text("Name: stray\n")

    # THEN both are named
    problems = layer_lock.differences(lock, layer, wheels, source)
    assert "other: locked 2.1, layer has 2.0" in problems
    assert "stray: 0.1 in the layer or the wheels, not locked" in problems
    assert "stray-0.1.dist-info/METADATA: in the layer, from no locked wheel and not our source" in problems


def test_a_locked_package_missing_from_the_layer_is_named(built_layer: tuple[str, Path, Path, Path]) -> None:
    # GIVEN a layer built without one locked package
    lock, layer, wheels, source = built_layer
    shutil.rmtree(layer / "demo_lib")
    shutil.rmtree(layer / "demo_lib-1.0.dist-info")

    # THEN the package and its files are named
    problems = layer_lock.differences(lock, layer, wheels, source)
    assert "demo-lib: locked 1.0, layer has nothing" in problems
    assert "demo_lib/__init__.py: missing from the layer" in problems


def test_the_layer_check_fails_when_nothing_was_built(tmp_path: Path) -> None:
    # GIVEN no sam build output
    (tmp_path / "lock.txt").write_text("demo==1.0 \\\n    --hash=sha256:00\n")

    # THEN the check fails rather than comparing nothing with nothing
    args = [str(tmp_path / "lock.txt"), str(tmp_path / "absent"), str(tmp_path)]
    assert layer_lock.main(args) == 1


# ----------------------------------------------------------------- the audit's verdict


def _report(*dependencies: dict[str, Any]) -> dict[str, Any]:
    return {"dependencies": list(dependencies), "fixes": []}


CLEAN = {"name": "boto3", "version": "1.44.5", "vulns": []}
UNREACHED = {"name": "requests", "skip_reason": "Dependency not found on PyPI and could not be audited"}
VULNERABLE = {"name": "urllib3", "version": "2.8.0", "vulns": [{"id": "GHSA-test-0000-0000"}]}


@pytest.mark.parametrize(
    ("report", "in_ci", "exit_code"),
    [
        pytest.param(_report(CLEAN), True, 0, id="all-audited-clean"),
        pytest.param(_report(CLEAN, VULNERABLE), False, 1, id="vulnerable"),
        pytest.param(_report(UNREACHED, UNREACHED), False, 3, id="nothing-audited-locally"),
        pytest.param(_report(UNREACHED, UNREACHED), True, 3, id="nothing-audited-in-ci"),
        pytest.param(_report(CLEAN, UNREACHED), True, 3, id="partly-audited-in-ci"),
        pytest.param(_report(CLEAN, UNREACHED), False, 0, id="partly-audited-locally-warns"),
        pytest.param(_report(), True, 2, id="empty-report"),
    ],
)
def test_the_audit_verdict(
    report: dict[str, Any], in_ci: bool, exit_code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN pip-audit's report is judged
    result = pip_audit_verdict.verdict(report, in_ci=in_ci)

    # THEN the exit code says what was audited, and a gap is never silent
    assert result == exit_code
    err = capsys.readouterr().err
    if any(d.get("skip_reason") for d in report["dependencies"]):
        assert "NOT AUDITED requests" in err
    if any(d.get("vulns") for d in report["dependencies"]):
        assert "VULNERABLE urllib3==2.8.0: GHSA-test-0000-0000" in err


def test_the_audit_verdict_reads_ci_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a report of a partial audit
    report = tmp_path / "pip-audit.json"
    report.write_text(
        '{"dependencies": [{"name": "boto3", "version": "1", "vulns": []},'
        ' {"name": "requests", "skip_reason": "unreachable"}]}'
    )

    # THEN it fails in CI and warns on a developer's machine
    monkeypatch.setenv("CI", "true")
    assert pip_audit_verdict.main([str(report)]) == 3
    monkeypatch.delenv("CI")
    assert pip_audit_verdict.main([str(report)]) == 0


# ----------------------------------------------------------------- commit hooks


def test_the_commit_hooks_run_the_pinned_tools_of_the_venv() -> None:
    # GIVEN the pre-commit configuration
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]

    # THEN every hook is local and runs .venv's tool (no download at commit time, the pinned version)
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    assert {hook["id"] for hook in hooks} == {"ruff-check", "ruff-format", "mypy"}
    for hook in hooks:
        assert hook["language"] == "system"
        assert hook["entry"].startswith(".venv/bin/")


@pytest.fixture
def scratch_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git repository with our hook and tool configuration and this virtualenv as its .venv."""
    repo = tmp_path / "repo"
    (repo / "layers/shared/geft").mkdir(parents=True)
    for name in (".pre-commit-config.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, repo / name)
    (repo / ".venv").symlink_to(Path(sys.prefix))
    (repo / ".gitignore").write_text(".venv\n")
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
    }
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    return repo, env


def _commit(repo: Path, env: dict[str, str], source: str) -> subprocess.CompletedProcess[str]:
    (repo / "layers/shared/geft/answer.py").write_text(textwrap.dedent(source))
    subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
    identity = ["-c", "user.name=Dev", "-c", "user.email=dev@example.invalid"]
    command = ["git", *identity, "commit", "-qm", "answer"]
    # the hooks' findings go to whichever stream git gives them: read both as one
    return subprocess.run(
        command,
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_installed_hooks_refuse_a_commit_that_make_lint_or_typecheck_would_fail(
    scratch_repo: tuple[Path, dict[str, str]],
) -> None:
    # GIVEN the hooks installed as README says
    repo, env = scratch_repo
    subprocess.run([".venv/bin/pre-commit", "install"], cwd=repo, env=env, check=True, capture_output=True)

    # WHEN a module with an unused import, a wrong return type and bad formatting is committed
    refused = _commit(repo, env, "import os\ndef answer()->int:\n    return 'forty-two'\n")

    # THEN the commit is refused, naming each finding
    assert refused.returncode != 0
    assert "F401" in refused.stdout
    assert 'Incompatible return value type (got "str", expected "int")' in refused.stdout
    assert "files were modified by this hook" in refused.stdout
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=env, capture_output=True, check=False)
    assert head.returncode != 0

    # WHEN the module is fixed
    accepted = _commit(repo, env, "def answer() -> int:\n    return 42\n")

    # THEN it is committed
    assert accepted.returncode == 0, accepted.stdout


# ----------------------------------------------------------------- a hang fails fast


def test_every_test_runs_under_the_documented_timeout(request: pytest.FixtureRequest) -> None:
    # GIVEN pyproject's pytest settings
    settings = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]

    # THEN pytest-timeout is active in this very run with that limit
    assert request.config.pluginmanager.hasplugin("timeout")
    assert float(request.config.getini("timeout")) == float(settings["ini_options"]["timeout"]) > 0


def test_a_hanging_test_fails_with_a_timeout_instead_of_hanging(tmp_path: Path) -> None:
    # GIVEN a test that never returns, run by pytest with a 1 s timeout
    (tmp_path / "test_hang.py").write_text("import time\n\ndef test_hang():\n    time.sleep(600)\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\ntimeout = 1\n")

    # WHEN it runs
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # THEN it fails, saying it timed out, and the run ends
    assert result.returncode == 1
    assert "Timeout (>1.0s) from pytest-timeout" in result.stdout
    assert "1 failed" in result.stdout


# ----------------------------------------------------------------- the boto3 stubs


def test_the_boto3_stubs_type_a_client_for_the_integrator(tmp_path: Path) -> None:
    # GIVEN a module that uses a typed DynamoDB client wrongly, as code adopting the stubs would
    module = tmp_path / "typed_client.py"
    module.write_text(
        textwrap.dedent("""\
        from typing import TYPE_CHECKING

        import boto3

        if TYPE_CHECKING:
            from mypy_boto3_dynamodb import DynamoDBClient


        def client() -> "DynamoDBClient":
            return boto3.client("dynamodb")


        def put(table: int) -> None:
            client().put_item(TableName=table, Item={})
        """)
    )

    # WHEN mypy (the pinned one, stubs in view: not our pyproject) checks it
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            os.devnull,
            str(module),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    # THEN boto3.client("dynamodb") is the stubs' DynamoDBClient and the wrong argument type is caught
    assert result.returncode == 1, result.stdout
    assert (
        'Argument "TableName" to "put_item" of "DynamoDBClient" has incompatible type "int"' in result.stdout
    )
    assert result.stdout.count("error:") == 1, result.stdout
