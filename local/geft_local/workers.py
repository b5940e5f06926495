"""Local Lambda containers: each function runs warm in its own long-lived subprocess.

A ``FunctionWorker`` starts ``lambda_runtime.py`` with the function's CodeUri and layers on PYTHONPATH
(nothing else) and the environment SAM would give it, then sends it one invoke at a time. Module state
and caches survive between invokes, as in a warm Lambda container. The protocol is JSON lines: requests
on the child's stdin, replies on a separate pipe (the child's stdout and stderr are the function's log,
written to a file, because Powertools Logger writes JSON logs to stdout). See ``lambda_runtime``.

Like Lambda, the worker enforces the function's Timeout: an invoke that overruns it is a function
error (``Sandbox.Timedout``) and the container is killed. A container that dies for any reason is
reported on the console and replaced by a new one (a cold start).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geft_local.console import Console
from testkit.template import function_arn

RUNTIME_SCRIPT = Path(__file__).resolve().with_name("lambda_runtime.py")
INIT_TIMEOUT_S = 10.0
"""Lambda's limit for a function's init phase."""
_IPC_GRACE_S = 0.25
_DEFAULT_TIMEOUT_S = 3.0
_DEFAULT_MEMORY_MB = 128


@dataclass(frozen=True)
class FunctionSpec:
    """What the worker needs to run one function the way Lambda would."""

    logical_id: str
    function_name: str
    handler: str
    code_uri: Path
    layer_paths: tuple[Path, ...]
    timeout_s: float
    memory_mb: int
    runtime: str
    environment: Mapping[str, str]
    """The function's own variables (Globals + its Environment, resolved, overrides applied)."""

    @property
    def arn(self) -> str:
        return function_arn(self.function_name)

    def process_environment(self, aws: Mapping[str, str]) -> dict[str, str]:
        """The whole environment of the container: the function's variables, then what Lambda itself
        sets (which a function cannot override), then ``aws`` (endpoint, region, credentials)."""
        python_path = os.pathsep.join(str(path) for path in (self.code_uri, *self.layer_paths))
        return {
            **self.environment,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{self.runtime}",
            "LAMBDA_TASK_ROOT": str(self.code_uri),
            "_HANDLER": self.handler,
            "PYTHONPATH": python_path,
            "PYTHONUNBUFFERED": "1",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            # No profile or shared file of the developer's can leak in.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **aws,
        }


def function_spec(
    template: Mapping[str, Any],
    logical_id: str,
    *,
    function_name: str,
    environment: Mapping[str, str],
    template_dir: Path,
) -> FunctionSpec:
    """Read one ``AWS::Lambda::Function`` as SAM generated it (``testkit.template.Deployment``: Globals
    merged, layers joined); its code and layers are the local folders their S3 keys name."""
    properties = template["Resources"][logical_id]["Properties"]
    layers = []
    for layer in properties.get("Layers", []):
        resource = template["Resources"].get(layer.get("Ref") if isinstance(layer, Mapping) else None, {})
        if resource.get("Type") != "AWS::Lambda::LayerVersion":
            raise ValueError(f"{logical_id}: layer {layer!r} is not one of the template's layers")
        layers.append((template_dir / resource["Properties"]["Content"]["S3Key"]).resolve())
    return FunctionSpec(
        logical_id=logical_id,
        function_name=function_name,
        handler=str(properties["Handler"]),
        code_uri=(template_dir / properties["Code"]["S3Key"]).resolve(),
        layer_paths=tuple(layers),
        timeout_s=float(properties.get("Timeout", _DEFAULT_TIMEOUT_S)),
        memory_mb=int(properties.get("MemorySize", _DEFAULT_MEMORY_MB)),
        runtime=str(properties.get("Runtime", "python3")),
        environment=dict(environment),
    )


@dataclass(frozen=True)
class InvokeResult:
    """One invoke's outcome, as Lambda's Invoke API reports it (FunctionError when it failed)."""

    request_id: str
    payload: Any = None
    error_type: str | None = None
    error_message: str | None = None
    duration_ms: float = 0.0

    @property
    def function_error(self) -> bool:
        return self.error_type is not None

    @classmethod
    def failed(cls, request_id: str, error_type: str, message: str, duration_ms: float) -> InvokeResult:
        """A function error whose payload is the error document, as Lambda answers one."""
        document = {"errorType": error_type, "errorMessage": message}
        return cls(request_id, document, error_type, message, duration_ms)


