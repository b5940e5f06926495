"""The audit trail: one immutable history record per write to the guarantees table.

The audit trail function reads the table's stream (every write is a stream record carrying the item's
new image, and every write says what it did, who did it, when and from which status) and puts each as a
history record, conditionally, keyed by the stream record's id: a retried batch writes nothing twice,
and no function may update or delete a history record (its role may only put). History has its own
retention (``AuditRetentionDays``), independent of the items' TTL.

Keys: ``pk`` is the session id (``QUARANTINE`` for quarantined bodies); ``sk`` is the record's own
key in the guarantees table, then the change's time and the stream record's id, so a Query on a session
returns each guarantee's history in order. Stdlib only, like items.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from geft.items import Attr, Item, constant_values, n, plain, s


class HistoryAttr:
    """The history table's attribute names, one constant each (its own: some are spelt like the
    guarantees table's, whose names are ``geft.items.Attr``)."""

    PK = "pk"
    SK = "sk"
    RECORD_KEY = "recordKey"
    CHANGE_KIND = "changeKind"
    CHANGED_BY = "changedBy"
    CHANGED_BY_NOTE = "changedByNote"
    CHANGED_AT_MS = "changedAtMs"
    CHANGE_REASON = "changeReason"
    STATUS = "status"
    PREVIOUS_STATUS = "previousStatus"
    STREAM_EVENT_ID = "streamEventId"
    IMAGE = "image"
    EXPIRES_AT = "expiresAt"


HISTORY_ATTRIBUTES: Final = constant_values(HistoryAttr)
# A history record is put only if it is not there yet: a retried batch writes nothing twice.
HISTORY_PUT_CONDITION: Final = f"attribute_not_exists({HistoryAttr.PK})"
_MS_PER_DAY = 86_400_000
# Kept out of the history image: the raw body is evidence only where it arrived (a RECEIVED record), and
# the quarantine record's bytes stay in the quarantine item.
_BULKY = (Attr.RAW_BODY, Attr.RAW_BODY_BYTES, Attr.STATUS_RAW_BODY)
_BODY_CHANGES = frozenset({"received", "stored-from-quarantine"})


@dataclass(frozen=True)
class HistoryRecord:
    session_id: str
    record_key: str  # the guarantees table's sk: GUARANTEE#<key>, SESSION, or a quarantine digest
    change: str  # a geft.models.ChangeKind value, or "expired" for a TTL deletion
    by: str | None
    by_note: str | None
    at_ms: int
    reason: str | None
    status: str | None
    previous_status: str | None
    stream_event_id: str
    image: dict[str, Any]  # the item after the change (plain values), bulky bodies left out

    @property
    def guarantee_key(self) -> str | None:
        return (
            self.record_key.removeprefix("GUARANTEE#") if self.record_key.startswith("GUARANTEE#") else None
        )


def history_from_stream(
    event_id: str,
    event_name: str,
    keys: Mapping[str, Any],
    new_image: Mapping[str, Any] | None,
    approximate_ms: int,
) -> HistoryRecord | None:
    """The history record of one stream record (its new image plain or low-level); None when the write
    predates the change attributes (nothing to say who or why)."""
    key_values = plain(keys)
    session_id, record_key = str(key_values.get(Attr.PK, "")), str(key_values.get(Attr.SK, ""))
    if event_name == "REMOVE" or not new_image:
        return HistoryRecord(
            session_id,
            record_key,
            "expired",
            "dynamodb:ttl",
            None,
            approximate_ms,
            "retention ended: the item was deleted",
            None,
            None,
            event_id,
            {},
        )
    image = plain(new_image)
    change = image.get(Attr.CHANGE_KIND)
    if not isinstance(change, str):
        return None
    kept = {name: value for name, value in image.items() if name not in _BULKY}
    if change in _BODY_CHANGES and isinstance(image.get(Attr.RAW_BODY), str):
        kept[Attr.RAW_BODY] = image[Attr.RAW_BODY]
    at = image.get(Attr.CHANGED_AT_MS)
    return HistoryRecord(
        session_id=session_id,
        record_key=record_key,
        change=change,
        by=_text(image.get(Attr.CHANGED_BY)),
        by_note=_text(image.get(Attr.CHANGED_BY_NOTE)),
        at_ms=int(at) if isinstance(at, int | Decimal) else approximate_ms,
        reason=_text(image.get(Attr.CHANGE_REASON)),
        status=_text(image.get(Attr.STATUS)) or _text(image.get(Attr.FINAL_STATUS)),
        previous_status=_text(image.get(Attr.PREVIOUS_STATUS)),
        stream_event_id=event_id,
        image=kept,
    )


def history_item(record: HistoryRecord, *, retention_days: int) -> Item:
    item: Item = {
        HistoryAttr.PK: s(record.session_id or "UNKNOWN"),
        HistoryAttr.SK: s(f"{record.record_key}#{record.at_ms:013d}#{record.stream_event_id}"),
        HistoryAttr.RECORD_KEY: s(record.record_key),
        HistoryAttr.CHANGE_KIND: s(record.change),
        HistoryAttr.CHANGED_AT_MS: n(record.at_ms),
        HistoryAttr.STREAM_EVENT_ID: s(record.stream_event_id),
        HistoryAttr.IMAGE: s(json.dumps(record.image, default=_json_default, sort_keys=True)),
        HistoryAttr.EXPIRES_AT: n((record.at_ms + retention_days * _MS_PER_DAY) // 1000),
    }
    optional = {
        HistoryAttr.CHANGED_BY: record.by,
        HistoryAttr.CHANGED_BY_NOTE: record.by_note,
        HistoryAttr.CHANGE_REASON: record.reason,
        HistoryAttr.STATUS: record.status,
        HistoryAttr.PREVIOUS_STATUS: record.previous_status,
    }
    item.update({name: s(value) for name, value in optional.items() if value is not None})
    return item


def session_history(client: Any, table_name: str, session_id: str) -> list[HistoryRecord]:
    """Every history record of one session (its guarantees, its status record), oldest first: one
    paginated, consistent query of the audit table by its partition key."""
    request: dict[str, Any] = {
        "TableName": table_name,
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": HistoryAttr.PK},
        "ExpressionAttributeValues": {":pk": s(session_id)},
        "ConsistentRead": True,
    }
    records: list[HistoryRecord] = []
    while True:
        response = client.query(**request)
        records.extend(history_record(item) for item in response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            return sorted(records, key=lambda record: record.at_ms)
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def history_record(item: Mapping[str, Any]) -> HistoryRecord:
    values = plain(item)
    image = values.get(HistoryAttr.IMAGE)
    return HistoryRecord(
        session_id=str(values.get(HistoryAttr.PK, "")),
        record_key=str(values.get(HistoryAttr.RECORD_KEY, "")),
        change=str(values.get(HistoryAttr.CHANGE_KIND, "")),
        by=_text(values.get(HistoryAttr.CHANGED_BY)),
        by_note=_text(values.get(HistoryAttr.CHANGED_BY_NOTE)),
        at_ms=int(values.get(HistoryAttr.CHANGED_AT_MS, 0)),
        reason=_text(values.get(HistoryAttr.CHANGE_REASON)),
        status=_text(values.get(HistoryAttr.STATUS)),
        previous_status=_text(values.get(HistoryAttr.PREVIOUS_STATUS)),
        stream_event_id=str(values.get(HistoryAttr.STREAM_EVENT_ID, "")),
        image=json.loads(image, parse_float=Decimal) if isinstance(image, str) else {},
    )


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return str(value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
