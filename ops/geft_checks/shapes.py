"""What the code reads from Flinks' answers, learnt from its own parsers, next to what Flinks sent.

Nothing here is a list kept by hand. ``expected_fields`` runs each parser the functions use
(``READERS``: the processor's ``facts_from_session`` and ``decision_at_flinks`` on ``/details``, the
reconciler's ``reported_status`` on ``/status``) over a tracing document that records every key the
parser looks up; each field it reaches is then fed to the parser alone, once per JSON type, and the
types that change the parser's result are the ones it uses, the outputs that change are what the field
feeds. An output no single field produces (``shortfall``) is computed from the fields whose removal
loses it.

``compare`` judges an answer by the same parsers: an output is known when the parser produced it from
what Flinks sent, whatever the path (the older ``/details`` shape is read too). A field is
``required`` when the decision policy in use reads the fact it feeds (or the reconciler needs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, Final, Literal

from geft.masking import mask_text
from geft.policy import FIELDS
from geft.session_facts import (
    GuaranteeIdentity,
    RecordedDecision,
    decision_at_flinks,
    facts_from_session,
    reported_status,
)
from geft.webhook_events import FINAL_SESSION_STATUSES

JsonType = Literal["object", "array", "string", "number", "boolean", "null"]
Path = tuple[str, ...]
Endpoint = Literal["status", "details"]
Outputs = dict[str, object]

# One value of each JSON type a parser might use (numbers as the client parses them: Decimal).
_SAMPLES: Final[tuple[tuple[JsonType, object], ...]] = (
    ("string", "Low"),
    ("number", Decimal("12.34")),
    ("boolean", True),
)


@dataclass(frozen=True)
class Reader:
    """One parser of one endpoint's answer: ``parse`` gives the named outputs it could read."""

    endpoint: Endpoint
    purpose: str
    parse: Callable[[Mapping[str, Any]], Outputs]
    required: Callable[[frozenset[str]], frozenset[str]]
    """The outputs that must be known, given the facts the policy reads."""


def _policy_facts(document: Mapping[str, Any]) -> Outputs:
    return dict(facts_from_session(document))


def _recorded_decision(document: Mapping[str, Any]) -> Outputs:
    found = decision_at_flinks(document, GuaranteeIdentity(guarantee_id=None, amount=None))
    return {} if found.recorded is RecordedDecision.NONE else {"decision at Flinks": found.accepted}


def _session_status(document: Mapping[str, Any]) -> Outputs:
    status = reported_status(document)
    values = {"status": status.status, "statusDetails": status.status_details}
    return {name: value for name, value in values.items() if value is not None}


READERS: Final[tuple[Reader, ...]] = (
    Reader("status", "reconciliation", _session_status, lambda _: frozenset({"status"})),
    Reader("details", "policy fact", _policy_facts, lambda policy_reads: policy_reads),
    Reader("details", "confirm recovery", _recorded_decision, lambda _: frozenset()),
)


@dataclass(frozen=True)
class ExpectedField:
    """A field a parser reads: the JSON types it uses there and the outputs it feeds."""

    endpoint: Endpoint
    path: Path
    types: frozenset[JsonType]
    feeds: tuple[str, ...]
    purpose: str
    documented_values: frozenset[str] | None = None  # strings the code compares with (others: unknown)

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class ComputedOutput:
    """An output no single field gives: computed from ``inputs`` (``shortfall`` from two amounts)."""

    endpoint: Endpoint
    output: str
    inputs: tuple[Path, ...]
    purpose: str


@dataclass(frozen=True)
class Expectation:
    fields: tuple[ExpectedField, ...]
    computed: tuple[ComputedOutput, ...]


