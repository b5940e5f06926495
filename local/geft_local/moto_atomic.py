"""Make moto's DynamoDB conditional writes atomic, as DynamoDB's are, and its reads see whole writes.

moto evaluates a ConditionExpression and applies the write in separate steps without a lock, so two
threads can both pass ``attribute_not_exists`` or a claim's status check. Real DynamoDB never
allows that, and our exactly-once design relies on it; without this patch, tests and the local
stack would see double claims that production cannot have. moto also applies an update attribute by
attribute, so a read in between saw half of it (a guarantee CONFIRMED without its decision); DynamoDB
writes an item atomically, so reads take the same lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_WRITE_OPERATIONS = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_READ_OPERATIONS = ("get_item", "query", "scan", "batch_get_item", "transact_get_items")
_lock = threading.RLock()


def make_conditional_writes_atomic() -> None:
    """Serialize moto's DynamoDB writes, and reads with them (idempotent; process-wide)."""
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415

    if getattr(DynamoDBBackend, "_writes_are_atomic", False):
        return
    for name in (*_WRITE_OPERATIONS, *_READ_OPERATIONS):
        original = getattr(DynamoDBBackend, name, None)
        if original is not None:
            setattr(DynamoDBBackend, name, _serialized(original))
    DynamoDBBackend._writes_are_atomic = True  # type: ignore[attr-defined]


def _serialized(operation: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return operation(*args, **kwargs)

    return locked
