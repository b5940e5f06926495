"""Cost per million guarantees from AWS list prices and the counts and durations measured.

Prices: us-east-1, arm64, free tiers ignored, as cited in shared/reference/webhook-practice.md §4.3.
Counts (writes, reads, secret reads, log bytes) are the ones ``calls_bench`` counted; durations are the
ones measured here. What cannot be measured on loopback (network round trips to DynamoDB, Flinks'
real latency) is an explicit, named assumption, so the reader can redo the arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

PRICES = {
    "http_api_per_million": 1.00,
    "lambda_requests_per_million": 0.20,
    "lambda_arm64_gb_second": 0.0000133334,
    "dynamodb_wru_per_million": 0.625,
    "dynamodb_rru_per_million": 0.125,
    "secretsmanager_per_10k": 0.05,
    "logs_ingestion_per_gb": 0.50,
}
# Not measurable on loopback: an in-region DynamoDB round trip ("single-digit ms"), taken at 10 ms.
ASSUMED_DYNAMODB_RTT_MS = 10.0
# What the sandbox stands in for; Flinks' real latency is undocumented. Used only for a sensitivity line.
ASSUMED_REAL_FLINKS_MS = 300.0
LAMBDA_PLATFORM_LOG_BYTES = 300  # START, END and REPORT lines per invocation (approximate)
RECONCILER_MEMORY_MB = 256  # template.yaml, ReconcilerFunction


def _gb_ms(memory_mb: float, ms: float) -> float:
    """Lambda duration, $ per million invocations of ``ms`` at ``memory_mb`` (arm64)."""
    return memory_mb / 1024 * ms / 1000 * PRICES["lambda_arm64_gb_second"] * 1e6


def _logs(bytes_per_guarantee: float) -> float:
    return bytes_per_guarantee * 1e6 / 1e9 * PRICES["logs_ingestion_per_gb"]


def per_million(results: dict[str, Any]) -> dict[str, Any]:
    memory = results["memory_mb"]
    calls = results["calls"]
    warm = calls["warm_container"]
    follow = calls["follow_ups"]
    receiver, processor = warm["receiver"]["per_guarantee"], warm["processor"]["per_guarantee"]
    status, reconciler = follow["status_webhook"]["per_guarantee"], follow["reconciler"]["per_guarantee"]
    item_bytes = calls["item_bytes"]
    wru = max(1, math.ceil(item_bytes["confirmed_max"] / 1024))  # items <= 1 KB: 1 WRU per write
    in_index = item_bytes["in_ops_queue_index"]  # KEYS_ONLY: 1 WRU to add, 1 to remove
    wru_price, rru_price = PRICES["dynamodb_wru_per_million"], PRICES["dynamodb_rru_per_million"]

    receiver_cpu_ms = results["warm_path"]["summary"]["receiver"]["p50"]
    receiver_ms = math.ceil(receiver_cpu_ms + ASSUMED_DYNAMODB_RTT_MS)
    batch = results["processor"]["memory"]["warm_batch_10"]
    size = batch["sessions"]
    # The sessions of a batch run concurrently: their two writes each add about two round trips.
    batch_ms = math.ceil(batch["batch_ms"] + 2 * ASSUMED_DYNAMODB_RTT_MS)
    calls_per_session = sum(batch["calls"].values()) / size
    real_flinks_batch_ms = math.ceil(
        batch_ms + calls_per_session * (ASSUMED_REAL_FLINKS_MS - batch["latency_ms"])
    )
    reconciler_ms = math.ceil(2 * ASSUMED_DYNAMODB_RTT_MS)  # a GetItem and an UpdateItem per follow-up
    secret_calls = receiver["secretsmanager_calls"] + processor["secretsmanager_calls"]
    platform = LAMBDA_PLATFORM_LOG_BYTES

    rows = [
        ("guarantee", "API Gateway HTTP API", "1 request", PRICES["http_api_per_million"]),
        ("guarantee", "Receiver: Lambda request", "1 invocation", PRICES["lambda_requests_per_million"]),
        (
            "guarantee",
            "Receiver: Lambda duration",
            f"{receiver_ms} ms x {memory['receiver']} MB ({receiver_cpu_ms:.2f} ms measured"
            f" + {ASSUMED_DYNAMODB_RTT_MS:.0f} ms PutItem assumed)",
            _gb_ms(memory["receiver"], receiver_ms),
        ),
        (
            "guarantee",
            "Processor: Lambda request",
            f"1/{size} invocation (full batches of {size})",
            PRICES["lambda_requests_per_million"] / size,
        ),
        (
            "guarantee",
            "Processor: Lambda duration",
            f"{batch_ms} ms per batch of {size} x {memory['processor']} MB (measured, Flinks at "
            f"{batch['latency_ms']} ms, + 2 write round trips assumed)",
            _gb_ms(memory["processor"], batch_ms) / size,
        ),
        (
            "guarantee",
            "DynamoDB writes",
            f"{receiver['dynamodb_writes'] + processor['dynamodb_writes']:g} writes x {wru} WRU "
            f"(items <= {item_bytes['confirmed_max']} B) + {in_index:g} index write",
            ((receiver["dynamodb_writes"] + processor["dynamodb_writes"]) * wru + in_index) * wru_price,
        ),
        (
            "guarantee",
            "DynamoDB reads",
            f"{receiver['dynamodb_reads'] + processor['dynamodb_reads']:g}",
            (receiver["dynamodb_reads"] + processor["dynamodb_reads"]) * rru_price,
        ),
        ("guarantee", "DynamoDB stream reads by Lambda", "free", 0.0),
        (
            "guarantee",
            "Secrets Manager",
            f"{secret_calls:g} per guarantee warm; <= 1 per container per SecretCacheSeconds",
            secret_calls * PRICES["secretsmanager_per_10k"] * 100,
        ),
        (
            "guarantee",
            "CloudWatch Logs",
            f"{sum(warm['log_bytes_per_guarantee'].values()):.0f} B measured + ~{platform} B per invocation",
            _logs(sum(warm["log_bytes_per_guarantee"].values()) + platform * (1 + 1 / size)),
        ),
        (
            "status webhook",
            "API Gateway + receiver",
            "1 request, 1 invocation, logs",
            PRICES["http_api_per_million"]
            + PRICES["lambda_requests_per_million"]
            + _gb_ms(memory["receiver"], receiver_ms)
            + _logs(follow["status_webhook"]["log_bytes"] + platform),
        ),
        (
            "status webhook",
            "DynamoDB writes",
            f"{status['dynamodb_writes']:g} x {wru} WRU",
            status["dynamodb_writes"] * wru * wru_price,
        ),
        (
            "reconciler, 15 min later",
            "DynamoDB + Lambda",
            f"{reconciler['dynamodb_reads']:g} reads (strongly consistent), "
            f"{reconciler['dynamodb_writes']:g} write + {in_index:g} index removal; "
            f"~{reconciler_ms} ms x {RECONCILER_MEMORY_MB} MB assumed",
            reconciler["dynamodb_reads"] * rru_price
            + (reconciler["dynamodb_writes"] * wru + in_index) * wru_price
            + _gb_ms(RECONCILER_MEMORY_MB, reconciler_ms),
        ),
    ]
    total = sum(row[3] for row in rows)
    guarantee_only = sum(row[3] for row in rows if row[0] == "guarantee")
    one_per_invocation = (
        total
        - rows[3][3]
        - rows[4][3]
        + PRICES["lambda_requests_per_million"]
        + _gb_ms(memory["processor"], batch_ms)
    )
    real_flinks = total - rows[4][3] + _gb_ms(memory["processor"], real_flinks_batch_ms) / size
    return {
        "prices": PRICES,
        "assumptions": {
            "dynamodb_rtt_ms": ASSUMED_DYNAMODB_RTT_MS,
            "real_flinks_ms_per_call": ASSUMED_REAL_FLINKS_MS,
            "lambda_platform_log_bytes": LAMBDA_PLATFORM_LOG_BYTES,
        },
        "rows": [
            {"phase": phase, "item": item, "quantity": quantity, "usd_per_million": usd}
            for phase, item, quantity, usd in rows
        ],
        "guarantee_webhook_usd_per_million": guarantee_only,
        "total_usd_per_million": total,
        "sensitivity": {
            "one_guarantee_per_processor_invocation": one_per_invocation,
            "real_flinks_latency": real_flinks,
            "real_flinks_batch_ms": real_flinks_batch_ms,
        },
    }