def expected_fields(readers: Sequence[Reader] = READERS) -> Expectation:
    """What ``readers`` read, learnt by running them (see the module docstring)."""
    fields_: list[ExpectedField] = []
    computed: list[ComputedOutput] = []
    for reader in readers:
        base = reader.parse({})
        leaves = _leaves(_trace(reader.parse))
        found: dict[Path, tuple[frozenset[JsonType], tuple[str, ...], object]] = {}
        for path in leaves:
            used: list[JsonType] = []
            feeds: set[str] = set()
            sample: object = None
            for json_type, value in _SAMPLES:
                changed = _changed(base, reader.parse(_nested({path: value})))
                if changed:
                    used.append(json_type)
                    feeds |= changed
                    sample = value if sample is None else sample
            if used:
                found[path] = (frozenset(used), tuple(sorted(feeds)), sample)
        for path, (types, outputs, _) in found.items():
            values = {FIELDS[name].values for name in outputs if name in FIELDS and FIELDS[name].values}
            fields_.append(
                ExpectedField(
                    reader.endpoint,
                    path,
                    types,
                    outputs,
                    reader.purpose,
                    next(iter(values)) if len(values) == 1 else None,
                )
            )
        whole = {path: sample for path, (_, _, sample) in found.items()}
        everything = reader.parse(_nested(whole))
        single = {name for _, outputs, _ in found.values() for name in outputs}
        for output in sorted(set(everything) - single):
            inputs = tuple(
                path
                for path in whole
                if output not in reader.parse(_nested({p: v for p, v in whole.items() if p != path}))
            )
            computed.append(ComputedOutput(reader.endpoint, output, inputs, reader.purpose))
    return Expectation(tuple(fields_), tuple(computed))


# -- what an answer holds ------------------------------------------------------------------------------


def json_type(value: object) -> JsonType:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return "array"


def shape_of(value: object) -> object:
    """``value`` with every scalar replaced by its JSON type: the shape, no value (arrays: their first
    element's shape)."""
    if isinstance(value, Mapping):
        return {str(key): shape_of(child) for key, child in value.items()}
    if isinstance(value, list):
        return [shape_of(value[0])] if value else []
    return json_type(value)


def flatten(document: Mapping[str, Any]) -> dict[Path, object]:
    """Every scalar (and empty object or array) of ``document`` by its path."""
    flat: dict[Path, object] = {}

    def walk(path: Path, value: object) -> None:
        if isinstance(value, Mapping) and value:
            for key, child in value.items():
                walk((*path, str(key)), child)
        else:
            flat[path] = value

    walk((), document)
    return flat


# -- the comparison ------------------------------------------------------------------------------------


class Verdict(Enum):
    OK = "ok"
    MISSING = "missing"
    NULL = "null"
    TYPE_DIFFERS = "type differs"
    UNKNOWN_VALUE = "undocumented value"
    CONVERTED = "ok, converted"  # e.g. a number sent as a numeral string, which the code also reads
    OTHER_SHAPE = "ok, read from another shape"

    @property
    def known(self) -> bool:
        return self in (Verdict.OK, Verdict.CONVERTED, Verdict.OTHER_SHAPE)


@dataclass(frozen=True)
class FieldReport:
    expected: ExpectedField
    sent: JsonType | None  # None: absent
    verdict: Verdict
    required: bool
    shown_value: str | None = None  # only for the strings the code compares with documented values

    @property
    def fails(self) -> bool:
        """A field the code cannot work with: required and unknown, or sent as a type it does not use."""
        return (self.required and not self.verdict.known) or self.verdict is Verdict.TYPE_DIFFERS


@dataclass(frozen=True)
class ComputedReport:
    computed: ComputedOutput
    known: bool
    required: bool

    @property
    def fails(self) -> bool:
        return self.required and not self.known


@dataclass(frozen=True)
class EndpointReport:
    endpoint: Endpoint
    fields: tuple[FieldReport, ...]
    computed: tuple[ComputedReport, ...]
    read_elsewhere: tuple[Path, ...]  # sent, not where the current shape has it, and read all the same
    ignored: tuple[Path, ...]  # sent and read by no parser
    sent_shape: object = field(default=None)

    @property
    def failures(self) -> list[str]:
        found = [
            f"/{self.endpoint} {report.expected.name}: {_failure_text(report)}"
            for report in self.fields
            if report.fails
        ]
        found += [
            f"/{self.endpoint} {report.computed.output}: unknown (needs "
            f"{', '.join('.'.join(path) for path in report.computed.inputs)})"
            for report in self.computed
            if report.fails
        ]
        return found


