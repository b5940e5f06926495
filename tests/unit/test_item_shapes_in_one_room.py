"""Item shapes in one room: outside the codec (geft/items.py) and the table's adapter (geft/repository.py),
no module names an attribute of the guarantees table; they read ``GuaranteeView``, ``SessionView``, ...

The names come from ``geft.items.ATTRIBUTES``. A name counts only where it is used on an item, because
the same words are also Flinks' fields (``status``, ``sessionId``), the policy's (``decision``) and the
CLI's JSON output (``reason``). Read from the syntax tree, a literal names an item attribute when it is

- the key of a subscript, ``.get()`` or ``in`` test on an item: a name that says item or image
  (``item``, ``new_image``, ``response["Items"]``, ...), or a value read as a low-level attribute
  (``x["status"]["S"]``);
- a key of a dict that holds attribute values (``{"pk": {"S": ...}}``, ``{"pk": s(...)}``);
- a name in a DynamoDB expression or in ``ExpressionAttributeNames``.

Importing ``geft.items.Attr`` outside the room is naming attributes too. testkit's fakes get no
exemption: they hold views, never items, so the test scans them like any other module.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from geft.items import ATTRIBUTES

from tests.support.fresh_interpreter import REPO

SCANNED = ("functions", "layers", "ops", "local", "testkit")
ROOM = frozenset({"layers/shared/geft/items.py", "layers/shared/geft/repository.py"})
# (module, name, why): the only places outside the room allowed to name an attribute. Keep it short.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # The audit trail's codec copies each stream image into history: it must tell the bulky body
        # attributes and the change attributes apart, by the codec's constants.
        ("layers/shared/geft/audit.py", "Attr"),
        # LocalStack.items(): the e2e tests' and benchmarks' door to a session's raw records (tests may
        # name attributes); it names the partition key of its query and nothing else.
        ("local/geft_local/stack.py", "pk"),
        # The policy lab's one read-only Scan of the guarantees table projects every attribute but the
        # bodies, by the codec's constants; it lives beside the lab so the functions' layer never ships it.
        ("ops/geft_ops/decision_history.py", "ATTRIBUTES"),
        ("ops/geft_ops/decision_history.py", "Attr"),
    }
)

_ITEM_NAMES = re.compile(r"(^|_)(item|items|image|images)$", re.IGNORECASE)
_ITEM_KEYS = frozenset({"Item", "Items", "Attributes", "NewImage", "OldImage", "Keys", "LastEvaluatedKey"})
_TYPE_DESCRIPTORS = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})
_ENCODERS = frozenset({"s", "n", "attribute"})  # geft.items' attribute-value builders
_EXPRESSIONS = frozenset(
    {
        "KeyConditionExpression",
        "ConditionExpression",
        "FilterExpression",
        "UpdateExpression",
        "ProjectionExpression",
    }
)
_IDENTIFIER = re.compile(r"(?<![#:\w])[A-Za-z_]\w*")


@dataclass(frozen=True)
class Naming:
    module: str
    line: int
    name: str
    how: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.name!r} ({self.how})"


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_item(node: ast.expr) -> bool:
    """Whether an expression is, by its name, an item or a stream image."""
    match node:
        case ast.Name(id=name) | ast.Attribute(attr=name):
            return bool(_ITEM_NAMES.search(name))
        case ast.Subscript(slice=key):
            return _text(key) in _ITEM_KEYS
        case ast.Call(func=ast.Attribute(attr="get"), args=[key, *_]):
            return _text(key) in _ITEM_KEYS
    return False


def _is_attribute_value(node: ast.expr) -> bool:
    match node:
        case ast.Dict(keys=[key]) if key is not None:
            return _text(key) in _TYPE_DESCRIPTORS
        case ast.Call(func=ast.Name(id=name)):
            return name in _ENCODERS
    return False


class _Finder(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.found: list[Naming] = []
        self._parents: dict[ast.AST, ast.AST] = {}

    def scan(self, tree: ast.AST) -> list[Naming]:
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self._parents[child] = parent
        self.visit(tree)
        return self.found

    def _add(self, node: ast.AST, name: str | None, how: str) -> None:
        if name in ATTRIBUTES:
            self.found.append(Naming(self.module, getattr(node, "lineno", 0), name, how))

    def _read_as_attribute_value(self, node: ast.expr) -> bool:
        """``node["S"]`` or ``node.get("S")``: the value read is a low-level attribute value."""
        parent = self._parents.get(node)
        if isinstance(parent, ast.Subscript) and parent.value is node:
            return _text(parent.slice) in _TYPE_DESCRIPTORS
        if isinstance(parent, ast.Attribute) and parent.attr == "get":
            call = self._parents.get(parent)
            return isinstance(call, ast.Call) and bool(call.args) and _text(call.args[0]) in _TYPE_DESCRIPTORS
        return False

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "geft.items":
            for alias in node.names:
                if alias.name in {"Attr", "ATTRIBUTES"}:
                    self.found.append(Naming(self.module, node.lineno, alias.name, "imports the names"))

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if _is_item(node.value) or self._read_as_attribute_value(node):
            self._add(node, _text(node.slice), "read from an item")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        reads = isinstance(func, ast.Attribute) and func.attr in {"get", "pop", "setdefault"} and node.args
        if reads and (_is_item(func.value) or self._read_as_attribute_value(node)):
            self._add(node, _text(node.args[0]), "read from an item")
        for keyword in node.keywords:
            self._request_field(keyword.arg, keyword.value)
        self.generic_visit(node)

    def _request_field(self, field: str | None, value: ast.expr) -> None:
        """A DynamoDB request's field, as a keyword argument or a key of a request dict."""
        if field in _EXPRESSIONS:
            for text in ast.walk(value):
                for name in _IDENTIFIER.findall(_text(text) or ""):
                    self._add(text, name, f"in {field}")
        if field == "ExpressionAttributeNames" and isinstance(value, ast.Dict):
            for name in value.values:
                self._add(name, _text(name), "in ExpressionAttributeNames")

    def visit_Compare(self, node: ast.Compare) -> None:
        membership = any(isinstance(op, ast.In | ast.NotIn) for op in node.ops)
        if membership and any(map(_is_item, node.comparators)):
            self._add(node, _text(node.left), "tested on an item")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        holds_attribute_values = any(_is_attribute_value(value) for value in node.values)
        for key, value in zip(node.keys, node.values, strict=True):
            if key is not None:
                self._request_field(_text(key), value)
                if holds_attribute_values:
                    self._add(key, _text(key), "a key of an item")
        self.generic_visit(node)


