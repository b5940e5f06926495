"""Both functions in this process, fed as Lambda feeds them: the integration tests' stack and the
benchmarks'.

``InProcessStack`` deploys template.yaml (``testkit.template.Deployment``: the same reading of the
template the local stack makes) through a boto3 session pointed at moto, builds stream batches from
moto's own records through the template's FilterCriteria (``StreamFeed``), and invokes the handlers
with a Lambda context. What a function's environment is applied to (``os.environ``, a pytest
monkeypatch) is the caller's choice: ``environment`` only says what it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from testkit.lambda_context import LambdaContext
from testkit.streams import StreamFeed
from testkit.template import Deployment, load_template
from testkit.webhooks import guarantee_body, status_body, webhook_event

RECEIVER = "WebhookReceiverFunction"
PROCESSOR = "DecisionProcessorFunction"


class InProcessStack:
    def __init__(
        self,
        session: Any,
        *,
        webhook_secret: str,
        flinks_username: str,
        flinks_password: str,
        stack_name: str = "geft-local",
        template: Mapping[str, Any] | None = None,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.session = session
        self.webhook_secret = webhook_secret
        raw = template if template is not None else load_template()
        self.deployment = Deployment.of(raw, parameters, stack_name=stack_name)
        self.deployment.create(
            session,
            webhook_secret=webhook_secret,
            flinks_username=flinks_username,
            flinks_password=flinks_password,
        )

    def ref(self, logical_id: str) -> str:
        return self.deployment.created.ref(logical_id)

    def get_att(self, logical_id: str, attribute: str) -> str:
        return self.deployment.created.get_att(logical_id, attribute)

    def environment(self, logical_id: str, **overrides: str) -> dict[str, str]:
        """The template's environment for the function (Globals, its own), resolved, then ``overrides``."""
        return self.deployment.environment(logical_id, **overrides)

    def feed(self) -> StreamFeed:
        """The processor's stream, from its start, through the template's FilterCriteria."""
        return StreamFeed.of(self.session, self.deployment)

    # -- the functions ------------------------------------------------------------------------------

    @property
    def receiver(self) -> ModuleType:
        from webhook_receiver import handler  # noqa: PLC0415 - imported once the environment is set

        return handler

    @property
    def processor(self) -> ModuleType:
        from decision_processor import handler  # noqa: PLC0415 - imported once the environment is set

        return handler

    def cold_containers(self) -> None:
        """Forget both composition roots: the next invokes build clients and read secrets again."""
        self.receiver._dependencies.cache_clear()
        self.processor._dependencies.cache_clear()

    def webhook(
        self, session_id: str | None = None, *, status: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A signed API Gateway event: the session's guarantee, or with ``status`` its final-status event."""
        if status is not None:
            assert session_id is not None
            return webhook_event(status_body(session_id, status), secret=self.webhook_secret)
        return webhook_event(guarantee_body(session_id, **fields), secret=self.webhook_secret)

    def invoke_receiver(self, event: dict[str, Any], *, timeout_seconds: float = 6.0) -> dict[str, Any]:
        response: dict[str, Any] = self.receiver.lambda_handler(event, LambdaContext(timeout_seconds))
        return response

    def invoke_processor(self, event: dict[str, Any], *, timeout_seconds: float = 60.0) -> dict[str, Any]:
        # A container builds its clients before the first deadline matters; built here, a loaded
        # machine's slow first build cannot eat a test's short invocation budget.
        self.processor._dependencies()
        response: dict[str, Any] = self.processor.lambda_handler(event, LambdaContext(timeout_seconds))
        return response

    # -- the table ----------------------------------------------------------------------------------

    def raw_items(self, table: str = "GuaranteesTable") -> list[dict[str, Any]]:
        client = self.session.client("dynamodb")
        items: list[dict[str, Any]] = client.scan(TableName=self.ref(table), ConsistentRead=True)["Items"]
        return items

    def items(self, table: str = "GuaranteesTable") -> list[dict[str, Any]]:
        """Every item of the table, deserialized."""
        from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415

        deserializer = TypeDeserializer()
        return [
            {name: deserializer.deserialize(value) for name, value in item.items()}
            for item in self.raw_items(table)
        ]
