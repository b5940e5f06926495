"""The AWS path as a discrete-event simulation: webhook -> API Gateway -> receiver -> DynamoDB stream ->
Lambda's stream poller -> processor (thread pool, token pool) -> Flinks.

What is modelled, and how (each choice is a documented Lambda or DynamoDB behaviour, or a named
assumption in ``measured.AwsAssumptions``):

* **Arrivals**: Poisson (or evenly spaced) at a rate, with bursts at a multiple of it, or a measured
  trace of send times. Flinks delivers each webhook up to 3 times; a delivery that API Gateway's route
  throttle or the receiver's concurrency limit refuses is re-sent later, and three refusals lose it.
* **Receiver**: one invocation per request. On AWS a request takes an idle container or starts one
  (a cold start) up to the concurrency limit; on the local stack one container serves them one at a
  time (``single_container``). The stored item enters the table's stream when the invocation ends.
* **Stream**: records go to a shard by partition key (the session id) and keep their write order.
  Each shard is polled every ``poll_interval_s`` (Lambda: 4 times a second) and at once after one of
  its batches ends. ``parallelization_factor`` lanes per shard, a key always in the same lane, so
  records of one session stay in order; each lane runs one batch at a time. A batch closes at
  ``batch_size`` records, or after ``batching_window_s`` from its first record (0: at once).
* **Processor**: a lane's batch takes an idle container or starts one up to the concurrency limit
  (otherwise the lane waits and retries: a throttle). Sessions of a batch run in a thread pool;
  each runs claim (write) -> authorize (unless the container's token pool has a token) -> details ->
  confirm -> record (write), with its CPU spread between the steps and queued on the container's one
  CPU (the GIL). A session whose Flinks call fails ``RetryPolicy.max_attempts`` times is retried by
  the stream (its record re-delivered after the batch).
* **Token pool** (per container, ``token_pool_size``; 0 = off): topped up with background authorize
  calls while an invocation runs; a container frozen between invocations pauses them (Lambda freezes
  the environment). A token is used once and never after ``lifetime - margin``: an expired one is
  counted as waste.
* **Flinks**: every call takes a latency draw; with ``error_rate`` it fails (a 5xx after that time)
  and is retried after ``geft.backoff.backoff_delay`` (the processor's own policy).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field, fields, replace

from geft.backoff import RetryPolicy, backoff_delay

from benchmarks.common import percentile
from capacity.des import Simulation
from capacity.samplers import Fixed, Sampler

NO_TIME = Fixed(0.0)
DELIVERY_ATTEMPTS = 3
"""Flinks fails the customer's session after three failed deliveries of the guarantee webhook."""


@dataclass(frozen=True)
class Burst:
    start_s: float
    duration_s: float
    factor: float


@dataclass(frozen=True)
class Arrivals:
    rate_per_s: float
    guarantees: int
    regular: bool = False
    """Evenly spaced instead of Poisson."""
    bursts: tuple[Burst, ...] = ()
    trace_s: tuple[float, ...] | None = None
    """Measured send times (seconds from the start): replace the rate, the process and the count."""
    key_space: int | None = None
    """Draw each guarantee's session from this many sessions (None: every guarantee its own session)."""

    def times(self, rng: random.Random) -> list[float]:
        if self.trace_s is not None:
            return sorted(self.trace_s)
        if self.rate_per_s <= 0 or self.guarantees <= 0:
            raise ValueError("arrivals need a positive rate and count")
        now, times = 0.0, []
        for _ in range(self.guarantees):
            times.append(now)
            rate = self.rate_at(now)
            now += 1 / rate if self.regular else rng.expovariate(rate)
        return times

    def rate_at(self, when: float) -> float:
        factor = 1.0
        for burst in self.bursts:
            if burst.start_s <= when < burst.start_s + burst.duration_s:
                factor *= burst.factor
        return self.rate_per_s * factor


@dataclass(frozen=True)
class ReceiverSettings:
    service: Sampler
    """One invocation as the caller sees it: API Gateway, the handler's CPU, its PutItem."""
    single_container: bool = False
    """The local stack: one container, requests wait for it in arrival order."""
    concurrency: int = 1000
    cold_start: Sampler = NO_TIME
    warm_containers: int = 0
    api_rate_limit_per_s: float | None = None
    api_burst_limit: float | None = None
    redelivery_after_s: float = 5.0
    """When Flinks re-sends a refused delivery (undocumented: an assumption)."""


