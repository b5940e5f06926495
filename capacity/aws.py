"""The deployed pipeline as a ``PipelineConfig``: measured CPU and counts, assumed AWS latencies, and
the settings an operator chooses (``Settings``)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

from capacity.measured import AwsAssumptions, Measured
from capacity.model import (
    Arrivals,
    FlinksSettings,
    PipelineConfig,
    ProcessorSettings,
    ReceiverSettings,
    StreamMapping,
    StreamSettings,
)
from capacity.samplers import Fixed, LogNormal, Shifted

WCU_PER_PARTITION = 1000
"""DynamoDB's write throughput per partition; the stream has one shard per partition."""


@dataclass(frozen=True)
class Settings(StreamMapping):
    """The knobs: the stream's (the table's partitions and the mapping's) and the processor's."""

    token_pool_size: int = 0
    thread_pool: int = 16
    processor_concurrency: int | None = None
    """ProcessorReservedConcurrency; None: shards x ParallelizationFactor, what the mapping can use."""

    def describe(self) -> str:
        return (
            f"shards {self.shards}, PF {self.parallelization_factor}, batch {self.batch_size}, "
            f"window {self.batching_window_s:g} s, token pool {self.token_pool_size}, "
            f"threads {self.thread_pool}, concurrency {self.concurrency}"
        )

    @property
    def concurrency(self) -> int:
        if self.processor_concurrency is not None:
            return self.processor_concurrency
        return self.shards * self.parallelization_factor


@functools.cache
def template_defaults() -> Settings:
    """What a deploy without overrides runs: template.yaml's parameter defaults, read from the template
    so the model's "template defaults" column cannot drift from it."""
    from testkit.template import load_template  # noqa: PLC0415 - cfn-lint parses the template

    template = load_template()
    default = {name: parameter.get("Default") for name, parameter in template["Parameters"].items()}
    reserved = int(default["ProcessorReservedConcurrency"])
    return Settings(
        parallelization_factor=int(default["StreamParallelizationFactor"]),
        batch_size=int(default["StreamBatchSize"]),
        batching_window_s=float(default["StreamBatchingWindowSeconds"]),
        token_pool_size=int(default["FlinksTokenPoolSize"]),
        thread_pool=int(default["ProcessorPoolSize"]),
        processor_concurrency=reserved or None,  # 0: unreserved, the account's pool
    )


def shards_for_writes(rate_per_s: float, measured: Measured) -> int:
    """Partitions (so stream shards) the table needs at least, for the writes of ``rate_per_s``
    guarantees: the receiver's and the processor's, the index write and the status webhook's."""
    writes = measured.receiver_writes + measured.processor_writes + 2
    return max(1, math.ceil(rate_per_s * writes / WCU_PER_PARTITION))


def aws_pipeline(
    measured: Measured,
    settings: Settings,
    arrivals: Arrivals,
    assumptions: AwsAssumptions | None = None,
) -> PipelineConfig:
    a = assumptions or AwsAssumptions()
    receiver_share = measured.cpu_share(measured.receiver_memory_mb)
    processor_share = measured.cpu_share(measured.processor_memory_mb)
    write = a.dynamodb_write()
    receiver_fixed = measured.receiver_cpu_s / receiver_share + a.api_gateway_s
    receiver_fixed += (measured.receiver_writes - 1) * write.mean()
    # CPU runs at the function's share; the first batch's waits (connections, the secret) do not.
    processor_init = (
        a.lambda_platform_init_s
        + (measured.receiver_init_s + measured.processor_first_batch_extra_cpu_s) / processor_share
        + measured.processor_first_batch_extra_wait_s
    )
    receiver_service = Shifted(write, receiver_fixed)
    # Steady traffic: the containers that rate keeps busy are already warm when the run starts, twice
    # over (each guarantee brings a status webhook too): Poisson peaks do not each cold-start one.
    requests_per_s = arrivals.rate_per_s * (2 if a.status_webhook_after_s is not None else 1)
    receiver_warm = math.ceil(2 * requests_per_s * receiver_service.mean()) + 2
    processor_concurrency = min(settings.concurrency, a.account_concurrency)
    return PipelineConfig(
        arrivals=arrivals,
        receiver=ReceiverSettings(
            service=receiver_service,
            concurrency=a.account_concurrency,
            warm_containers=min(receiver_warm, a.account_concurrency),
            cold_start=Fixed(a.lambda_platform_init_s + measured.receiver_init_s / receiver_share),
            redelivery_after_s=a.redelivery_after_s,
        ),
        stream=StreamSettings(
            get_records=Fixed(a.get_records_s),
            visibility=LogNormal(a.stream_visibility_s, 0.5),
            invoke_overhead=LogNormal(a.esm_invoke_overhead_s, 0.3),
        ).with_mapping(settings),
        processor=ProcessorSettings(
            thread_pool=settings.thread_pool,
            concurrency=processor_concurrency,
            warm_containers=processor_concurrency,
            cpu_per_session_s=measured.processor_cpu_per_session_s / processor_share,
            cpu_per_invoke_s=measured.processor_cpu_per_invoke_s / processor_share,
            cold_start=Fixed(processor_init),
            token_pool_size=settings.token_pool_size,
            token_lifetime_s=a.token_lifetime_s,
            token_margin_s=a.token_margin_s,
            claim_writes=1,
            finish_writes=max(0, measured.processor_writes - 1),
            details_calls=measured.details_per_session,
            confirm_calls=measured.confirm_per_session,
        ),
        flinks=FlinksSettings(latency=a.flinks_latency(), error_rate=a.flinks_error_rate),
        dynamodb_write=write,
        status_webhook_after_s=a.status_webhook_after_s,
    )


def with_settings(config: PipelineConfig, settings: Settings) -> PipelineConfig:
    """The same pipeline with other knobs (for a sweep over one of them)."""
    return replace(
        config,
        stream=config.stream.with_mapping(settings),
        processor=replace(
            config.processor,
            thread_pool=settings.thread_pool,
            concurrency=settings.concurrency,
            token_pool_size=settings.token_pool_size,
        ),
    )
