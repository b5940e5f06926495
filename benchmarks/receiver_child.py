"""Runs in a fresh interpreter: a cold start or a warm loop of one webhook handler, AWS stubbed.

    python benchmarks/receiver_child.py cold receiver|baseline EVENT_FILE RESULT_FILE SPAWNED_AT
    python benchmarks/receiver_child.py warm both EVENT_FILE RESULT_FILE N

Only the stdlib and ``aws_stub`` (stdlib only) are loaded before the measured import, so the handler
pays for every module it needs, as it would in Lambda. The parent sets the function's environment.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # as early as the interpreter lets us: its own startup precedes this

# Before the measured import, only what the harness cannot do without: both handlers need json anyway.
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import aws_stub  # type: ignore[import-not-found]  # noqa: E402  (stdlib only; sys.path[0] is this directory)

from testkit.lambda_context import LambdaContext  # noqa: E402  (stdlib only)

HANDLERS = {"receiver": "webhook_receiver.handler", "baseline": "baseline_handler"}
HEAVY_MODULES = (
    "requests",
    "pydantic",
    "geft.flinks_client",
    "urllib3.contrib",
    "aws_lambda_powertools.utilities.parameters",
)


def signed_event(template: dict, secret: str) -> dict:  # type: ignore[type-arg]
    """A fresh guarantee (new session id) in ``template``'s API Gateway event, signed with ``secret``."""
    import copy
    import hashlib
    import hmac
    import uuid
    from datetime import UTC, datetime

    event = copy.deepcopy(template)
    document = json.loads(event["body"])
    document["sessionId"] = str(uuid.uuid4())
    document["when"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = json.dumps(document, separators=(",", ":")).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().upper()
    event["body"] = body.decode()
    event["headers"]["x-webhook-signature"] = "sha256=" + digest
    return event


def cold(variant: str, event_file: str, result_file: str, spawned_at: float) -> None:
    with open(event_file) as stream:
        event = json.load(stream)
    aws_stub.install()
    aws_stub.set_secret(os.environ["WEBHOOK_SECRET_ARN"], {"current": os.environ["BASELINE_WEBHOOK_SECRET"]})
    modules_before = len(sys.modules)
    t_import = time.perf_counter()
    handler = importlib.import_module(HANDLERS[variant])
    t_imported = time.perf_counter()
    first = handler.lambda_handler(event, LambdaContext(6.0, function_name="bench"))
    t_first = time.perf_counter()
    loaded_after_import = {name: name in sys.modules for name in HEAVY_MODULES}
    second = handler.lambda_handler(
        signed_event(event, os.environ["BASELINE_WEBHOOK_SECRET"]), LambdaContext(6.0, function_name="bench")
    )
    t_second = time.perf_counter()
    result = {
        "variant": variant,
        "interpreter_ms": (STARTED - spawned_at) * 1000,
        "harness_ms": (t_import - STARTED) * 1000,
        "import_ms": (t_imported - t_import) * 1000,
        "first_invoke_ms": (t_first - t_imported) * 1000,
        "init_and_first_ms": (t_first - t_import) * 1000,
        "spawn_to_first_response_ms": (t_first - spawned_at) * 1000,
        "second_invoke_ms": (t_second - t_first) * 1000,
        "statuses": [first["statusCode"], second["statusCode"]],
        "modules_loaded": len(sys.modules) - modules_before,
        "heavy_modules_loaded": loaded_after_import,
        "aws_calls": dict(aws_stub.calls),
    }
    with open(result_file, "w") as stream:
        json.dump(result, stream)


def warm(event_file: str, result_file: str, requests: int) -> None:
    with open(event_file) as stream:
        template = json.load(stream)
    secret = os.environ["BASELINE_WEBHOOK_SECRET"]
    import gc

    aws_stub.install()
    aws_stub.set_secret(os.environ["WEBHOOK_SECRET_ARN"], {"current": secret})
    handlers = {name: importlib.import_module(module) for name, module in HANDLERS.items()}
    context = LambdaContext(6.0, function_name="bench")
    for handler in handlers.values():  # warm: the first request builds clients and reads the secret
        for _ in range(50):
            handler.lambda_handler(signed_event(template, secret), context)
    events = {name: [signed_event(template, secret) for _ in range(requests)] for name in handlers}
    timings: dict[str, list[float]] = {name: [] for name in handlers}
    statuses: dict[str, set[int]] = {name: set() for name in handlers}
    order = list(handlers)
    gc.collect()
    clock = time.perf_counter_ns
    for index in range(requests):
        # alternate which handler goes first, so neither always runs right after the other
        for name in order if index % 2 == 0 else reversed(order):
            handler, event = handlers[name], events[name][index]
            started = clock()
            response = handler.lambda_handler(event, context)
            timings[name].append((clock() - started) / 1e6)
            statuses[name].add(response["statusCode"])
    with open(result_file, "w") as stream:
        json.dump(
            {
                "timings_ms": timings,
                "statuses": {name: sorted(codes) for name, codes in statuses.items()},
                "aws_calls": dict(aws_stub.calls),
                "heavy_modules_loaded": {name: name in sys.modules for name in HEAVY_MODULES},
            },
            stream,
        )


def main() -> None:
    mode, variant, event_file, result_file, extra = sys.argv[1:6]
    if mode == "cold":
        cold(variant, event_file, result_file, float(extra))
    else:
        warm(event_file, result_file, int(extra))


if __name__ == "__main__":
    main()