class _PipeClosedError(Exception):
    """The container's reply pipe closed: the process ended."""


class _Container:
    """One child process and the parent's ends of its pipes."""

    def __init__(self, process: subprocess.Popen[bytes], reply_fd: int) -> None:
        self.process = process
        self._reply_fd = reply_fd
        self._buffer = b""
        self.ready = False
        self.init_ms = 0.0
        self.exit_reason: str | None = None
        """Set by the parent when it ends the container on purpose (timeout)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, document: Mapping[str, Any]) -> bool:
        stdin = self.process.stdin
        if stdin is None:
            return False
        try:
            stdin.write(json.dumps(document, separators=(",", ":")).encode("utf-8") + b"\n")
            stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            return False
        return True

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next reply, or None when ``deadline`` (monotonic) passed. Raises ``_PipeClosedError``
        when the child closed its end (it exited)."""
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                readable, _, _ = select.select([self._reply_fd], [], [], remaining)
                chunk = os.read(self._reply_fd, 1 << 16) if readable else None
            except (OSError, ValueError) as error:
                raise _PipeClosedError from error
            if chunk is None:
                return None
            if not chunk:
                raise _PipeClosedError
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        document: dict[str, Any] = json.loads(line)
        return document

    def close_pipes(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._reply_fd)
        self._reply_fd = -1
        if self.process.stdin is not None:
            with contextlib.suppress(OSError, BrokenPipeError):
                self.process.stdin.close()

    def end(self, grace_s: float) -> None:
        """Close stdin (an idle runtime exits at once), then SIGTERM, then SIGKILL the process group."""
        if self.process.poll() is None and self.process.stdin is not None:
            with contextlib.suppress(OSError, BrokenPipeError):
                self.process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(min(0.5, grace_s))
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)