def compare(
    endpoint: Endpoint,
    answer: Mapping[str, Any],
    expectation: Expectation,
    *,
    policy_reads: frozenset[str],
    readers: Sequence[Reader] = READERS,
) -> EndpointReport:
    """How ``answer`` (what Flinks sent to ``endpoint``) meets what the code reads there."""
    mine = [reader for reader in readers if reader.endpoint == endpoint]
    outputs = {reader.purpose: reader.parse(answer) for reader in mine}
    required = {reader.purpose: reader.required(policy_reads) for reader in mine}
    sent = flatten(answer)
    reports = []
    for expected in (item for item in expectation.fields if item.endpoint == endpoint):
        produced = outputs[expected.purpose]
        is_required = any(name in required[expected.purpose] for name in expected.feeds)
        reports.append(_field_report(expected, sent, produced, is_required))
    computed = [
        ComputedReport(
            item,
            item.output in outputs[item.purpose],
            item.output in required[item.purpose],
        )
        for item in expectation.computed
        if item.endpoint == endpoint
    ]
    # Sent fields any parser depends on in this very answer: taking one away changes an output.
    expected_paths = {item.path for item in expectation.fields if item.endpoint == endpoint}
    used = {
        path
        for path in sent
        if any(reader.parse(_without(answer, path)) != outputs[reader.purpose] for reader in mine)
    }
    return EndpointReport(
        endpoint,
        tuple(reports),
        tuple(computed),
        tuple(sorted(used - expected_paths)),
        tuple(sorted(set(sent) - used - expected_paths)),
        shape_of(answer),
    )


def _field_report(
    expected: ExpectedField, sent: Mapping[Path, object], produced: Outputs, required: bool
) -> FieldReport:
    value = sent.get(expected.path, _ABSENT)
    sent_type = None if value is _ABSENT else json_type(value)
    shown = None
    documented = expected.documented_values
    if documented is not None and isinstance(value, str):
        shown = repr(mask_text(value)[:32])
        if value not in documented:
            shown += f" (not {'/'.join(sorted(documented))})"
    if expected.purpose == "reconciliation" and expected.path == ("status",) and isinstance(value, str):
        shown = f"{mask_text(value)[:32]!r} ({'final' if value in FINAL_SESSION_STATUSES else 'not final'})"
    if any(name not in produced for name in expected.feeds):
        if sent_type is None:
            verdict = Verdict.MISSING
        elif sent_type == "null":
            verdict = Verdict.NULL
        else:
            verdict = Verdict.TYPE_DIFFERS
    elif sent_type is None:
        verdict = Verdict.OTHER_SHAPE
    elif sent_type not in expected.types:
        verdict = Verdict.CONVERTED
    elif documented is not None and value not in documented:
        verdict = Verdict.UNKNOWN_VALUE
    else:
        verdict = Verdict.OK
    return FieldReport(expected, sent_type, verdict, required, shown)


def _failure_text(report: FieldReport) -> str:
    expected = "/".join(sorted(report.expected.types))
    if report.verdict is Verdict.TYPE_DIFFERS:
        return f"sent as {report.sent}, the code reads {expected}"
    if report.verdict is Verdict.UNKNOWN_VALUE:
        return f"{report.shown_value}: the policy treats it as unknown"
    return (
        f"{report.verdict.value} (the code reads {expected}; needed for {', '.join(report.expected.feeds)})"
    )


# -- tracing -------------------------------------------------------------------------------------------


class _Trace(Mapping[str, Any]):
    """A document in which every key exists and is itself a document; records each key looked up."""

    def __init__(self, path: Path, seen: set[Path]) -> None:
        self._path = path
        self._seen = seen

    def __getitem__(self, key: str) -> _Trace:
        path = (*self._path, key)
        self._seen.add(path)
        return _Trace(path, self._seen)

    def get(self, key: str, default: object = None) -> _Trace:
        return self[key]

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _trace(parse: Callable[[Mapping[str, Any]], object]) -> set[Path]:
    seen: set[Path] = set()
    parse(_Trace((), seen))
    return seen


def _leaves(paths: set[Path]) -> list[Path]:
    return sorted(path for path in paths if not any(other[: len(path)] == path != other for other in paths))


def _nested(values: Mapping[Path, object]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for path, value in values.items():
        node = document
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return document


def _without(document: Mapping[str, Any], path: Path) -> dict[str, Any]:
    copy = dict(document)
    if len(path) == 1:
        copy.pop(path[0], None)
        return copy
    child = copy.get(path[0])
    if isinstance(child, Mapping):
        copy[path[0]] = _without(child, path[1:])
    return copy


def _changed(before: Outputs, after: Outputs) -> set[str]:
    return {
        name for name in set(before) | set(after) if before.get(name, _ABSENT) != after.get(name, _ABSENT)
    }


_ABSENT: Final = object()
