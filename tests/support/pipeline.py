"""Steps the pipeline tests share: deliver a signed guarantee, read a session's guarantee item."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.constants import TEST_WEBHOOK_SECRET
from tests.support.webhooks import guarantee_body, webhook_event

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
Items = Callable[[], list[dict[str, Any]]]


def receive(invoke_receiver: Invoke, session_id: str, **fields: Any) -> None:
    """Deliver a correctly signed guarantee webhook for ``session_id`` and check it was acknowledged."""
    response = invoke_receiver(
        webhook_event(guarantee_body(session_id, **fields), secret=TEST_WEBHOOK_SECRET)
    )
    assert response["statusCode"] == 200


def guarantee_item(items: Items, session_id: str) -> dict[str, Any]:
    """The session's one guarantee item, deserialized."""
    [item] = [i for i in items() if i["pk"] == session_id and str(i["sk"]).startswith("GUARANTEE#")]
    return item
