"""Both functions in this process under moto, fed as Lambda would feed them, against the Flinks sandbox.

The receiver stores signed guarantee webhooks (API Gateway events), the stream batch is built from
moto's own stream records through the template's FilterCriteria (``geft_local.streams``, as the
integration tests do), and the processor talks to ``FlinksSandbox`` over real HTTP on 127.0.0.1.

Import this module only after ``benchmarks.common.AWS_ENV`` is in ``os.environ`` (``prepare()``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks.common import AWS_ENV, BENCH_SECRET, STACK_NAME, guarantee_event_template

FLINKS_USERNAME = "bench-flinks-user"
FLINKS_PASSWORD = "bench-flinks-password"


def prepare() -> None:
    """Fake AWS settings before boto3 or moto load; nothing may reach real AWS."""
    os.environ.update(AWS_ENV)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(name, None)


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, from /proc (Linux)."""
    from pathlib import Path

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


class AwsCallCounter:
    """Counts every API operation made by every botocore client created after ``install()``, with
    botocore's ``before-call`` event (once per operation, before the SDK's own retries)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.enabled = False
        self._lock = threading.Lock()

    def install(self) -> None:
        import botocore.session

        original = botocore.session.Session.create_client
        if getattr(original, "_bench_counted", False):
            raise RuntimeError("an AwsCallCounter is already installed")

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            client.meta.events.register("before-call.*.*", self._count)
            return client

        create_client._bench_counted = True  # type: ignore[attr-defined]
        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]

    def _count(self, model: Any, **_: Any) -> None:
        if self.enabled:
            with self._lock:
                self.counts[f"{model.service_model.service_name}:{model.name}"] += 1

    @contextmanager
    def counting(self) -> Iterator[Counter[str]]:
        """Counts only inside the block; yields the counts of this block."""
        before = Counter(self.counts)
        self.enabled = True
        block: Counter[str] = Counter()
        try:
            yield block
        finally:
            self.enabled = False
            block.update(self.counts - before)


class RemoteSandbox:
    """The parts of ``FlinksSandbox`` the benchmarks use, through its admin API in another process."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def _call(self, method: str, path: str, document: object = None) -> Any:
        import urllib.request

        data = json.dumps(document).encode() if document is not None else None
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return json.loads(response.read())

    def add_session(self, scenario: object = None) -> str:
        return str(self._call("POST", "/_sandbox/sessions", {})["sessionId"])

    def calls(self) -> list[Any]:
        from types import SimpleNamespace

        return [SimpleNamespace(**entry) for entry in self._call("GET", "/_sandbox/calls")["calls"]]

    @property
    def authorize_count(self) -> int:
        return sum(1 for entry in self.calls() if entry.endpoint == "authorize")

    def confirms_by_session(self) -> dict[str, list[bool]]:
        confirms: dict[str, list[bool]] = {}
        for entry in self.calls():
            if entry.endpoint == "confirm" and entry.decision is not None:
                confirms.setdefault(entry.session_id, []).append(entry.decision)
        return confirms


@dataclass
class LambdaContext:
    timeout_seconds: float = 60.0
    memory_limit_in_mb: int = 512
    function_name: str = "bench"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"

    def __post_init__(self) -> None:
        self._started = time.monotonic()

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


