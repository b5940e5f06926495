"""``make contract`` against the Flinks sandbox on 127.0.0.1: authorize, /status and /details only, never
a confirm (even when asked for one), and a verdict from what the code reads: exit 0 when the answers
give the code what it needs, 1 when a needed field is missing, null, of another type or undocumented,
or Flinks could not be asked, 2 on bad usage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from geft.errors import FlinksPermanentError
from geft.flinks_client import FlinksClient, FlinksCredentials
from geft_checks import contract

from testkit.flinks import FlinksSandbox, Scenario
from tests.support.commands import documented_line, run_documented
from tests.support.constants import TEST_FLINKS_CREDENTIALS


@pytest.fixture
def flinks_env(sandbox: FlinksSandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The variables README documents, pointed at the sandbox."""
    environment = {
        "FLINKS_BASE_URL": sandbox.base_url,
        "FLINKS_USERNAME": TEST_FLINKS_CREDENTIALS["username"],
        "FLINKS_PASSWORD": TEST_FLINKS_CREDENTIALS["password"],
    }
    for name in ("FLINKS_CLIENT_ID", "FLINKS_API_KEY", "FLINKS_CREDENTIAL_TRANSPORT", "FLINKS_TRUST_ENV"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


def _endpoints(sandbox: FlinksSandbox, session_id: str) -> list[str]:
    """What reached the sandbox: authorize (no session) and this session's calls, in order."""
    return [entry.endpoint for entry in sandbox.calls() if entry.session_id in (None, session_id)]


def _run(session_id: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = contract.main(["--session", session_id, *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


LOCAL_CONTRACT = (
    "FLINKS_BASE_URL=$SANDBOX FLINKS_USERNAME=sandbox-user FLINKS_PASSWORD=sandbox-pass make contract"
)


@pytest.fixture
def local_sandbox() -> Iterator[FlinksSandbox]:
    """The sandbox as make local starts it: its default credentials, which the docs show."""
    with FlinksSandbox() as running:
        yield running


def test_make_contract_as_documented_reads_and_never_confirms(local_sandbox: FlinksSandbox) -> None:
    # GIVEN a session that reached the guarantee offer, and the line README and operations.md show
    sandbox = local_sandbox
    session_id = sandbox.add_session(scenario=Scenario.preset("accept"))
    line = documented_line("README.md", "FLINKS_BASE_URL=$SANDBOX")
    assert line == documented_line("docs/operations.md", "FLINKS_BASE_URL=$SANDBOX")
    assert line.startswith(LOCAL_CONTRACT)

    # WHEN it runs as written, with SANDBOX and sid as README sets them
    completed = run_documented(
        ["bash", "-c", line], environment={"SANDBOX": sandbox.base_url, "sid": session_id}
    )

    # THEN it matched, having called authorize, /status and /details and nothing else
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "result: the answers give the code what it needs" in completed.stdout
    assert _endpoints(sandbox, session_id) == ["authorize", "status", "details"]
    assert sandbox.confirms_for(session_id) == []
    assert sandbox.calls("/guarantees/confirm") == []
    # AND it printed the shapes: each read field with the type the code reads and the type sent
    assert "guaranteeDetails.overallRiskLevel" in completed.stdout
    assert "shape sent: {" in completed.stdout
    # AND no secret or personal value
    for secret in ("sandbox-pass", "Topinambour", "XXXXX1234", "payor@example.com"):
        assert secret not in completed.stdout + completed.stderr


def test_a_different_shape_exits_1_naming_what_is_missing(
    sandbox: FlinksSandbox, flinks_env: dict[str, str]
) -> None:
    # GIVEN a session answered in the older /details shape (no risk levels, no balance)
    session_id = sandbox.add_session(scenario=Scenario(legacy_details_shape=True))

    # WHEN the command itself runs (bin/geft-check keeps the exit code make turns into 2)
    completed = run_documented(
        ["bin/geft-check", "contract", "--session", session_id], environment=flinks_env
    )

    # THEN exit 1: the default policy reads overallRiskLevel, which is missing
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "/details guaranteeDetails.overallRiskLevel: missing" in completed.stdout
    # AND what the older shape does carry is still read (guaranteeOffered from guarantee.status)
    assert "read from another shape: guarantee.coverage, guarantee.status" in completed.stdout
    assert sandbox.confirms_for(session_id) == []
    # AND through make the check fails too
    through_make = run_documented(["make", "contract", f"SESSION={session_id}"], environment=flinks_env)
    assert through_make.returncode != 0


@pytest.mark.parametrize(
    ("patch", "reported"),
    [
        (
            {"guaranteeDetails": {"guaranteeOffered": "true"}},
            "guaranteeOffered: sent as string, the code reads boolean",
        ),
        ({"guaranteeDetails": {"overallRiskLevel": None}}, "overallRiskLevel: missing"),
        ({"guaranteeDetails": {"highestDebitAmountToGuarantee": None}}, "shortfall: unknown"),
        ({"guaranteeDetails": {"guaranteeAccepted": "no"}}, "guaranteeAccepted: sent as string"),
        ({"payor": {"account": {"availableBalance": [1]}}}, "availableBalance: sent as array"),
    ],
)
def test_a_field_the_code_needs_missing_or_retyped_exits_1(
    sandbox: FlinksSandbox,
    flinks_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    patch: dict[str, Any],
    reported: str,
) -> None:
    session_id = sandbox.add_session(scenario=Scenario(details_patch=patch))
    code, output = _run(session_id, capsys)
    assert code == 1, output
    assert reported in output
    assert sandbox.confirms_for(session_id) == []


def test_an_undocumented_risk_level_is_unknown_to_the_policy(
    sandbox: FlinksSandbox, flinks_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    session_id = sandbox.add_session(scenario=Scenario(overall_risk_level="HIGH"))
    code, output = _run(session_id, capsys)
    assert code == 1, output
    assert "'HIGH' (not High/Low/Medium/Unknown): the policy treats it as unknown" in output


def test_differences_nothing_needs_still_exit_0(
    sandbox: FlinksSandbox, flinks_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an answer without currency (no rule of the default policy reads it) and the amount as a
    # numeral string (which the code reads as a number all the same)
    scenario = Scenario(
        details_patch={"currency": None, "amount": "250.00"}, status_patch={"statusDetails": None}
    )
    session_id = sandbox.add_session(scenario=scenario)

    # WHEN checked
    code, output = _run(session_id, capsys)

    # THEN the shapes meet what the code needs, the differences are listed
    assert code == 0, output
    assert "/details currency missing" in output
    assert "/details amount ok, converted" in output


def test_the_policy_in_use_decides_what_is_needed(
    sandbox: FlinksSandbox,
    flinks_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    # GIVEN a policy that reads currency, and an answer without it
    policy = tmp_path / "policy.json"
    policy.write_text(
        '{"default": "accept", "rules": [{"name": "cad-only", "when": {"currency": {"ne": "CAD"}},'
        ' "decision": "reject"}]}'
    )
    session_id = sandbox.add_session(scenario=Scenario(details_patch={"currency": None}))

    # WHEN checked against that policy
    code, output = _run(session_id, capsys, "--policy", str(policy))

    # THEN the missing currency fails the check
    assert code == 1, output
    assert "/details currency: missing" in output


@pytest.mark.parametrize(
    ("scenario", "reported"),
    [
        (Scenario(faults={"details": ["malformed"] * 8}), "without a JSON object body"),
        (Scenario(registered=False), "session not found (404"),
    ],
)
def test_flinks_that_cannot_be_asked_exits_1(
    sandbox: FlinksSandbox,
    flinks_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    scenario: Scenario,
    reported: str,
) -> None:
    from geft.flinks_client import FlinksClient

    # the client's backoff between its attempts is recorded, not waited (3 s for five malformed answers)
    backoffs: list[float] = []
    real_init = FlinksClient.__init__

    def init(self: FlinksClient, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **{"sleep": backoffs.append, **kwargs})

    monkeypatch.setattr(FlinksClient, "__init__", init)
    session_id = sandbox.add_session(scenario=scenario)
    code, output = _run(session_id, capsys)
    assert code == 1, output
    assert reported in output


def test_refused_credentials_exit_1_without_the_password(
    sandbox: FlinksSandbox, flinks_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.setenv("FLINKS_PASSWORD", "not-the-password")
    code, output = _run(sandbox.add_session(), capsys)
    assert code == 1, output
    assert "authorize" in output
    assert "not-the-password" not in output


@pytest.mark.parametrize(
    ("unset", "session", "reported"),
    [
        ("FLINKS_PASSWORD", None, "FLINKS_PASSWORD is required"),
        ("FLINKS_BASE_URL", None, "FLINKS_BASE_URL is required"),
        (None, "not-a-session", "is not a session id"),
        (None, "", "is not a session id"),
    ],
)
def test_bad_usage_exits_2_and_asks_nothing(
    sandbox: FlinksSandbox,
    flinks_env: dict[str, str],
    unset: str | None,
    session: str | None,
    reported: str,
) -> None:
    environment = {name: value for name, value in flinks_env.items() if name != unset}
    completed = run_documented(
        [
            "bin/geft-check",
            "contract",
            "--session",
            session if session is not None else sandbox.add_session(),
        ],
        environment=environment,
    )
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert reported in completed.stderr
    assert sandbox.calls() == []


def test_a_read_only_client_cannot_send_a_confirm(sandbox: FlinksSandbox) -> None:
    # GIVEN the contract's kind of client, and a session waiting for a decision
    session_id = sandbox.add_session()
    credentials = FlinksCredentials(TEST_FLINKS_CREDENTIALS["username"], TEST_FLINKS_CREDENTIALS["password"])
    client = FlinksClient(sandbox.base_url, lambda: credentials, read_only=True)
    try:
        calls = client.for_session(session_id, deadline=time.monotonic() + 10)

        # WHEN anything asks it to confirm
        with pytest.raises(FlinksPermanentError, match="read-only client; nothing was sent"):
            calls.confirm(True)

        # THEN nothing reached Flinks, and reads still work
        assert sandbox.calls() == []
        assert calls.details()["guaranteeDetails"]["highestDebitAmountToGuarantee"] == Decimal("250.00")
    finally:
        client.close()
    assert sandbox.confirms_for(session_id) == []
    assert [entry.endpoint for entry in sandbox.calls()] == ["authorize", "details"]