class FunctionWorker:
    """One warm container per function; invokes are serialized (one container runs one at a time)."""

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        aws_environment: Mapping[str, str],
        log_path: Path,
        console: Console,
        kill_grace_s: float = 2.0,
    ) -> None:
        self.spec = spec
        self._environment = spec.process_environment(aws_environment)
        self.log_path = log_path
        self._console = console
        self._kill_grace_s = kill_grace_s
        self._lock = threading.Lock()  # one invoke (or container start) at a time
        self._registry = threading.Lock()  # guards _stopping and _live against stop()
        self._stopping = False
        self._live: set[_Container] = set()
        self._container: _Container | None = None
        self._watchers: list[threading.Thread] = []

    @property
    def name(self) -> str:
        return self.spec.logical_id

    @property
    def pid(self) -> int | None:
        container = self._container
        return container.pid if container is not None else None

    def pids(self) -> list[int]:
        with self._registry:
            return [container.pid for container in self._live]

    def start(self) -> None:
        """Start the first container now (a provisioned cold start) and wait for its init."""
        with self._lock:
            if self._container is None:
                self._start_container()

    def invoke(self, event: Any, *, request_id: str | None = None) -> InvokeResult:
        request_id = request_id or str(uuid.uuid4())
        with self._lock:
            if self._stopping:
                return InvokeResult(request_id, error_type="Local.Stopped", error_message="stack stopping")
            started = time.monotonic()
            container = self._container or self._start_container()
            if container is None or not container.ready:
                return InvokeResult(
                    request_id,
                    error_type="Runtime.ImportModuleError" if not self._stopping else "Local.Stopped",
                    error_message=f"{self.name}: the container did not initialize (see {self.log_path})",
                )
            deadline_epoch_ms = int(time.time() * 1000 + self.spec.timeout_s * 1000)
            request = {
                "requestId": request_id,
                "deadlineMs": deadline_epoch_ms,
                "invokedFunctionArn": self.spec.arn,
                "event": event,
            }
            try:
                if not container.send(request):
                    raise _PipeClosedError
                reply = container.receive(time.monotonic() + self.spec.timeout_s + _IPC_GRACE_S)
            except _PipeClosedError:
                return self._died(container, request_id, (time.monotonic() - started) * 1000)
            duration_ms = (time.monotonic() - started) * 1000
            if reply is None:
                return self._timed_out(container, request_id, duration_ms)
            if reply.get("type") == "result":
                return InvokeResult(request_id, payload=reply.get("payload"), duration_ms=duration_ms)
            error = reply.get("error") or {}
            return InvokeResult(
                request_id,
                payload=error,
                error_type=str(error.get("errorType", "Unhandled")),
                error_message=str(error.get("errorMessage", "")),
                duration_ms=duration_ms,
            )

    def stop(self) -> None:
        """End every container (no orphans): close stdin, SIGTERM, then SIGKILL after the grace."""
        with self._registry:
            self._stopping = True
            containers = list(self._live)
        for container in containers:
            container.end(self._kill_grace_s)
        for watcher in list(self._watchers):
            watcher.join(timeout=self._kill_grace_s + 5.0)

    # -- containers (called with self._lock held) --------------------------------------------------

    def _start_container(self) -> _Container | None:
        log = self.log_path.open("ab")
        read_fd, write_fd = os.pipe()
        try:
            with self._registry:
                if self._stopping:
                    return None
                process = subprocess.Popen(  # noqa: S603 - our own interpreter and runtime script
                    [sys.executable, "-P", str(RUNTIME_SCRIPT), "--reply-fd", str(write_fd)],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._environment,
                    cwd=self.spec.code_uri,
                    pass_fds=(write_fd,),
                    process_group=0,  # Ctrl-C in the terminal reaches the orchestrator only
                )
                container = _Container(process, read_fd)
                self._live.add(container)
        finally:
            os.close(write_fd)
            log.close()
        self._container = container
        watcher = threading.Thread(
            target=self._watch, args=(container,), name=f"watch-{self.name}", daemon=True
        )
        self._watchers = [thread for thread in self._watchers if thread.is_alive()] + [watcher]
        watcher.start()
        try:
            reply = container.receive(time.monotonic() + INIT_TIMEOUT_S)
        except _PipeClosedError:
            reply = None
        if reply is not None and reply.get("type") == "ready":
            container.ready = True
            container.init_ms = float(reply.get("initMs", 0.0))
            return container
        if reply is not None and reply.get("type") == "init-error":
            error = reply.get("error", {})
            container.exit_reason = f"init failed: {error.get('errorType')}: {error.get('errorMessage')}"
        else:
            container.exit_reason = f"init did not finish within {INIT_TIMEOUT_S:.0f}s"
        self._console.emit("lambda", f"{self.name}: {container.exit_reason} (see {self.log_path})")
        self._container = None
        container.end(self._kill_grace_s)
        return container

    def _timed_out(self, container: _Container, request_id: str, duration_ms: float) -> InvokeResult:
        message = f"Task timed out after {self.spec.timeout_s:.2f} seconds"
        container.exit_reason = f"killed: invoke {request_id} timed out after {self.spec.timeout_s:g}s"
        self._append_log(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {request_id} {message}")
        self._container = None
        container.end(0.0)
        return InvokeResult.failed(request_id, "Sandbox.Timedout", message, duration_ms)

    def _died(self, container: _Container, request_id: str, duration_ms: float) -> InvokeResult:
        with contextlib.suppress(subprocess.TimeoutExpired):
            container.process.wait(2.0)
        message = f"RequestId: {request_id} Error: Runtime exited {_exit_text(container.process.returncode)}"
        self._container = None
        return InvokeResult.failed(request_id, "Runtime.ExitError", message, duration_ms)

    def _watch(self, container: _Container) -> None:
        """Wait for the container to end; report it and start a new one unless we are stopping."""
        code = container.process.wait()
        with self._registry:
            self._live.discard(container)
        reason = container.exit_reason or f"exited {_exit_text(code)}"
        with self._lock:  # no invoke is reading the pipes while they are closed
            container.close_pipes()
            if self._stopping or not container.ready:
                return  # after an init failure the next invoke tries a new container (no crash loop)
            if self._container is container:
                self._container = None
            if self._container is not None:  # an invoke already started its replacement
                self._console.emit(
                    "lambda",
                    f"{self.name}: container pid {container.pid} {reason}; "
                    f"replaced by container pid {self._container.pid}",
                )
                return
            self._console.emit(
                "lambda", f"{self.name}: container pid {container.pid} {reason}; starting a new container"
            )
            replacement = self._start_container()
            if replacement is not None and replacement.ready:
                self._console.emit(
                    "lambda",
                    f"{self.name}: new container pid {replacement.pid} ready "
                    f"(init {replacement.init_ms:.0f} ms)",
                )

    def _append_log(self, line: str) -> None:
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(line + "\n")


def _exit_text(code: int | None) -> str:
    if code is None:
        return "(still running)"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"with signal {signal.Signals(-code).name}"
        return f"with signal {-code}"
    return f"with code {code}"
