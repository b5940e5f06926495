"""Both functions in this process under moto, against the Flinks sandbox: ``testkit.inprocess``'s stack
(the integration tests' own) with the fakes where a benchmark wants them.

Import this module only after ``prepare()`` has set fake AWS settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_SECRET, STACK_NAME
from testkit.aws import AwsCalls, use_fake_aws

FLINKS_USERNAME = "bench-flinks-user"
FLINKS_PASSWORD = "bench-flinks-password"


def prepare() -> None:
    """Fake AWS settings before boto3 or moto load; nothing may reach real AWS."""
    use_fake_aws()


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


class BenchStack:
    """``with BenchStack(latency_ms=50) as stack:`` a fresh moto account, table and secrets from
    template.yaml, a Flinks sandbox, and both handlers (in this process) configured as the template
    configures them.

    ``fakes="in-process"``: moto's ``mock_aws`` and the sandbox in this process, as the integration
    tests run them. ``fakes="separate-process"``: moto's server and the sandbox in a child process
    (``fakes_server``), reached over HTTP on 127.0.0.1, so their CPU is not the processor's.
    ``fakes="memory"``: the sandbox in a child process, AWS answered in this process by ``aws_stub``'s
    in-memory table (no expression evaluation): what is left is the functions' own cost.
    ``count_aws_calls``: every AWS call of the functions is recorded in ``aws_calls``.
    """

    MODES = ("in-process", "separate-process", "memory")

    def __init__(
        self,
        *,
        latency_ms: int,
        pool_size: int = 16,
        count_aws_calls: bool = False,
        fakes: str = "in-process",
    ) -> None:
        if fakes not in self.MODES:
            raise ValueError(f"unknown fakes mode {fakes!r}")
        self.latency_ms = latency_ms
        self.pool_size = pool_size
        self.fakes = fakes
        self.fakes_pid: int | None = None
        self.aws_calls = AwsCalls()
        self._count_aws_calls = count_aws_calls
        self._exits: list[Any] = []
        self._seen: set[str] = set()  # the memory fakes' own stream position

    def __enter__(self) -> BenchStack:
        import boto3
        from moto import mock_aws

        from testkit.aws import aws_calls_recorded, make_conditional_writes_atomic
        from testkit.flinks import FlinksSandbox, SandboxAdmin
        from testkit.inprocess import InProcessStack

        sandbox: FlinksSandbox | SandboxAdmin
        if self.fakes == "in-process":
            make_conditional_writes_atomic()
            mock = mock_aws()
            mock.start()
            self._exits.append(mock.stop)
            sandbox = FlinksSandbox(
                username=FLINKS_USERNAME, password=FLINKS_PASSWORD, latency_ms=self.latency_ms
            )
            sandbox.start()
            self._exits.append(sandbox.stop)
        else:
            moto_url, sandbox_url = self._start_fakes_process(with_moto=self.fakes == "separate-process")
            if moto_url:
                os.environ["AWS_ENDPOINT_URL"] = moto_url
                self._exits.append(lambda: os.environ.pop("AWS_ENDPOINT_URL", None))
            sandbox = SandboxAdmin(sandbox_url)
        self.sandbox = sandbox
        session = boto3.Session(region_name="us-east-1")

        def deploy() -> InProcessStack:
            return InProcessStack(
                session,
                stack_name=STACK_NAME,
                webhook_secret=BENCH_SECRET,
                flinks_username=FLINKS_USERNAME,
                flinks_password=FLINKS_PASSWORD,
            )

        if self.fakes == "memory":
            from benchmarks import aws_stub

            with mock_aws():  # only to learn the names and ARNs CloudFormation would give
                self.stack = deploy()
            aws_stub.install()
            aws_stub.remember_items()
            self._exits.append(aws_stub.uninstall)
            aws_stub.set_secret(self.stack.ref("WebhookSecret"), {"current": BENCH_SECRET})
            aws_stub.set_secret(
                self.stack.ref("FlinksApiSecret"), {"username": FLINKS_USERNAME, "password": FLINKS_PASSWORD}
            )
            self._feed = None
        else:
            self.stack = deploy()
            self._feed = self.stack.feed()
        self._apply_environment()
        if self._count_aws_calls:
            recording = aws_calls_recorded()
            self.aws_calls = recording.__enter__()
            self._exits.append(lambda: recording.__exit__(None, None, None))
        self.stack.cold_containers()
        return self

    def _start_fakes_process(self, *, with_moto: bool) -> tuple[str, str]:
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
        self.stack.cold_containers()
        while self._exits:
            self._exits.pop()()

    def _apply_environment(self) -> None:
        os.environ.update(self.stack.environment("WebhookReceiverFunction"))
        os.environ.update(
            self.stack.environment(
                "DecisionProcessorFunction",
                FLINKS_BASE_URL=self.sandbox.base_url,
                PROCESSOR_POOL_SIZE=str(self.pool_size),
            )
        )

    def set_pool_size(self, pool_size: int) -> None:
        """A new processor container with this pool size (its composition root is rebuilt)."""
        self.pool_size = pool_size
        os.environ["PROCESSOR_POOL_SIZE"] = str(pool_size)
        self.stack.processor._dependencies.cache_clear()

    # -- the pipeline ------------------------------------------------------------------------------

    def new_sessions(self, count: int) -> list[str]:
        return [self.sandbox.add_session() for _ in range(count)]

    def webhook_event(self, session_id: str, *, status: str | None = None) -> dict[str, Any]:
        """The committed event's body for the session (or, with ``status``, its final-status one), signed."""
        if status is not None:
            return self.stack.webhook(session_id, status=status)
        when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.stack.webhook(session_id, when=when, referenceId=f"BENCH-{session_id[:8]}", amount=500)

    def receive(self, session_id: str, *, status: str | None = None) -> float:
        """Deliver one signed guarantee webhook (or, with ``status``, the session's final-status
        webhook) to the receiver; the handler's time in ms."""
        event = self.webhook_event(session_id, status=status)
        started = time.perf_counter()
        response = self.stack.invoke_receiver(event)
        elapsed = (time.perf_counter() - started) * 1000
        expected = "status-recorded" if status else "stored"
        if response["statusCode"] != 200 or json.loads(response["body"])["outcome"] != expected:
            raise RuntimeError(f"receiver answered {response}")
        return elapsed

    def next_event(self) -> dict[str, Any]:
        """Every stream record written since the last call that passes the FilterCriteria, as one batch."""
        if self._feed is None:
            return self._memory_stream_event()
        return self._feed.next_event()

    def _memory_stream_event(self) -> dict[str, Any]:
        """INSERT records for the items PutItem stored since the last call, as Lambda delivers them."""
        from benchmarks import aws_stub
        from testkit.streams import filter_patterns, matches_any

        mapping = self.stack.deployment.template["Resources"]["DecisionProcessorFunctionGuaranteeStream"]
        patterns = filter_patterns(mapping["Properties"])
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
                "eventSourceARN": self.stack.get_att("GuaranteesTable", "StreamArn"),
                "dynamodb": {
                    "ApproximateCreationDateTime": int(time.time()),
                    "Keys": {"pk": item["pk"], "sk": item["sk"]},
                    "NewImage": item,
                    "SequenceNumber": sequence,
                    "SizeBytes": len(json.dumps(item)),
                    "StreamViewType": "NEW_IMAGE",
                },
            }
            if matches_any(patterns, record):
                records.append(record)
        return {"Records": records}

    def process(self, event: dict[str, Any]) -> float:
        """Invoke the processor with one stream batch; the handler's time in ms. Every record must
        come out confirmed (nothing retried)."""
        started = time.perf_counter()
        response = self.stack.invoke_processor(event)
        elapsed = (time.perf_counter() - started) * 1000
        if response != {"batchItemFailures": []}:
            raise RuntimeError(f"processor reported failures: {response}")
        return elapsed

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
        confirms: dict[str, list[bool]] = {}
        for entry in self.sandbox.calls():
            if entry.endpoint == "confirm" and entry.decision is not None and entry.session_id:
                confirms.setdefault(entry.session_id, []).append(entry.decision)
        if self.fakes != "memory":  # the memory fakes have no table to read back
            wanted = set(sessions)
            statuses = {
                item["pk"]: item["status"]
                for item in self.stack.items()
                if item["pk"] in wanted and str(item["sk"]).startswith("GUARANTEE#")
            }
            not_confirmed = {sid: status for sid, status in statuses.items() if status != "CONFIRMED"}
            if len(statuses) != len(wanted) or not_confirmed:
                raise RuntimeError(f"not every guarantee was confirmed: {not_confirmed or 'missing items'}")
        missing = [sid for sid in sessions if confirms.get(sid) != [True]]
        if missing:
            raise RuntimeError(f"{len(missing)} sessions were not confirmed exactly once")
