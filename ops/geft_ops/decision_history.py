"""One read-only pass over the guarantees table: the decision history the policy lab works on.

A paginated Scan reads the guarantee records in a time window (optionally only some statuses) and every
session's final-status record, in the same pass: a Scan is charged for every item it reads whatever its
filter, so reading both at once costs no more than reading the guarantees alone. The raw webhook bodies
are projected out (the lab needs the recorded decisions, not the bodies). Only ``scan`` is ever called
on the client: nothing here can write.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from geft.items import (
    ATTRIBUTES,
    Attr,
    AttributeValue,
    GuaranteeView,
    guarantee_view,
    n,
    s,
    session_view,
)
from geft.models import GuaranteeStatus, RecordType

PAGE_ITEMS = 1000
"""Items a Scan page reads at most (``Limit``): progress is reported per page, so about every 1,000."""
_NOT_READ = frozenset({Attr.RAW_BODY, Attr.STATUS_RAW_BODY, Attr.RAW_BODY_BYTES})

Progress = Callable[[int, int], None]
"""Called after each page with (items scanned so far, guarantees kept so far)."""


@dataclass(frozen=True)
class Window:
    """Which guarantees to read: received in [since, until], of ``statuses`` (empty: any), and, whatever
    their time, those now in ``also_statuses`` (the review queue as it stands, say)."""

    since_ms: int | None = None
    until_ms: int | None = None
    statuses: frozenset[GuaranteeStatus] = frozenset()
    also_statuses: frozenset[GuaranteeStatus] = frozenset()


@dataclass(frozen=True)
class History:
    guarantees: list[GuaranteeView]
    final_statuses: dict[str, str] = field(default_factory=dict)
    """Session id -> its final status (Completed, Failed, Canceled, Expired), where one is recorded."""
    scanned: int = 0
    pages: int = 0


def read_history(
    client: Any,
    table_name: str,
    window: Window,
    *,
    progress: Progress | None = None,
    page_items: int = PAGE_ITEMS,
) -> History:
    """Scan the table once (page by page, ``page_items`` each) for ``window``'s guarantees and the
    sessions' final statuses."""
    request = _scan_request(table_name, window, page_items)
    guarantees: list[GuaranteeView] = []
    final_statuses: dict[str, str] = {}
    scanned = pages = 0
    while True:
        response = client.scan(**request)
        pages += 1
        scanned += int(response.get("ScannedCount", 0))
        for item in response.get("Items", []):
            if (view := guarantee_view(item)) is not None:
                guarantees.append(view)
            elif (record := session_view(item)) is not None and record.final_status:
                final_statuses[record.session_id] = record.final_status
        if progress is not None:
            progress(scanned, len(guarantees))
        if "LastEvaluatedKey" not in response:
            return History(guarantees, final_statuses, scanned, pages)
        request = {**request, "ExclusiveStartKey": response["LastEvaluatedKey"]}


def _scan_request(table_name: str, window: Window, page_items: int) -> dict[str, Any]:
    read = sorted(ATTRIBUTES - _NOT_READ)
    names = {f"#a{index}": name for index, name in enumerate(read)}
    placeholder = {name: key for key, name in names.items()}
    values: dict[str, AttributeValue] = {
        ":guarantee": s(RecordType.GUARANTEE),
        ":session": s(RecordType.SESSION),
    }
    kind, received, status = (placeholder[a] for a in (Attr.RECORD_TYPE, Attr.RECEIVED_AT_MS, Attr.STATUS))
    in_window: list[str] = []
    if window.since_ms is not None:
        values[":since"] = n(window.since_ms)
        in_window.append(f"{received} >= :since")
    if window.until_ms is not None:
        values[":until"] = n(window.until_ms)
        in_window.append(f"{received} <= :until")
    if window.statuses:
        in_window.append(f"{status} IN ({_values(values, 'status', window.statuses)})")
    guarantee = " AND ".join(in_window) or None
    if window.also_statuses:
        also = f"{status} IN ({_values(values, 'also', window.also_statuses)})"
        guarantee = f"({guarantee}) OR {also}" if guarantee else None
    wanted = f"{kind} = :guarantee" + (f" AND ({guarantee})" if guarantee else "")
    return {
        "TableName": table_name,
        "Limit": page_items,
        "ProjectionExpression": ", ".join(names),
        "FilterExpression": f"({wanted}) OR {kind} = :session",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _values(values: dict[str, AttributeValue], prefix: str, statuses: Collection[GuaranteeStatus]) -> str:
    keys = []
    for index, status in enumerate(sorted(statuses)):
        key = f":{prefix}{index}"
        values[key] = s(status)
        keys.append(key)
    return ", ".join(keys)
