"""The whole pipeline on one machine: ``make local`` (``python -m geft_local.stack``).

``LocalStack`` starts, from template.yaml itself:

* AWS: moto in server mode on 127.0.0.1, with the template's tables (and streams), queues and secrets;
* one warm container (``workers.FunctionWorker``) per ``AWS::Lambda::Function`` SAM's transform makes
  of the template (``testkit.template.Deployment``), with its environment and layers, pointed at moto;
* the HTTP API (``gateway.HttpApiGateway``) serving the HttpApi routes;
* one ``stream_pump.StreamPump`` per DynamoDB event source mapping;
* a ``schedules.Scheduler`` running the ``rate(...)`` Schedule events (``LOCAL_SCHEDULE_SECONDS`` compresses
  them; SIGUSR1 to ``make local`` runs them all at once);
* the Flinks sandbox (unless ``FLINKS_BASE_URL`` is set);
* a ``flow.FlowMonitor`` printing each guarantee as it flows;
* in moto, what only describes the stack (``control_plane``): the alarms, the dashboard, each function
  with its ``live`` alias, and the stream mappings, so ``make smoke LOCAL=1`` reads them as deployed.

``start()`` and ``stop()`` are the same code path for ``make local``, ``make demo`` and tests/e2e.
While it runs, ``<run dir>/<port>/stack.json`` holds its process id, the moto endpoint, the local URLs
and the template's outputs, resolved, and its resources as ``list-stack-resources`` would list them
(``bin/geft-ops --local`` and ``make smoke LOCAL=1`` find it); its function logs are in
``<run dir>/<port>/logs/``. A second stack on another port keeps its own; one on a taken port stops
before touching anything.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, Self, TypeVar

from geft.items import guarantee_view, ref_of_keys
from geft.models import TERMINAL_STATUSES

from geft_local.aws import EndpointSession, MotoServer
from geft_local.config import LocalConfig, LocalConfigError
from geft_local.console import Console
from geft_local.control_plane import StackResource, data_plane_resources, describe_control_plane
from geft_local.flow import FlowMonitor
from geft_local.gateway import HttpApiGateway, PortInUseError, Route, http_api_routes
from geft_local.schedules import Scheduler, schedule_rules
from geft_local.stream_pump import MappingSettings, StreamPump, dynamodb_event_sources
from geft_local.topics import TopicMonitor
from geft_local.workers import FunctionWorker, InvokeResult, function_spec
from testkit.aws import make_conditional_writes_atomic, use_fake_aws
from testkit.flinks import FlinksSandbox
from testkit.streams import streams_client
from testkit.template import (
    CreatedResources,
    Deployment,
    DeploymentError,
    load_template,
    resolve,
    resources_of_type,
)

FLINKS_BASE_URL_VARIABLE = "FLINKS_BASE_URL"
OPS_CLI_TARGET_VARIABLE = "OPS_CLI_TARGET"
_T = TypeVar("_T")


class LocalStackError(RuntimeError):
    """The local stack cannot start as configured."""


class LocalStack:
    """Start with ``start()`` (or ``with LocalStack(config) as stack``); ``stop()`` is idempotent."""

    def __init__(self, config: LocalConfig | None = None, *, console: Console | None = None) -> None:
        self.config = config or LocalConfig()
        self.console = console or Console()
        self.template: dict[str, Any] = {}
        self.parameters: dict[str, str] = {}
        self.routes: list[Route] = []
        self.mappings: list[MappingSettings] = []
        self.created = CreatedResources()
        self.deployment = Deployment({}, {}, self.config.stack_name)
        self.workers: dict[str, FunctionWorker] = {}
        self.pumps: list[StreamPump] = []
        self.sandbox: FlinksSandbox | None = None
        self.flinks_base_url = ""
        self._gateway: HttpApiGateway | None = None
        self._moto: MotoServer | None = None
        self._monitors: list[FlowMonitor] = []
        self._aws: EndpointSession | None = None
        self.scheduler: Scheduler | None = None
        self.topics: TopicMonitor | None = None
        self.stack_dir = self.config.run_dir
        self.control_plane: list[StackResource] = []
        self._wrote_state = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        config = self.config
        template = load_template(config.template_path)
        self.parameters = config.parameters(template)
        try:  # what CloudFormation deploys: rules checked, SAM's transform, false conditions dropped
            self.deployment = Deployment.of(
                template,
                self.parameters,
                stack_name=config.stack_name,
                template_dir=config.template_path.parent,
            )
        except DeploymentError as error:
            raise LocalStackError(str(error)) from None
        self.template = self.deployment.template
        self.routes = http_api_routes(self.template)
        # Bind the public port first: a taken port fails in a second, before anything else starts.
        try:
            self._gateway = HttpApiGateway(
                self.routes, self.invoke, self.console, host="127.0.0.1", port=config.port
            )
        except PortInUseError as error:
            raise LocalStackError(f"{error.strerror}: stop what uses it or set LOCAL_PORT") from None
        # Only now, with the port ours, is this stack's folder ours too: nothing of another stack is touched.
        self.stack_dir = config.run_dir / str(self._gateway.port)
        self._start_flinks()
        self._moto = MotoServer()
        self._moto.start()
        make_conditional_writes_atomic()
        self._aws = EndpointSession(self._moto.url)
        # the functions are named too: one function's environment (or the control plane) may name another
        self.created = self.deployment.create(
            self._aws,
            webhook_secret=config.webhook_secret,
            flinks_username=config.flinks_username,
            flinks_password=config.flinks_password,
        )
        self.mappings = dynamodb_event_sources(self.template, self.created, self.parameters)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="control-plane") as background:
            # moto calls, while the containers start: created is only read meanwhile
            describing = background.submit(
                describe_control_plane,
                self.template,
                session=self._aws,
                created=self.created,
                parameters=self.parameters,
            )
            self._start_workers()
            plane = describing.result()
        self.control_plane = plane.resources
        self.created.refs.update(plane.refs)
        streams = streams_client(self._aws)
        sqs = self._aws.client("sqs")
        for settings in self.mappings:
            if not settings.enabled:
                self.console.emit("stream", f"{settings.function_logical_id}: mapping disabled (Enabled)")
                continue
            worker = self.workers[settings.function_logical_id]
            pump = StreamPump(
                settings,
                function_name=worker.spec.function_name,
                streams=streams,
                sqs=sqs,
                invoke=worker.invoke,
                console=self.console,
            )
            pump.start()
            self.pumps.append(pump)
        for stream_arn in sorted({settings.stream_arn for settings in self.mappings}):
            monitor = FlowMonitor(
                streams=streams_client(self._aws), stream_arn=stream_arn, console=self.console
            )
            monitor.start()
            self._monitors.append(monitor)
        self.scheduler = Scheduler(
            schedule_rules(self.template, self.created, self.parameters),
            invoke=self.invoke,
            console=self.console,
            interval_override_s=config.schedule_seconds,
        )
        self.scheduler.start()
        self.topics = TopicMonitor(self._aws, self.created, self.console)
        self.topics.start()
        self._gateway.start()
        self._write_state()

    def _start_flinks(self) -> None:
        config = self.config
        if config.flinks_base_url:
            self.flinks_base_url = config.flinks_base_url
            return
        sandbox = FlinksSandbox(
            port=config.sandbox_port, username=config.flinks_username, password=config.flinks_password
        )
        try:
            sandbox.start()
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise LocalStackError(
                    f"port {config.sandbox_port} on 127.0.0.1 is already in use: stop what uses it or "
                    "set FLINKS_SANDBOX_PORT"
                ) from None
            raise
        self.sandbox = sandbox
        self.flinks_base_url = sandbox.base_url

    def _start_workers(self) -> None:
        assert self._moto is not None
        log_dir = self.stack_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        template_dir = self.config.template_path.parent
        for logical_id in resources_of_type(self.template, "AWS::Lambda::Function"):
            environment = self.deployment.environment(logical_id)
            if FLINKS_BASE_URL_VARIABLE in environment:
                environment[FLINKS_BASE_URL_VARIABLE] = self.flinks_base_url
            if OPS_CLI_TARGET_VARIABLE in environment:  # notices tell the operator the local command
                environment[OPS_CLI_TARGET_VARIABLE] = "--local"
            spec = function_spec(
                self.template,
                logical_id,
                function_name=self.deployment.function_name(logical_id),
                environment=environment,
                template_dir=template_dir,
            )
            log_path = log_dir / f"{logical_id}.log"
            log_path.write_text("", encoding="utf-8")
            self.workers[logical_id] = FunctionWorker(
                spec, aws_environment=self._moto.environment(), log_path=log_path, console=self.console
            )
        _all_at_once(worker.start for worker in self.workers.values())
        for name, worker in self.workers.items():
            self.console.emit("lambda", f"{name}: container pid {worker.pid} ready ({worker.spec.handler})")

    def stop(self) -> None:
        """Close the gateway, stop the pumps, end every container, stop the sandbox and moto."""
        if self._wrote_state:
            self.state_path.unlink(missing_ok=True)
            self._wrote_state = False
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            gateway.stop()
        scheduler, topics = self.scheduler, self.topics
        self.scheduler = self.topics = None
        stopping = (*self.pumps, *self._monitors, scheduler, topics)
        loops = [loop for loop in stopping if loop is not None]
        for loop in loops:
            loop.signal_stop()  # all at once: an invoke in flight ends when its container stops
        _all_at_once((worker.stop for worker in self.workers.values()), timeout=15.0)
        for loop in loops:
            loop.stop()
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            sandbox.stop()
        moto, self._moto = self._moto, None
        if moto is not None:
            moto.stop()
        self.pumps, self._monitors = [], []

    @property
    def state_path(self) -> Path:
        return self.stack_dir / "stack.json"

    def outputs(self) -> dict[str, str]:
        """The template's Outputs as the local stack resolves them (WebhookUrl: the local route)."""
        outputs = {}
        for name, output in self.template.get("Outputs", {}).items():
            try:
                outputs[name] = resolve(output.get("Value"), self.created, self.parameters)
            except (ValueError, KeyError):
                continue  # Fn::Sub of things that do not exist locally (API ids, dashboards)
        outputs["WebhookUrl"] = self.webhook_url
        return outputs

    def stack_resources(self) -> list[StackResource]:
        """What ``aws cloudformation list-stack-resources`` would list for this stack."""
        return [*data_plane_resources(self.template, self.created), *self.control_plane]

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "port": self._gateway.port if self._gateway else None,
            "region": "us-east-1",
            "endpointUrl": self.moto_url,
            "webhookUrl": self.webhook_url,
            "webhookSecret": self.config.webhook_secret,
            "flinksBaseUrl": self.flinks_base_url,
            "stackName": self.config.stack_name,
            "outputs": self.outputs(),
            "resources": [resource.to_json() for resource in self.stack_resources()],
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        self._wrote_state = True

    # -- what a caller needs -----------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return _running(self._gateway).url

    @property
    def webhook_url(self) -> str:
        """The most specific HttpApi route with a fixed path (the template's webhook route)."""
        fixed = [route for route in self.routes if route.path != "$default"]
        return self.gateway_url + (fixed[0].path if fixed else "/")

    @property
    def aws(self) -> EndpointSession:
        return _running(self._aws)

    @property
    def moto_url(self) -> str:
        return self.aws.endpoint_url

    @property
    def pipeline_table(self) -> str:
        """The table whose stream feeds the first event source mapping."""
        for logical_id in resources_of_type(self.template, "AWS::DynamoDB::Table"):
            stream_arn = self.created.attributes.get((logical_id, "StreamArn"))
            if self.mappings and stream_arn == self.mappings[0].stream_arn:
                return self.created.ref(logical_id)
        raise LookupError("no table feeds an event source mapping")

    def on_failure_queue_url(self) -> str | None:
        for settings in self.mappings:
            if settings.on_failure_destination:
                name = settings.on_failure_destination.rsplit(":", 1)[-1]
                return str(self.aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])
        return None

    def run_schedules_now(self, cause: str = "asked") -> threading.Thread | None:
        """Every ``rate(...)`` schedule once, now, on a thread (``make local``: on SIGUSR1)."""
        scheduler = self.scheduler
        return scheduler.run_all_now(cause) if scheduler is not None else None

    def invoke(self, logical_id: str, event: dict[str, Any]) -> InvokeResult:
        return self.workers[logical_id].invoke(event)

    def ports(self) -> list[int]:
        ports = []
        if self._gateway is not None:
            ports.append(self._gateway.port)
        if self.sandbox is not None:
            ports.append(self.sandbox.port)
        if self._moto is not None:
            ports.append(self._moto.port)
        return ports

    def child_pids(self) -> list[int]:
        return [pid for worker in self.workers.values() for pid in worker.pids()]

    def items(self, partition_key: str) -> list[dict[str, Any]]:
        """Every item of the pipeline table under ``partition_key``, deserialized."""
        from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415

        deserializer = TypeDeserializer()
        response = self.aws.client("dynamodb").query(
            TableName=self.pipeline_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": partition_key}},
            ConsistentRead=True,
        )
        return [
            {name: deserializer.deserialize(value) for name, value in item.items()}
            for item in response["Items"]
        ]

    def guarantees(self, session_id: str) -> list[dict[str, Any]]:
        return [item for item in self.items(session_id) if ref_of_keys(item) is not None]

    def wait_for_guarantee(
        self, session_id: str, *, timeout: float, statuses: frozenset[str] = TERMINAL_STATUSES
    ) -> dict[str, Any] | None:
        """The session's guarantee once its status is one of ``statuses``; None after ``timeout`` s."""

        def reached() -> dict[str, Any] | None:
            items = self.guarantees(session_id)
            return next(
                (item for item in items if (view := guarantee_view(item)) and view.status in statuses), None
            )

        return poll_until(reached, timeout=timeout)