@dataclass(frozen=True)
class StreamMapping:
    """The stream's knobs an operator sets: the table's partitions (one shard each) and the event
    source mapping's ParallelizationFactor, BatchSize and MaximumBatchingWindowInSeconds."""

    shards: int = 1
    parallelization_factor: int = 1
    batch_size: int = 10
    batching_window_s: float = 0.0


@dataclass(frozen=True)
class StreamSettings(StreamMapping):
    poll_interval_s: float = 0.25
    poll_while_busy: bool = True
    """Lambda reads a shard while its batches run; the local pump is one thread that waits for each."""
    get_records: Sampler = NO_TIME
    visibility: Sampler = NO_TIME
    """From the write to the record being readable from the stream."""
    invoke_overhead: Sampler = NO_TIME
    throttle_retry_s: float = 0.5

    def with_mapping(self, mapping: StreamMapping) -> StreamSettings:
        """These settings with ``mapping``'s knobs (``mapping`` may carry more: only its own are read)."""
        return replace(self, **{knob.name: getattr(mapping, knob.name) for knob in fields(StreamMapping)})


@dataclass(frozen=True)
class ProcessorSettings:
    thread_pool: int = 16
    concurrency: int = 1000
    cpu_per_session_s: float = 0.0
    """Seconds the container's CPU is busy per session, at the function's CPU share."""
    cpu_per_invoke_s: float = 0.0
    cold_start: Sampler = NO_TIME
    warm_containers: int = 0
    token_pool_size: int = 0
    token_lifetime_s: float = 299.0
    token_margin_s: float = 30.0
    claim_writes: int = 1
    finish_writes: int = 1
    details_calls: int = 1
    confirm_calls: int = 1


@dataclass(frozen=True)
class FlinksSettings:
    latency: Sampler
    error_rate: float = 0.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class PipelineConfig:
    arrivals: Arrivals
    receiver: ReceiverSettings
    stream: StreamSettings
    processor: ProcessorSettings
    flinks: FlinksSettings
    dynamodb_write: Sampler = NO_TIME
    status_webhook_after_s: float | None = None
    """Flinks' SessionSetupStatusChanged webhook this long after the confirm (None: not sent)."""
    warm_up_fraction: float = 0.1
    """The first guarantees (containers still cold) are left out of the latency figures."""


@dataclass(frozen=True)
class SimulationResult:
    arrival_s: tuple[float, ...]
    confirm_s: tuple[float | None, ...]
    receiver_wait_s: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    invoke_durations_s: tuple[float, ...]
    receiver_init_s: tuple[float, ...]
    processor_init_s: tuple[float, ...]
    receiver_invocations: int
    receiver_busy_s: float
    receiver_cold_starts: int
    receiver_peak_concurrency: int
    processor_cold_starts: int
    processor_peak_concurrency: int
    refused_deliveries: int
    lost_sessions: int
    invoke_throttles: int
    stream_retries: int
    flinks_calls: int
    flinks_errors: int
    authorize_calls: int
    authorize_on_critical_path: int
    tokens_wasted: int
    api_peak_per_s: int
    busiest_lane_load: float
    """Of the lane nearest its limit: the share of the arrivals' span it spent on batches, times how
    full its batches were (1: every batch full, back to back; no headroom at all)."""
    warm_up: int

    @property
    def guarantees(self) -> int:
        return len(self.arrival_s)

    def latencies_s(self) -> list[float]:
        """Webhook -> confirm of every guarantee after the warm-up that was confirmed, in arrival order."""
        out = []
        for index in range(self.warm_up, len(self.arrival_s)):
            confirmed = self.confirm_s[index]
            if confirmed is not None:
                out.append(confirmed - self.arrival_s[index])
        return out

    def percentile_s(self, q: float) -> float:
        return percentile(self.latencies_s(), q)

    def keeps_up(self) -> bool:
        """No growing queue: the last quarter of guarantees waits about as long as the second quarter
        (an overloaded pipeline makes every later guarantee wait longer), and none was lost."""
        latencies = self.latencies_s()
        if self.lost_sessions or len(latencies) < 8:
            return not self.lost_sessions and bool(latencies)
        quarter = len(latencies) // 4
        second = sum(latencies[quarter : 2 * quarter]) / quarter
        last = sum(latencies[-quarter:]) / quarter
        return last <= 1.3 * second + 0.1

    def throughput_per_s(self, start_s: float, end_s: float) -> float:
        """Confirms per second within [start_s, end_s)."""
        done = sum(1 for when in self.confirm_s if when is not None and start_s <= when < end_s)
        return done / (end_s - start_s)

    def backlog_at(self, when: float) -> int:
        """Guarantees that had arrived and were not confirmed yet at ``when``."""
        arrived = sum(1 for at in self.arrival_s if at <= when)
        confirmed = sum(1 for at in self.confirm_s if at is not None and at <= when)
        return arrived - confirmed

    def mean_batch_size(self) -> float:
        return sum(self.batch_sizes) / len(self.batch_sizes) if self.batch_sizes else math.nan


