"""The bare baseline: what a webhook receiver cannot do without (json + hmac + one boto3 put_item).

No Powertools, no secret read (the signing secret comes from the environment), no classification, no
logging or metrics. Written the way a minimal Lambda usually is: boto3 and the client at module scope.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

import boto3

_SECRET = os.environ["BASELINE_WEBHOOK_SECRET"].encode()
_TABLE = os.environ["TABLE_NAME"]
_dynamodb = boto3.client("dynamodb")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = event["body"].encode()
    received = event["headers"].get("x-webhook-signature", "")[len("sha256=") :].lower()
    expected = hmac.new(_SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, received):
        return {"statusCode": 401, "body": "{}"}
    document = json.loads(body)
    _dynamodb.put_item(
        TableName=_TABLE,
        Item={"pk": {"S": document["sessionId"]}, "sk": {"S": "GUARANTEE"}, "rawBody": {"S": event["body"]}},
        ConditionExpression="attribute_not_exists(pk)",
    )
    return {"statusCode": 200, "body": json.dumps({"outcome": "stored"})}