def namings(module: str, source: str) -> list[Naming]:
    return _Finder(module).scan(ast.parse(source))


def _modules() -> Iterator[tuple[str, Path]]:
    for root in SCANNED:
        for path in sorted((REPO / root).rglob("*.py")):
            module = path.relative_to(REPO).as_posix()
            if module not in ROOM:
                yield module, path


def test_no_module_outside_the_codec_and_the_repository_names_an_item_attribute() -> None:
    # GIVEN every module of the product, the operator CLI, the local stack and testkit, bar the room
    # WHEN each is read for item attributes named in an item context
    found = [
        naming
        for module, path in _modules()
        for naming in namings(module, path.read_text(encoding="utf-8"))
        if (naming.module, naming.name) not in ALLOWED
    ]

    # THEN there are none: they read typed views
    assert not found, "item attributes named outside geft/items.py and geft/repository.py:\n" + "\n".join(
        map(str, found)
    )


def test_every_allowance_is_still_needed() -> None:
    # GIVEN / WHEN the allowances are checked against what the modules name today
    used = {
        (naming.module, naming.name)
        for module, path in _modules()
        for naming in namings(module, path.read_text(encoding="utf-8"))
    }

    # THEN none is stale (a stale one would hide the next leak in that module)
    assert not ALLOWED - used, sorted(ALLOWED - used)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # item contexts: named
        ('item.get("status")', ["status"]),
        ('run.item["decisionRule"]', ["decisionRule"]),
        ('record["dynamodb"]["NewImage"]["recordType"]', ["recordType"]),
        ('response["Item"].get("sk")', ["sk"]),
        ('value["receivedAtMs"]["N"]', ["receivedAtMs"]),
        ('"claimId" in new_image', ["claimId"]),
        ('{"pk": {"S": session_id}, "body": text}', ["pk"]),
        ('{"status": s(status)}', ["status"]),
        ('client.query(KeyConditionExpression="pk = :pk")', ["pk"]),
        ('client.query(ExpressionAttributeNames={"#s": "status"})', ["status"]),
        ('{"TableName": table, "FilterExpression": "attribute_exists(claimId)"}', ["claimId"]),
        ("from geft.items import Attr", ["Attr"]),
        # Flinks' fields, the policy's and the CLI's output: not items
        ('answer.get("status")', []),
        ('details["sessionId"]', []),
        ('{"sessionId": view.ref.session_id, "status": view.status.value}', []),
        ('{"decision": "accept", "reason": why}', []),
        ('client.query(KeyConditionExpression="#pk = :pk")', []),
    ],
)
def test_what_counts_as_naming_an_item_attribute(source: str, expected: list[str]) -> None:
    # GIVEN / WHEN one expression is read, THEN exactly the attribute names used on an item are found
    assert [naming.name for naming in namings("example.py", source)] == expected