def poll_until(probe: Callable[[], _T | None], *, timeout: float, interval: float = 0.05) -> _T | None:
    """Call ``probe`` until it returns something (returned) or ``timeout`` seconds pass (None)."""
    give_up_at = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None or time.monotonic() >= give_up_at:
            return value
        time.sleep(interval)


# -- make local ----------------------------------------------------------------------------------------


def banner(stack: LocalStack) -> str:
    config = stack.config
    logs = ", ".join(_relative(worker.log_path) for worker in stack.workers.values())
    sandbox = (
        f"{stack.flinks_base_url}  (user {config.flinks_username}; admin API /_sandbox/)"
        if stack.sandbox is not None
        else f"{stack.flinks_base_url}  (FLINKS_BASE_URL: no sandbox started)"
    )
    lines = [
        "geft local stack: moto, one warm container per function, stream pump, Flinks sandbox",
        f"  Webhook URL     {stack.webhook_url}",
        f"  Webhook secret  {config.webhook_secret}   (local only: never use it anywhere else)",
        f"  Flinks sandbox  {sandbox}",
        f"  AWS (moto)      {stack.moto_url}  table {stack.pipeline_table}",
        f"  Function logs   {logs}",
        f"  Schedules       {schedules_line(stack)}",
        f"  Try it          {example_command(stack)}",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def schedules_line(stack: LocalStack) -> str:
    seconds = stack.config.schedule_seconds
    if seconds is None:
        when = "as the template says"
    elif seconds == 0:
        when = "only when asked (LOCAL_SCHEDULE_SECONDS=0)"
    else:
        when = f"every {seconds:g} s (LOCAL_SCHEDULE_SECONDS)"
    return f"rate(...) {when}; kill -USR1 {os.getpid()} runs them all now"


def example_command(stack: LocalStack) -> str:
    """One shell line: register an accepted session in the sandbox, then send Flinks' signed webhook."""
    python = f"PYTHONPATH=local:layers/shared {shlex.quote(_relative(Path(sys.executable)))}"
    sign = f"{python} -m geft_local.sign --secret {shlex.quote(stack.config.webhook_secret)} -"
    fields = '\\"type\\":\\"GuaranteeEmitted\\",\\"when\\":\\"$(date -u +%FT%TZ)\\"'
    body = f'"{{{fields},\\"sessionId\\":\\"$sid\\",\\"amount\\":250}}"'
    if stack.sandbox is not None:
        register = (
            f'sid=$(curl -s -X POST {stack.flinks_base_url}/_sandbox/sessions -d \'{{"preset":"accept"}}\' '
            '| sed -E \'s/.*"sessionId":"([^"]+)".*/\\1/\')'
        )
    else:
        register = "sid=$(python3 -c 'import uuid; print(uuid.uuid4())')"
    return (
        f"{register}; body={body}; curl -s {stack.webhook_url} -H 'content-type: application/json' "
        f'-H "x-webhook-signature: $(printf %s "$body" | {sign})" --data-binary "$body"; echo'
    )


def _all_at_once(calls: Iterable[Callable[[], None]], *, timeout: float | None = None) -> None:
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)