class InProcessStack:
    """``with InProcessStack(latency_ms=50) as stack:`` a fresh moto account, table and secrets from
    template.yaml, a Flinks sandbox, and both handlers (in this process) configured as the template
    configures them.

    ``fakes="in-process"``: moto's ``mock_aws`` and the sandbox in this process, as the integration
    tests run them. ``fakes="separate-process"``: moto's server and the sandbox in a child process
    (``fakes_server``), reached over HTTP on 127.0.0.1, so their CPU is not the processor's.
    ``fakes="memory"``: the sandbox in a child process, AWS answered in this process by ``aws_stub``'s
    in-memory table (no expression evaluation): what is left is the functions' own cost.
    """

    MODES = ("in-process", "separate-process", "memory")

    def __init__(
        self,
        *,
        latency_ms: int,
        pool_size: int = 16,
        counter: AwsCallCounter | None = None,
        fakes: str = "in-process",
    ) -> None:
        if fakes not in self.MODES:
            raise ValueError(f"unknown fakes mode {fakes!r}")
        self.latency_ms = latency_ms
        self.pool_size = pool_size
        self.counter = counter
        self.fakes = fakes
        self.fakes_pid: int | None = None
        self._exits: list[Any] = []

    def __enter__(self) -> InProcessStack:
        import boto3
        from geft_local.flinks_sandbox import FlinksSandbox
        from geft_local.moto_atomic import make_conditional_writes_atomic
        from geft_local.streams import StreamFeed, filter_patterns, streams_client
        from geft_local.template_resources import create_resources, load_template, parameter_values
        from moto import mock_aws

        self.template = load_template()
        if self.fakes == "in-process":
            make_conditional_writes_atomic()
            mock = mock_aws()
            mock.start()
            self._exits.append(mock.stop)
            sandbox: Any = FlinksSandbox(
                username=FLINKS_USERNAME, password=FLINKS_PASSWORD, latency_ms=self.latency_ms
            )
            sandbox.start()
            self._exits.append(sandbox.stop)
        elif self.fakes == "separate-process":
            moto_url, sandbox_url = self._start_fakes_process(with_moto=True)
            os.environ["AWS_ENDPOINT_URL"] = moto_url
            self._exits.append(lambda: os.environ.pop("AWS_ENDPOINT_URL", None))
            sandbox = RemoteSandbox(sandbox_url)
        else:
            _, sandbox_url = self._start_fakes_process(with_moto=False)
            sandbox = RemoteSandbox(sandbox_url)
        self.sandbox = sandbox
        self.aws = boto3.Session(region_name="us-east-1")
        secret_values = {
            "WebhookSecret": {"current": BENCH_SECRET},
            "FlinksApiSecret": {"username": FLINKS_USERNAME, "password": FLINKS_PASSWORD},
        }
        if self.fakes == "memory":
            from benchmarks import aws_stub

            with mock_aws():  # only to learn the names and ARNs CloudFormation would give
                self.created = create_resources(
                    self.template, session=self.aws, stack_name=STACK_NAME, secret_values=secret_values
                )
            aws_stub.install()
            aws_stub.remember_items()
            self._exits.append(aws_stub.uninstall)
            for logical_id, document in secret_values.items():
                aws_stub.set_secret(self.created.ref(logical_id), dict(document))
        else:
            self.created = create_resources(
                self.template, session=self.aws, stack_name=STACK_NAME, secret_values=secret_values
            )
        self._parameters = parameter_values(self.template)
        self._stream_arn = self.created.get_att("GuaranteesTable", "StreamArn")
        properties = self.template["Resources"]["DecisionProcessorFunction"]["Properties"]
        self._patterns = filter_patterns(properties["Events"]["GuaranteeStream"]["Properties"])
        self._seen: set[str] = set()  # the memory fakes' own stream position
        self._feed = (
            StreamFeed(streams_client(self.aws), self._stream_arn, self._patterns)
            if self.fakes != "memory"
            else None
        )
        self._apply_environment()
        if self.counter is not None:
            self.counter.install()
        from decision_processor import handler as processor_handler
        from webhook_receiver import handler as receiver_handler

        self.receiver = receiver_handler
        self.processor = processor_handler
        self.cold_containers()
        return self

    def _start_fakes_process(self, *, with_moto: bool) -> tuple[str, str]:
        import subprocess
        import sys

        arguments = [
            str(self.latency_ms),
            FLINKS_USERNAME,
            FLINKS_PASSWORD,
            *([] if with_moto else ["sandbox-only"]),
        ]
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fakes_server", *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

        def stop() -> None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

        self._exits.append(stop)
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline())
        self.fakes_pid = process.pid
        return str(urls["moto"]), str(urls["sandbox"])

    def fakes_cpu_seconds(self) -> float:
        """CPU time (user + system) the fakes process has used so far; 0 when they run in-process."""
        if self.fakes_pid is None:
            return 0.0
        return process_cpu_seconds(self.fakes_pid)

    def __exit__(self, *exc: object) -> None:
        self.cold_containers()
        while self._exits:
            self._exits.pop()()

    def _apply_environment(self) -> None:
        from geft_local.template_resources import function_environment

        for logical_id, overrides in (
            ("WebhookReceiverFunction", {}),
            (
                "DecisionProcessorFunction",
                {"FLINKS_BASE_URL": self.sandbox.base_url, "PROCESSOR_POOL_SIZE": str(self.pool_size)},
            ),
        ):
            environment = function_environment(self.template, logical_id, self.created, self._parameters)
            environment.update(overrides)
            os.environ.update(environment)

    def set_pool_size(self, pool_size: int) -> None:
        """A new processor container with this pool size (its composition root is rebuilt)."""
        self.pool_size = pool_size
        os.environ["PROCESSOR_POOL_SIZE"] = str(pool_size)
        self.processor._dependencies.cache_clear()

    def cold_containers(self) -> None:
        """Forget both composition roots: the next invocations build clients and read secrets again."""
        self.receiver._dependencies.cache_clear()
        self.processor._dependencies.cache_clear()

    # -- the pipeline ------------------------------------------------------------------------------

    def new_sessions(self, count: int) -> list[str]:
        from geft_local.flinks_sandbox import Scenario

        return [self.sandbox.add_session(scenario=Scenario()) for _ in range(count)]

    def webhook_event(self, session_id: str, *, status: str | None = None) -> dict[str, Any]:
        import hashlib
        import hmac
        from datetime import UTC, datetime

        event = guarantee_event_template()
        document = json.loads(event["body"])
        document.update(
            sessionId=session_id,
            when=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            referenceId=f"BENCH-{session_id[:8]}",
        )
        if status:  # Flinks' SessionSetupStatusChanged event
            document = {
                "type": "SessionSetupStatusChanged",
                "when": document["when"],
                "sessionId": session_id,
                "status": status,
                "statusDetails": "EFT0301",
            }
        body = json.dumps(document, separators=(",", ":")).encode()
        event["body"] = body.decode()
        signature = hmac.new(BENCH_SECRET.encode(), body, hashlib.sha256).hexdigest().upper()
        event["headers"]["x-webhook-signature"] = "sha256=" + signature
        return event

    def receive(self, session_id: str, *, status: str | None = None) -> float:
        """Deliver one signed guarantee webhook (or, with ``status``, the session's final-status
        webhook) to the receiver; the handler's time in ms."""
        event = self.webhook_event(session_id, status=status)
        started = time.perf_counter()
        response = self.receiver.lambda_handler(event, LambdaContext(timeout_seconds=6))
        elapsed = (time.perf_counter() - started) * 1000
        expected = "status-recorded" if status else "stored"
        if response["statusCode"] != 200 or json.loads(response["body"])["outcome"] != expected:
            raise RuntimeError(f"receiver answered {response}")
        return elapsed

    def next_event(self) -> dict[str, Any]:
        """Every stream record written since the last call that passes the FilterCriteria, as one batch."""
        if self.fakes == "memory":
            return self._memory_stream_event()
        assert self._feed is not None
        return self._feed.next_event()

    def _memory_stream_event(self) -> dict[str, Any]:
        """INSERT records for the items PutItem stored since the last call, as Lambda delivers them."""
        from geft_local.streams import matches_any

        from benchmarks import aws_stub

        records = []
        for (pk, sk), item in list((aws_stub.items or {}).items()):
            if f"{pk}/{sk}" in self._seen:
                continue
            self._seen.add(f"{pk}/{sk}")
            sequence = f"{len(self._seen):021d}"
            record = {
                "eventID": sequence,
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "eventSourceARN": self._stream_arn,
                "dynamodb": {
                    "ApproximateCreationDateTime": int(time.time()),
                    "Keys": {"pk": item["pk"], "sk": item["sk"]},
                    "NewImage": item,
                    "SequenceNumber": sequence,
                    "SizeBytes": len(json.dumps(item)),
                    "StreamViewType": "NEW_IMAGE",
                },
            }
            if matches_any(self._patterns, record):
                records.append(record)
        return {"Records": records}

    def process(self, event: dict[str, Any]) -> float:
        """Invoke the processor with one stream batch; the handler's time in ms. Every record must
        come out confirmed (nothing retried)."""
        started = time.perf_counter()
        response = self.processor.lambda_handler(event, LambdaContext(timeout_seconds=60))
        elapsed = (time.perf_counter() - started) * 1000
        if response != {"batchItemFailures": []}:
            raise RuntimeError(f"processor reported failures: {response}")
        return elapsed

    def items(self) -> list[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        client = self.aws.client("dynamodb")
        deserializer = TypeDeserializer()
        raw = client.scan(TableName=self.created.ref("GuaranteesTable"), ConsistentRead=True)["Items"]
        return [{key: deserializer.deserialize(value) for key, value in item.items()} for item in raw]

    def raw_items(self) -> list[dict[str, Any]]:
        client = self.aws.client("dynamodb")
        items: list[dict[str, Any]] = client.scan(
            TableName=self.created.ref("GuaranteesTable"), ConsistentRead=True
        )["Items"]
        return items

    def guarantees_batch(self, count: int) -> tuple[list[str], dict[str, Any]]:
        """``count`` new sessions, their webhooks stored, and the stream batch that results."""
        sessions = self.new_sessions(count)
        for session_id in sessions:
            self.receive(session_id)
        event = self.next_event()
        if len(event["Records"]) != count:
            raise RuntimeError(f"expected {count} stream records, got {len(event['Records'])}")
        return sessions, event

    def check_confirmed(self, sessions: list[str]) -> None:
        wanted = set(sessions)
        if self.fakes == "memory":  # no table to read back: Flinks' side must show one confirm each
            confirms = self.sandbox.confirms_by_session()
            missing = [sid for sid in sessions if confirms.get(sid) != [True]]
            if missing:
                raise RuntimeError(f"{len(missing)} sessions were not confirmed exactly once")
            return
        statuses = {
            item["pk"]: item["status"]
            for item in self.items()
            if item["pk"] in wanted and str(item["sk"]).startswith("GUARANTEE#")
        }
        not_confirmed = {sid: status for sid, status in statuses.items() if status != "CONFIRMED"}
        if len(statuses) != len(wanted) or not_confirmed:
            raise RuntimeError(f"not every guarantee was confirmed: {not_confirmed or 'missing items'}")
        if isinstance(self.sandbox, RemoteSandbox):
            confirms = self.sandbox.confirms_by_session()
        else:
            confirms = {sid: self.sandbox.confirms_for(sid) for sid in sessions}
        for session_id in sessions:
            if confirms.get(session_id) != [True]:
                raise RuntimeError(f"session {session_id} was not confirmed exactly once")
