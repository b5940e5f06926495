from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from geft_local.flinks_sandbox import FlinksSandbox
from geft_local.template_resources import CreatedResources, function_environment, parameter_values

from tests.support.constants import TEST_FLINKS_CREDENTIALS
from tests.support.flinks_calls import CallRecorder
from tests.support.lambda_context import FakeLambdaContext
from tests.support.streams import StreamFeed


@pytest.fixture
def function_env(
    template: dict[str, Any], stack: CreatedResources, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., dict[str, str]]:
    """Apply the environment the template gives a function (Globals + its own), with overrides.

    The processor's token pool is off unless a test turns it on (FLINKS_TOKEN_POOL_SIZE): its
    background authorizes would race the counts tests make of the sandbox's journal.
    """

    def apply(logical_id: str, **overrides: str) -> dict[str, str]:
        environment = function_environment(template, logical_id, stack, parameter_values(template))
        if logical_id == "DecisionProcessorFunction":
            environment["FLINKS_TOKEN_POOL_SIZE"] = "0"
        environment.update(overrides)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return environment

    return apply


@pytest.fixture
def invoke_receiver(function_env: Callable[..., dict[str, str]]) -> Iterator[Callable[..., dict[str, Any]]]:
    from webhook_receiver import handler

    function_env("WebhookReceiverFunction")
    handler._dependencies.cache_clear()

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = handler.lambda_handler(event, FakeLambdaContext())
        return response

    yield invoke
    handler._dependencies.cache_clear()


@pytest.fixture
def table_items(aws: Any, stack: CreatedResources) -> Callable[[], list[dict[str, Any]]]:
    """Every item of the guarantees table, deserialized."""
    from boto3.dynamodb.types import TypeDeserializer

    client = aws.client("dynamodb")
    deserializer = TypeDeserializer()

    def scan() -> list[dict[str, Any]]:
        items = client.scan(TableName=stack.ref("GuaranteesTable"), ConsistentRead=True)["Items"]
        return [{key: deserializer.deserialize(value) for key, value in item.items()} for item in items]

    return scan


@pytest.fixture
def sandbox() -> Iterator[FlinksSandbox]:
    with FlinksSandbox(
        username=TEST_FLINKS_CREDENTIALS["username"],
        password=TEST_FLINKS_CREDENTIALS["password"],
        hang_s=4.0,  # well past the read timeout below, so a "timeout" fault is never mistaken
    ) as running:
        yield running


@pytest.fixture
def recorder() -> CallRecorder:
    """An ``on_call`` observer for the FlinksClients a test builds."""
    return CallRecorder()


@pytest.fixture
def feed(aws: Any, stack: CreatedResources, template: dict[str, Any]) -> StreamFeed:
    return StreamFeed(aws, stack, template)


@pytest.fixture
def invoke_processor(
    function_env: Callable[..., dict[str, str]], sandbox: FlinksSandbox
) -> Iterator[Callable[..., dict[str, Any]]]:
    from decision_processor import handler

    function_env(
        "DecisionProcessorFunction",
        FLINKS_BASE_URL=sandbox.base_url,
        HTTP_CONNECT_TIMEOUT_SECONDS="1.0",
        HTTP_READ_TIMEOUT_SECONDS="1.5",  # a loaded CI machine must not time out a normal answer
        CONFIRM_SETTLE_SECONDS="3",  # twice the read timeout, as the template's default is twice its own
        FINISH_RESERVE_SECONDS="0.5",
    )
    handler._dependencies.cache_clear()

    def invoke(event: dict[str, Any], *, timeout_seconds: float = 20.0) -> dict[str, Any]:
        # A container builds its clients before the first deadline matters; built here, a loaded
        # machine's slow first build cannot eat a test's short invocation budget.
        handler._dependencies()
        response: dict[str, Any] = handler.lambda_handler(
            event, FakeLambdaContext(timeout_seconds=timeout_seconds)
        )
        return response

    yield invoke
    handler._dependencies.cache_clear()
