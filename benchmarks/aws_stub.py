"""An in-process AWS stub whose cost is the same for every handler it serves.

``install()`` arranges that, whenever ``botocore.endpoint`` is imported, ``Endpoint._send`` (the one
place botocore hands a signed request to urllib3) answers from a table instead of the network. Nothing
is imported until the code under test imports botocore itself, so import costs are measured as they
are in Lambda; serialization, signing, parsing and botocore's retry machinery all still run.

By default writes are acknowledged and forgotten. ``remember_items()`` turns on a minimal in-memory
table for the processor benchmark: PutItem stores the item, UpdateItem answers ``ReturnValues=ALL_OLD``
with it, GetItem returns it. Conditions and update expressions are not evaluated: this measures the
processor's own cost, not DynamoDB's semantics (moto does that in the tests and the other runs).

Stdlib only: it is loaded by the cold-start child before anything else.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

# X-Amz-Target of the JSON-protocol operations the receiver makes -> the canned answer body.
_ANSWERS: dict[str, bytes] = {"DynamoDB_20120810.PutItem": b"{}", "DynamoDB_20120810.UpdateItem": b"{}"}
_SECRETS: dict[str, bytes] = {}
items: dict[tuple[str, str], dict[str, object]] | None = None
calls: Counter[str] = Counter()
_lock = threading.Lock()
_original_send: Any = None


class _Raw:
    """What ``AWSResponse.content`` reads: an object with ``stream()``."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: object) -> Sequence[bytes]:
        return [self._body]


def set_secret(secret_id: str, document: dict[str, object]) -> None:
    """``GetSecretValue`` of ``secret_id`` answers ``document`` as the secret string."""
    _SECRETS[secret_id] = json.dumps(
        {"ARN": secret_id, "Name": secret_id, "SecretString": json.dumps(document), "VersionId": "v1"}
    ).encode()


def remember_items() -> None:
    global items  # noqa: PLW0603 - process-wide stub state, like botocore's own patch point
    items = {}


def _key(item: dict[str, dict[str, str]]) -> tuple[str, str]:
    return item["pk"]["S"], item["sk"]["S"]


def _answer(target: str, body: bytes) -> bytes | None:
    if target == "secretsmanager.GetSecretValue":
        return _SECRETS.get(json.loads(body)["SecretId"])
    if items is None or not target.startswith("DynamoDB_20120810."):
        return _ANSWERS.get(target)
    request = json.loads(body)
    operation = target.rsplit(".", 1)[1]
    with _lock:
        if operation == "PutItem":
            items[_key(request["Item"])] = request["Item"]
            return b"{}"
        stored = items.get(_key(request["Key"]))
    if operation == "GetItem":
        return json.dumps({"Item": stored} if stored else {}).encode()
    if operation == "UpdateItem":
        wants_old = request.get("ReturnValues") == "ALL_OLD" and stored
        return json.dumps({"Attributes": stored} if wants_old else {}).encode()
    return None


def _stub_send(self: object, request: Any) -> object:
    from botocore.awsrequest import AWSResponse

    target = request.headers.get("X-Amz-Target", b"")
    target = target.decode() if isinstance(target, bytes) else str(target)
    with _lock:
        calls[target] += 1
    body = _answer(target, request.body)
    if body is None:
        error = {"__type": "UnknownOperationException", "message": f"stub has no answer for {target}"}
        return AWSResponse(
            request.url,
            400,
            {"Content-Type": "application/x-amz-json-1.0"},  # type: ignore[arg-type]  # a dict serves
            _Raw(json.dumps(error).encode()),
        )
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "stub"}
    return AWSResponse(request.url, 200, headers, _Raw(body))  # type: ignore[arg-type]  # a dict serves


class _PatchAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs ``patch(module)`` right after ``name`` is first imported."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self._name = name
        self._patch = patch
        self._loader: Any = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self._name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch(module)
        sys.meta_path.remove(self)


def install() -> None:
    """Stub every botocore client created from now on in this process (idempotent)."""

    def patch(module: ModuleType) -> None:
        global _original_send  # noqa: PLW0603
        if module.Endpoint._send is not _stub_send:
            _original_send = module.Endpoint._send
        module.Endpoint._send = _stub_send

    if "botocore.endpoint" in sys.modules:
        patch(sys.modules["botocore.endpoint"])
        return
    if not any(isinstance(finder, _PatchAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport("botocore.endpoint", patch))


def uninstall() -> None:
    """Hand botocore's requests back to the network path (the stub's state is kept)."""
    module = sys.modules.get("botocore.endpoint")
    if module is not None and _original_send is not None:
        module.Endpoint._send = _original_send
    for finder in [f for f in sys.meta_path if isinstance(f, _PatchAfterImport)]:
        sys.meta_path.remove(finder)