def lane_of(key: int, shards: int, parallelization_factor: int) -> tuple[int, int]:
    """(shard, lane) of a partition key: stable, so one session's records always queue together."""
    mixed = (key * 2654435761 + 12345) & 0xFFFFFFFF  # Knuth's multiplicative hash
    return mixed % shards, (mixed // shards) % parallelization_factor


def simulate(config: PipelineConfig, seed: int = 1) -> SimulationResult:
    """One run; the same config and seed give the same result."""
    return _Pipeline(config, seed).run()


# -- the machinery -------------------------------------------------------------------------------------

_CPU, _WRITE, _TOKEN, _DETAILS, _CONFIRM = range(5)


class _Mint:
    __slots__ = ("due", "generation", "remaining")

    def __init__(self, remaining: float) -> None:
        self.remaining = remaining
        self.due = math.inf
        self.generation = 0


class _Container:
    __slots__ = ("active", "cpu_free_at", "mints", "tokens")

    def __init__(self) -> None:
        self.cpu_free_at = 0.0
        self.tokens: deque[float] = deque()  # mint times of unused tokens, oldest first
        self.mints: list[_Mint] = []
        self.active = False


class _Lane:
    __slots__ = ("batches", "buffer", "busy", "busy_s", "records", "throttled", "window_at")

    def __init__(self) -> None:
        self.buffer: deque[tuple[float, int]] = deque()  # (read at, guarantee), stream order
        self.busy = False
        self.busy_s = 0.0
        self.batches = self.records = 0
        self.throttled = False
        self.window_at = -1.0


class _Shard:
    __slots__ = ("lanes", "last_visible", "polling", "tick", "unread")

    def __init__(self, lanes: int) -> None:
        self.unread: deque[tuple[float, int]] = deque()  # (visible at, guarantee)
        self.lanes = [_Lane() for _ in range(lanes)]
        self.polling = False
        self.tick = 0
        self.last_visible = 0.0


class _Invocation:
    __slots__ = (
        "container",
        "done",
        "failed",
        "groups",
        "lane",
        "next",
        "records",
        "running",
        "shard",
        "started",
        "taken_at",
    )

    def __init__(
        self,
        shard: _Shard,
        lane: _Lane,
        container: _Container,
        *,
        records: list[int],
        groups: list[list[int]],
        taken_at: float,
    ) -> None:
        self.shard, self.lane, self.container, self.records = shard, lane, container, records
        self.groups = groups
        self.taken_at = taken_at
        self.started = 0.0
        self.next = self.running = self.done = 0
        self.failed: list[int] = []


class _Session:
    """One thread of the pool, working through one session's records of the batch in stream order."""

    __slots__ = ("group", "guarantee", "invocation", "position", "step")

    def __init__(self, invocation: _Invocation, group: list[int]) -> None:
        self.invocation, self.group = invocation, group
        self.position = self.step = 0
        self.guarantee = group[0]


class _Pipeline:
    def __init__(self, config: PipelineConfig, seed: int) -> None:
        self.config = config
        self.sim = Simulation()
        # Seeded generators for a simulation (S311 is about secrets); one per purpose, so a change to
        # one setting does not shift every other draw: candidates see the same arrivals and latencies.
        self.rng = {
            name: random.Random(f"{seed}:{name}")  # noqa: S311
            for name in ("arrivals", "receiver", "stream", "processor", "dynamodb", "flinks")
        }
        self.receiver, self.stream, self.processor = config.receiver, config.stream, config.processor
        arrivals = config.arrivals
        self.arrival_s = arrivals.times(self.rng["arrivals"])
        count = len(self.arrival_s)
        key_rng = random.Random(f"{seed}:keys")  # noqa: S311 - see above
        self.keys = [
            key_rng.randrange(arrivals.key_space) if arrivals.key_space else index for index in range(count)
        ]
        self.confirm_s: list[float | None] = [None] * count
        self.attempts = [0] * count
        self.receiver_wait: list[float] = []
        self.batch_sizes: list[int] = []
        self.invoke_durations: list[float] = []
        self.receiver_init: list[float] = []
        self.processor_init: list[float] = []
        self.unresolved = count
        self.status_pending = 0
        self.finished = count == 0
        # counters
        self.receiver_invocations = self.receiver_cold = self.processor_cold = 0
        self.receiver_busy = 0.0
        self.receiver_running = self.receiver_peak = self.processor_running = self.processor_peak = 0
        self.refused = self.lost = self.invoke_throttles = self.stream_retries = 0
        self.flinks_calls = self.flinks_errors = self.authorize_calls = self.authorize_on_path = 0
        self.tokens_wasted = 0
        self.api_per_second: dict[int, int] = {}
        # receiver containers
        self.receiver_idle = self.receiver.warm_containers
        self.receiver_count = self.receiver.warm_containers
        self.receiver_free_at = 0.0
        self.bucket = self.receiver.api_burst_limit or 0.0
        self.bucket_at = 0.0
        # stream and processor
        lanes = max(1, self.stream.parallelization_factor)
        self.shards = [_Shard(lanes) for _ in range(max(1, self.stream.shards))]
        self.idle_containers = [_Container() for _ in range(self.processor.warm_containers)]
        self.container_count = len(self.idle_containers)
        self.steps = self._session_steps()
        self.cpu_slice = self.processor.cpu_per_session_s / max(1, self.steps.count(_CPU))

    def _session_steps(self) -> tuple[int, ...]:
        p = self.processor
        io = (
            [_WRITE] * p.claim_writes
            + [_TOKEN]
            + [_DETAILS] * p.details_calls
            + [_CONFIRM] * p.confirm_calls
            + [_WRITE] * p.finish_writes
        )
        if p.cpu_per_session_s <= 0:
            return tuple(io)
        steps = []
        for kind in io:
            steps += [_CPU, kind]
        return (*steps, _CPU)

    # -- run ---------------------------------------------------------------------------------------

    def run(self) -> SimulationResult:
        sim = self.sim
        for index, when in enumerate(self.arrival_s):
            sim.at(when, self._deliver, index)
        for shard in self.shards:
            sim.at(self.rng["stream"].random() * self.stream.poll_interval_s, self._tick, shard, 0)
        sim.run()
        warm_up = int(len(self.arrival_s) * self.config.warm_up_fraction)
        if self.config.arrivals.trace_s is not None:
            warm_up = 0
        return SimulationResult(
            arrival_s=tuple(self.arrival_s),
            confirm_s=tuple(self.confirm_s),
            receiver_wait_s=tuple(self.receiver_wait),
            batch_sizes=tuple(self.batch_sizes),
            invoke_durations_s=tuple(self.invoke_durations),
            receiver_init_s=tuple(self.receiver_init),
            processor_init_s=tuple(self.processor_init),
            receiver_invocations=self.receiver_invocations,
            receiver_busy_s=self.receiver_busy,
            receiver_cold_starts=self.receiver_cold,
            receiver_peak_concurrency=self.receiver_peak,
            processor_cold_starts=self.processor_cold,
            processor_peak_concurrency=self.processor_peak,
            refused_deliveries=self.refused,
            lost_sessions=self.lost,
            invoke_throttles=self.invoke_throttles,
            stream_retries=self.stream_retries,
            flinks_calls=self.flinks_calls,
            flinks_errors=self.flinks_errors,
            authorize_calls=self.authorize_calls,
            authorize_on_critical_path=self.authorize_on_path,
            tokens_wasted=self.tokens_wasted,
            api_peak_per_s=max(self.api_per_second.values(), default=0),
            busiest_lane_load=self._busiest_lane(),
            warm_up=warm_up,
        )

    def _busiest_lane(self) -> float:
        span = (self.arrival_s[-1] - self.arrival_s[0]) if len(self.arrival_s) > 1 else 0.0
        if span <= 0:
            return math.nan
        size = self.stream.batch_size
        lanes = [lane for shard in self.shards for lane in shard.lanes if lane.batches]
        return max((lane.busy_s / span * lane.records / lane.batches / size for lane in lanes), default=0.0)

    def _resolved(self) -> None:
        self.unresolved -= 1
        self._check_finished()

    def _check_finished(self) -> None:
        if self.unresolved == 0 and self.status_pending == 0:
            self.finished = True

    # -- API Gateway and the receiver ----------------------------------------------------------------

    def _deliver(self, index: int) -> None:
        self._request(index, is_status=False)

    def _status_webhook(self, index: int) -> None:
        self.status_pending -= 1
        self._request(index, is_status=True)
        self._check_finished()

    def _request(self, index: int, *, is_status: bool) -> None:
        now = self.sim.now
        second = int(now)
        self.api_per_second[second] = self.api_per_second.get(second, 0) + 1
        if not self._api_admits(now) or not self._receiver_admits(now, index, is_status):
            self.refused += 1
            if is_status:
                return  # sent once, never retried (flinks-geft.md §2); the reconciler catches up
            self.attempts[index] += 1
            if self.attempts[index] >= DELIVERY_ATTEMPTS:
                self.lost += 1
                self._resolved()
            else:
                self.sim.after(self.receiver.redelivery_after_s, self._deliver, index)

    def _api_admits(self, now: float) -> bool:
        rate, burst = self.receiver.api_rate_limit_per_s, self.receiver.api_burst_limit
        if rate is None or burst is None:
            return True
        self.bucket = min(burst, self.bucket + (now - self.bucket_at) * rate)
        self.bucket_at = now
        if self.bucket >= 1:
            self.bucket -= 1
            return True
        return False

    def _receiver_admits(self, now: float, index: int, is_status: bool) -> bool:
        receiver, rng = self.receiver, self.rng["receiver"]
        service = receiver.service.sample(rng)
        self.receiver_invocations += 1
        self.receiver_busy += service
        if receiver.single_container:
            start = max(now, self.receiver_free_at)
            self.receiver_free_at = start + service
            self.receiver_wait.append(start - now)
            self.sim.at(start + service, self._receiver_done, index, is_status, False)
            return True
        init = 0.0
        if self.receiver_idle:
            self.receiver_idle -= 1
        elif self.receiver_count < receiver.concurrency:
            self.receiver_count += 1
            self.receiver_cold += 1
            init = receiver.cold_start.sample(rng)
            self.receiver_init.append(init)
        else:
            self.receiver_invocations -= 1
            self.receiver_busy -= service
            return False
        self.receiver_wait.append(init)
        self.receiver_running += 1
        self.receiver_peak = max(self.receiver_peak, self.receiver_running)
        self.sim.after(init + service, self._receiver_done, index, is_status, True)
        return True

    def _receiver_done(self, index: int, is_status: bool, pooled: bool) -> None:
        if pooled:
            self.receiver_idle += 1
            self.receiver_running -= 1
        if is_status:
            return
        shard_number, _ = lane_of(self.keys[index], len(self.shards), len(self.shards[0].lanes))
        shard = self.shards[shard_number]
        visible = max(shard.last_visible, self.sim.now + self.stream.visibility.sample(self.rng["stream"]))
        shard.last_visible = visible
        shard.unread.append((visible, index))

    # -- the stream poller ---------------------------------------------------------------------------

    def _tick(self, shard: _Shard, generation: int) -> None:
        if generation == shard.tick and not self.finished:
            self._poll(shard)

    def _poll(self, shard: _Shard) -> None:
        if shard.polling:
            return
        if not self.stream.poll_while_busy and any(lane.busy for lane in shard.lanes):
            return  # the pump is inside an invoke; it polls again when the invoke returns
        shard.polling = True
        self.sim.after(
            self.stream.get_records.sample(self.rng["stream"]), self._poll_done, shard, self.sim.now
        )

    def _poll_done(self, shard: _Shard, issued_at: float) -> None:
        shard.polling = False
        now, unread, lanes = self.sim.now, shard.unread, shard.lanes
        shards, factor = len(self.shards), len(lanes)
        while unread and unread[0][0] <= issued_at:
            _, index = unread.popleft()
            lanes[lane_of(self.keys[index], shards, factor)[1]].buffer.append((now, index))
        for lane in lanes:
            self._try_start(shard, lane)
        shard.tick += 1
        if not self.finished:
            self.sim.after(self.stream.poll_interval_s, self._tick, shard, shard.tick)

    def _try_start(self, shard: _Shard, lane: _Lane) -> None:
        if lane.busy or lane.throttled or not lane.buffer:
            return
        stream, now = self.stream, self.sim.now
        if len(lane.buffer) < stream.batch_size and stream.batching_window_s > 0:
            closes_at = lane.buffer[0][0] + stream.batching_window_s
            if now < closes_at - 1e-12:
                if lane.window_at != closes_at:
                    lane.window_at = closes_at
                    self.sim.at(closes_at, self._try_start, shard, lane)
                return
        container, init = self._acquire_container()
        if container is None:
            lane.throttled = True
            self.invoke_throttles += 1
            self.sim.after(stream.throttle_retry_s, self._after_throttle, shard, lane)
            return
        records = [lane.buffer.popleft()[1] for _ in range(min(stream.batch_size, len(lane.buffer)))]
        groups: dict[int, list[int]] = {}
        for index in records:  # the processor runs one session's records in order, in one thread
            groups.setdefault(self.keys[index], []).append(index)
        lane.busy = True
        invocation = _Invocation(
            shard, lane, container, records=records, groups=list(groups.values()), taken_at=now
        )
        delay = init + stream.invoke_overhead.sample(self.rng["stream"])
        self.sim.after(delay, self._invoke, invocation)

    def _after_throttle(self, shard: _Shard, lane: _Lane) -> None:
        lane.throttled = False
        self._try_start(shard, lane)

    # -- the processor -------------------------------------------------------------------------------

    def _acquire_container(self) -> tuple[_Container | None, float]:
        if self.idle_containers:
            return self.idle_containers.pop(), 0.0  # the most recently used: warm, with its tokens
        if self.container_count >= self.processor.concurrency:
            return None, 0.0
        self.container_count += 1
        self.processor_cold += 1
        init = self.processor.cold_start.sample(self.rng["processor"])
        self.processor_init.append(init)
        return _Container(), init

    def _invoke(self, invocation: _Invocation) -> None:
        now, container = self.sim.now, invocation.container
        invocation.started = now
        self.processor_running += 1
        self.processor_peak = max(self.processor_peak, self.processor_running)
        self.batch_sizes.append(len(invocation.records))
        container.active = True
        for mint in container.mints:  # thawed: background authorize calls carry on
            mint.due = now + mint.remaining
            mint.generation += 1
            self.sim.at(mint.due, self._mint_done, container, mint, mint.generation)
        self._top_up(container)
        ready = self._cpu(container, self.processor.cpu_per_invoke_s)
        self.sim.at(ready, self._start_sessions, invocation)

    def _cpu(self, container: _Container, seconds: float) -> float:
        """Queue ``seconds`` of CPU on the container's one CPU; when it is done."""
        start = max(self.sim.now, container.cpu_free_at)
        container.cpu_free_at = start + seconds
        return container.cpu_free_at

    def _start_sessions(self, invocation: _Invocation) -> None:
        pool, groups = self.processor.thread_pool, invocation.groups
        while invocation.running < pool and invocation.next < len(groups):
            session = _Session(invocation, groups[invocation.next])
            invocation.next += 1
            invocation.running += 1
            self._advance(session)

    def _advance(self, session: _Session) -> None:
        steps = self.steps
        if session.step == len(steps):
            self._session_done(session, failed=False)
            return
        kind = steps[session.step]
        session.step += 1
        if kind == _CPU:
            self.sim.at(self._cpu(session.invocation.container, self.cpu_slice), self._advance, session)
        elif kind == _WRITE:
            self.sim.after(self.config.dynamodb_write.sample(self.rng["dynamodb"]), self._advance, session)
        elif kind == _TOKEN:
            if self._take_token(session.invocation.container):
                self._advance(session)
                return
            self.authorize_on_path += 1
            self._call(session, kind)
        else:
            self._call(session, kind)

    def _call(self, session: _Session, kind: int) -> None:
        duration, attempts, succeeded = self._flinks_call()
        if kind == _TOKEN:
            self.authorize_calls += attempts
        self.sim.after(duration, self._call_done, session, kind, succeeded)

    def _flinks_call(self) -> tuple[float, int, bool]:
        """One logical call with the processor's retries: (seconds, attempts, succeeded)."""
        flinks, rng = self.config.flinks, self.rng["flinks"]
        elapsed = 0.0
        for attempt in range(1, flinks.retry.max_attempts + 1):
            self.flinks_calls += 1
            elapsed += flinks.latency.sample(rng)
            if flinks.error_rate <= 0 or rng.random() >= flinks.error_rate:
                return elapsed, attempt, True
            self.flinks_errors += 1
            if attempt < flinks.retry.max_attempts:
                elapsed += backoff_delay(attempt, flinks.retry, rng.random)
        return elapsed, flinks.retry.max_attempts, False

    def _call_done(self, session: _Session, kind: int, succeeded: bool) -> None:
        if not succeeded:
            self._session_done(session, failed=True)
            return
        if kind == _CONFIRM and self.confirm_s[session.guarantee] is None:
            self.confirm_s[session.guarantee] = self.sim.now
            if self.config.status_webhook_after_s is not None:
                self.status_pending += 1
                self.sim.after(self.config.status_webhook_after_s, self._status_webhook, session.guarantee)
            self._resolved()
        self._advance(session)

    def _session_done(self, session: _Session, *, failed: bool) -> None:
        invocation = session.invocation
        if failed:  # this record and the session's later ones go back to the stream, in order
            remaining = session.group[session.position :]
            invocation.failed += remaining
            invocation.done += len(remaining)
        else:
            invocation.done += 1
            session.position += 1
            if session.position < len(session.group):
                session.guarantee, session.step = session.group[session.position], 0
                self._advance(session)
                return
        invocation.running -= 1
        if invocation.done == len(invocation.records):
            self._batch_done(invocation)
        else:
            self._start_sessions(invocation)

    def _batch_done(self, invocation: _Invocation) -> None:
        now, container, lane = self.sim.now, invocation.container, invocation.lane
        self.invoke_durations.append(now - invocation.started)
        self.processor_running -= 1
        container.active = False
        for mint in container.mints:  # frozen until the next invocation
            mint.remaining = max(0.0, mint.due - now)
            mint.generation += 1
        self.idle_containers.append(container)
        lane.busy = False
        lane.busy_s += now - invocation.taken_at
        lane.batches += 1
        lane.records += len(invocation.records)
        if invocation.failed:  # ReportBatchItemFailures: the stream re-delivers them, in order
            self.stream_retries += len(invocation.failed)
            failed = sorted(invocation.failed, key=invocation.records.index)
            lane.buffer.extendleft((now, index) for index in reversed(failed))
        if self.stream.poll_while_busy:
            self._try_start(invocation.shard, lane)  # records already read wait for no poll
        self._poll(invocation.shard)  # the local pump reads the shard again before its next invoke

    # -- the token pool ------------------------------------------------------------------------------

    def _take_token(self, container: _Container) -> bool:
        size = self.processor.token_pool_size
        if size <= 0:
            return False
        now, tokens = self.sim.now, container.tokens
        usable_for = self.processor.token_lifetime_s - self.processor.token_margin_s
        while tokens and now - tokens[0] > usable_for:
            tokens.popleft()
            self.tokens_wasted += 1
        taken = bool(tokens)
        if taken:
            tokens.popleft()
        self._top_up(container)
        return taken

    def _top_up(self, container: _Container) -> None:
        size = self.processor.token_pool_size
        while len(container.tokens) + len(container.mints) < size:
            duration, attempts, succeeded = self._flinks_call()
            self.authorize_calls += attempts
            if not succeeded:
                return  # Flinks is failing: the sessions authorize themselves (and retry) meanwhile
            mint = _Mint(duration)
            container.mints.append(mint)
            if container.active:
                mint.due = self.sim.now + duration
                self.sim.at(mint.due, self._mint_done, container, mint, mint.generation)

    def _mint_done(self, container: _Container, mint: _Mint, generation: int) -> None:
        if generation != mint.generation or not container.active:
            return
        container.mints.remove(mint)
        container.tokens.append(self.sim.now)