def _running(part: _T | None) -> _T:
    if part is None:
        raise RuntimeError("the local stack is not running")
    return part


def _relative(path: Path) -> str:
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def configured(program: str) -> LocalConfig | None:
    """The configuration the environment gives, AWS calls pointed at moto; None once stderr says why not."""
    try:
        config = LocalConfig.from_env(os.environ)
    except LocalConfigError as error:
        print(f"{program}: {error}", file=sys.stderr)
        return None
    use_fake_aws()
    return config


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        from geft_local import config as config_module  # noqa: PLC0415

        print(config_module.__doc__)
        return 0
    config = configured("geft-local")
    if config is None:
        return 2
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop_requested.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting politely
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack = LocalStack(config, console=Console(sys.stdout))
    try:
        stack.start()
    except (LocalConfigError, LocalStackError) as error:
        print(f"geft-local: {error}", file=sys.stderr)
        return 2
    # Installed before the banner: whoever waits for it may signal at once (the default would kill us).
    signal.signal(signal.SIGUSR1, lambda signum, frame: stack.run_schedules_now("SIGUSR1"))
    try:
        print(banner(stack), flush=True)
        while not stop_requested.wait(0.5):
            pass
        print("stopping...", flush=True)
    finally:
        stack.stop()
    print("stopped: containers ended, ports closed", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
