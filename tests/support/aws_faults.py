"""Fail chosen AWS calls of real (moto-backed) botocore clients, through botocore's event system.

``AwsFaults`` hooks ``before-parameter-build`` of every botocore session created while it is
installed (via ``botocore.handlers.BUILTIN_HANDLERS``, where moto hooks in too) and of boto3's default
session, so it reaches the functions' own clients however their composition roots build them. A
planned fault raises ``botocore.exceptions.ClientError`` with the given error code, as the SDK does
once its own retries are exhausted; every call is also recorded, so a test can assert what was (not)
written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_EVENT = "before-parameter-build"


@dataclass
class Fault:
    service: str  # botocore service id, hyphenized: "dynamodb", "secrets-manager"
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


@dataclass
class AwsFaults:
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

    def _on_call(self, *, params: dict[str, Any], model: Any, **_: Any) -> None:
        from botocore.exceptions import ClientError

        if not self.active:
            return
        service = model.service_model.service_id.hyphenize()
        operation = model.name
        fault = self._take(service, operation, params)
        with self._lock:
            self.calls.append(
                Call(service, operation, dict(params), threading.current_thread().name, fault is not None)
            )
        if fault is not None:
            error = {"Code": fault.code, "Message": f"injected by the test ({fault.code})"}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)

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
def aws_faults_installed() -> Iterator[AwsFaults]:
    """Hook every botocore session created from now on (and boto3's default one) until exit."""
    import boto3
    from botocore import handlers

    faults = AwsFaults()
    entry = (_EVENT, faults._on_call)
    handlers.BUILTIN_HANDLERS.append(entry)
    default_session = boto3.DEFAULT_SESSION
    if default_session is not None:
        default_session.events.register(_EVENT, faults._on_call)
    try:
        yield faults
    finally:
        faults.active = False
        handlers.BUILTIN_HANDLERS.remove(entry)
        if default_session is not None:
            default_session.events.unregister(_EVENT, faults._on_call)


def _writes_change(params: Mapping[str, Any], *kinds: str) -> bool:
    """Every repository write records its ChangeKind: the request says which transition it is."""
    values = params.get("ExpressionAttributeValues", {}).values()
    return any(value in [{"S": kind} for kind in kinds] for value in values) or any(
        params.get("Item", {}).get("changeKind") == {"S": kind} for kind in kinds
    )


def is_claim(params: Mapping[str, Any]) -> bool:
    """The processor's claim."""
    return _writes_change(params, "claimed")


def is_finish(params: Mapping[str, Any]) -> bool:
    """The processor's terminal write: CONFIRMED (sent or recovered) or FAILED."""
    return _writes_change(params, "confirmed", "recovered", "failed")


def is_release(params: Mapping[str, Any]) -> bool:
    """A claim given back after a transient failure."""
    return _writes_change(params, "released")
