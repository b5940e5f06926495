"""AWS as tests, benchmarks and the local stack see it: fake credentials, moto's conditional writes made
atomic, and every call of every botocore client recorded, counted and, on request, failed.

``use_fake_aws`` sets fake credentials and a fixed region and drops whatever could point boto3 at a real
account; call it before boto3 loads. ``make_conditional_writes_atomic``: moto evaluates a
ConditionExpression and applies the write in separate steps without a lock, so two threads could both
pass ``attribute_not_exists`` or a claim's status check; DynamoDB never allows that and our
exactly-once design relies on it, so without the patch tests and the local stack would see double
claims that production cannot have. moto also applies an update attribute by attribute, so a read in
between saw half of it (a guarantee CONFIRMED without its decision); DynamoDB writes an item
atomically, so reads take the same lock.

``aws_calls_recorded()`` hooks ``before-parameter-build`` of every botocore session created while it is
installed (via ``botocore.handlers.BUILTIN_HANDLERS``, where moto hooks in too) and of boto3's default
session, so it reaches the functions' own clients however their composition roots build them. The hook
runs once per API call, before the SDK's own retries. A planned fault raises
``botocore.exceptions.ClientError`` with the given error code, as the SDK does once its retries are
exhausted.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from geft.models import ChangeKind

FAKE_AWS_ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    # botocore >= 1.44 sends stream calls to an account-scoped host that moto does not serve
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READ_OPERATIONS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
_EVENT = "before-parameter-build"
_MOTO_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_MOTO_READS = ("get_item", "query", "scan", "batch_get_item", "transact_get_items")
_moto_lock = threading.RLock()


def use_fake_aws(environ: MutableMapping[str, str] = os.environ) -> None:
    """Fake credentials and a fixed region; no profile, endpoint or config file of the developer's (an
    empty AWS_PROFILE, as make's TEST_ENV sets it, would break boto3 sessions)."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        environ.pop(name, None)
    environ.update(FAKE_AWS_ENVIRONMENT)


def make_conditional_writes_atomic() -> None:
    """Serialize moto's DynamoDB writes, and reads with them (idempotent; process-wide)."""
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415

    if getattr(DynamoDBBackend, "_writes_are_atomic", False):
        return
    for name in (*_MOTO_WRITES, *_MOTO_READS):
        original = getattr(DynamoDBBackend, name, None)
        if original is not None:
            setattr(DynamoDBBackend, name, _serialized(original))
    DynamoDBBackend._writes_are_atomic = True  # type: ignore[attr-defined]


def _serialized(operation: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _moto_lock:
            return operation(*args, **kwargs)

    return locked


# -- calls ------------------------------------------------------------------------------------------------


@dataclass
class Fault:
    service: str  # botocore's service name, as boto3.client takes it: "dynamodb", "secretsmanager"
    operation: str  # "UpdateItem", "GetSecretValue", ...
    code: str
    remaining: int
    when: Callable[[Mapping[str, Any]], bool] | None = None
    injected: int = 0


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    thread: str
    failed: bool

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"


@dataclass
class AwsCalls:
    calls: list[Call] = field(default_factory=list)
    active: bool = True  # clients created while installed keep the hook: it goes quiet on exit
    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(
        self,
        service: str,
        operation: str,
        *,
        times: int = 1,
        code: str = "ProvisionedThroughputExceededException",
        when: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> Fault:
        """The next ``times`` calls of ``operation`` (those ``when`` accepts) raise ``code``."""
        fault = Fault(service, operation, code, times, when)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.calls.clear()

    def writes(self) -> list[Call]:
        """DynamoDB write calls that reached the table (injected failures excluded)."""
        with self._lock:
            return [
                call
                for call in self.calls
                if call.service == "dynamodb" and call.operation in WRITE_OPERATIONS and not call.failed
            ]

    @contextmanager
    def counting(self) -> Iterator[Counter[str]]:
        """Yields a Counter filled, on exit, with the calls made inside the block (``service:Operation``)."""
        with self._lock:
            start = len(self.calls)
        block: Counter[str] = Counter()
        try:
            yield block
        finally:
            with self._lock:
                block.update(call.name for call in self.calls[start:])

    def _on_call(self, *, params: dict[str, Any], model: Any, **_: Any) -> None:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        if not self.active:
            return
        service, operation = model.service_model.service_name, model.name
        fault = self._take(service, operation, params)
        with self._lock:
            self.calls.append(
                Call(service, operation, dict(params), threading.current_thread().name, fault is not None)
            )
        if fault is not None:
            error = {"Code": fault.code, "Message": f"injected by the test ({fault.code})"}
            response: Any = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
            raise ClientError(response, operation)

    def _take(self, service: str, operation: str, params: Mapping[str, Any]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (
                    fault.remaining > 0
                    and (fault.service, fault.operation) == (service, operation)
                    and (fault.when is None or fault.when(params))
                ):
                    fault.remaining -= 1
                    fault.injected += 1
                    return fault
        return None


@contextmanager
def aws_calls_recorded() -> Iterator[AwsCalls]:
    """Hook every botocore session created from now on (and boto3's default one) until exit."""
    import boto3  # noqa: PLC0415
    from botocore import handlers  # noqa: PLC0415

    calls = AwsCalls()
    entry = (_EVENT, calls._on_call)
    handlers.BUILTIN_HANDLERS.append(entry)
    default_session = boto3.DEFAULT_SESSION
    if default_session is not None:
        default_session.events.register(_EVENT, calls._on_call)
    try:
        yield calls
    finally:
        calls.active = False
        handlers.BUILTIN_HANDLERS.remove(entry)
        if default_session is not None:
            default_session.events.unregister(_EVENT, calls._on_call)


def _writes_change(params: Mapping[str, Any], *kinds: ChangeKind) -> bool:
    """Every repository write records its ChangeKind: the request's values say which transition it is."""
    values = [*params.get("ExpressionAttributeValues", {}).values(), *params.get("Item", {}).values()]
    return any({"S": kind.value} in values for kind in kinds)


def is_claim(params: Mapping[str, Any]) -> bool:
    """The processor's claim."""
    return _writes_change(params, ChangeKind.CLAIMED)


def is_finish(params: Mapping[str, Any]) -> bool:
    """The processor's terminal write: CONFIRMED (sent or recovered) or FAILED."""
    return _writes_change(params, ChangeKind.CONFIRMED, ChangeKind.RECOVERED, ChangeKind.FAILED)


def is_release(params: Mapping[str, Any]) -> bool:
    """A claim given back after a transient failure."""
    return _writes_change(params, ChangeKind.RELEASED)
