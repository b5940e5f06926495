"""The integration tier's fixtures: template.yaml deployed in moto once for the tier, put back to that
deployment before every test (``testkit.reset``), both functions in-process, the Flinks sandbox."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from moto import mock_aws

from testkit.flinks import FlinksSandbox
from testkit.inprocess import PROCESSOR, RECEIVER, InProcessStack
from testkit.reset import MotoSnapshot
from testkit.streams import StreamFeed
from tests.support.constants import TEST_FLINKS_CREDENTIALS, TEST_WEBHOOK_SECRET
from tests.support.flinks_calls import CallRecorder
from tests.support.pipeline import Cli, Invoke, Pipeline

# The processor's timeouts here: the shortest that a loaded CI machine cannot mistake a normal answer
# for (read 1 s, as tests/integration/test_flinks_client.py chose; a normal answer takes milliseconds);
# the settle delay twice the read timeout, as the template's default is twice its own. Every wait a
# fault makes a test sit through (a read timeout, a settle) is one of these.
PROCESSOR_TIMEOUTS = {
    "HTTP_CONNECT_TIMEOUT_SECONDS": "1.0",
    "HTTP_READ_TIMEOUT_SECONDS": "1.0",
    "CONFIRM_SETTLE_SECONDS": "2",
    "FINISH_RESERVE_SECONDS": "0.5",
}


@pytest.fixture(scope="package")
def moto_deployment(
    _boto3_session: Any, template: dict[str, Any]
) -> Iterator[tuple[InProcessStack, MotoSnapshot]]:
    """template.yaml deployed in moto (its tables, queues, topics and secrets) once for the tier, and
    moto's state right after; moto stops with the tier, before e2e's local stacks or unit tests run."""
    with mock_aws():
        deployed = InProcessStack(
            _boto3_session,
            template=template,
            webhook_secret=TEST_WEBHOOK_SECRET,
            flinks_username=TEST_FLINKS_CREDENTIALS["username"],
            flinks_password=TEST_FLINKS_CREDENTIALS["password"],
        )
        yield deployed, MotoSnapshot.take()


@pytest.fixture
def aws(moto_deployment: tuple[InProcessStack, MotoSnapshot], _boto3_session: Any) -> Any:
    """moto exactly as the deployment left it (nothing an earlier test did is visible), and the session
    the test's own clients come from."""
    moto_deployment[1].restore()
    return _boto3_session


@pytest.fixture
def stack(aws: Any, moto_deployment: tuple[InProcessStack, MotoSnapshot]) -> InProcessStack:
    """template.yaml deployed in moto, both functions in-process."""
    return moto_deployment[0]


@pytest.fixture
def function_env(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, str]]:
    """Apply the environment the template gives a function (Globals + its own), with overrides.

    The processor's token pool is off unless a test turns it on (FLINKS_TOKEN_POOL_SIZE): its
    background authorizes would race the counts tests make of the sandbox's journal.
    """

    def apply(logical_id: str, **overrides: str) -> dict[str, str]:
        pool = {"FLINKS_TOKEN_POOL_SIZE": "0"} if logical_id == PROCESSOR else {}
        environment = stack.environment(logical_id, **{**pool, **overrides})
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return environment

    return apply


@pytest.fixture
def invoke_receiver(stack: InProcessStack, function_env: Callable[..., dict[str, str]]) -> Iterator[Invoke]:
    function_env(RECEIVER)
    stack.receiver._dependencies.cache_clear()
    yield stack.invoke_receiver
    stack.receiver._dependencies.cache_clear()


@pytest.fixture
def table_items(stack: InProcessStack) -> Callable[[], list[dict[str, Any]]]:
    """Every item of the guarantees table, deserialized."""
    return stack.items


@pytest.fixture
def sandbox() -> Iterator[FlinksSandbox]:
    with FlinksSandbox(
        username=TEST_FLINKS_CREDENTIALS["username"],
        password=TEST_FLINKS_CREDENTIALS["password"],
        hang_s=4.0,  # well past the read timeout, so a "timeout" fault is never mistaken
    ) as running:
        yield running


@pytest.fixture
def recorder() -> CallRecorder:
    """An ``on_call`` observer for the FlinksClients a test builds."""
    return CallRecorder()


@pytest.fixture
def feed(stack: InProcessStack) -> StreamFeed:
    return stack.feed()


@pytest.fixture
def configure_processor(
    stack: InProcessStack, function_env: Callable[..., dict[str, str]], sandbox: FlinksSandbox
) -> Iterator[Callable[..., Invoke]]:
    """A new processor container with these environment overrides (on the test timeouts, pointed at
    the sandbox); returns its invoke."""

    def configure(**overrides: str) -> Invoke:
        function_env(PROCESSOR, **{"FLINKS_BASE_URL": sandbox.base_url, **PROCESSOR_TIMEOUTS, **overrides})
        stack.processor._dependencies.cache_clear()
        return functools.partial(stack.invoke_processor, timeout_seconds=20.0)

    yield configure
    stack.processor._dependencies.cache_clear()


@pytest.fixture
def processor_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The processor's environment overrides for a module: its ``PROCESSOR_ENV`` (a policy of its own)."""
    return dict(getattr(request.module, "PROCESSOR_ENV", {}))


@pytest.fixture
def invoke_processor(configure_processor: Callable[..., Invoke], processor_env: dict[str, str]) -> Invoke:
    return configure_processor(**processor_env)


@pytest.fixture
def pipeline(
    sandbox: FlinksSandbox,
    stack: InProcessStack,
    feed: StreamFeed,
    invoke_receiver: Invoke,
    invoke_processor: Invoke,
) -> Pipeline:
    return Pipeline(sandbox, stack, feed, invoke_receiver, invoke_processor)


@pytest.fixture
def scheduled(
    function_env: Callable[..., dict[str, str]], sandbox: FlinksSandbox
) -> Iterator[Callable[..., Any]]:
    """``scheduled(module, logical_id, **env)``: a scheduled job's composition root (``_dependencies()``),
    built in the environment the template gives the function (Flinks: the sandbox), plus overrides."""
    built: list[ModuleType] = []

    def build(module: ModuleType, logical_id: str, **overrides: str) -> Any:
        function_env(logical_id, **{"FLINKS_BASE_URL": sandbox.base_url, **overrides})
        module._dependencies.cache_clear()
        built.append(module)
        return module._dependencies()

    yield build
    for module in built:
        module._dependencies.cache_clear()


@pytest.fixture
def cli(stack: InProcessStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """The operator CLI against this test's moto stack, through a local-stack state file."""
    return Cli.for_stack(stack, tmp_path, capsys)
