"""Settings of the gateway (env prefix ``AIGC_GATEWAY_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from aigc_common.kafka import Topics
from aigc_common.pricing import PriceSetting, default_prices
from aigc_common.settings import KafkaSettings, RedisSettings, ServiceSettings


class PortSettings(BaseModel):
    """How the gateway reaches one stage: a core in this process, or a remote service."""

    mode: Literal["inprocess", "grpc"] = Field(
        "grpc", description="inprocess: call the core here; grpc: call the service."
    )
    address: str = Field("", description="host:port of the service when mode is grpc.")
    timeout_seconds: float = Field(10.0, gt=0, description="Deadline of each unary call to the service.")


class BatchSettings(BaseModel):
    """Batch jobs over Kafka."""

    enabled: bool = Field(False, description="Serve SubmitBatch and friends (needs Kafka).")
    store: Literal["memory", "redis"] = Field(
        "memory", description="Where jobs and results live: memory (one gateway with its tracker) or redis."
    )
    tracker: bool = Field(True, description="Run the results tracker in this gateway process.")
    tracker_group: str = Field("aigc-batch-tracker", description="Consumer group of the tracker.")
    workers: int = Field(
        0, ge=0, le=64, description="Batch workers to run inside this process (0: separate processes)."
    )
    worker_group: str = Field("aigc-batch", description="Consumer group of the workers.")
    worker_index_base: int = Field(
        0,
        ge=0,
        description="Index of this process's first worker; transactional ids derive from it, so "
        "every worker process needs its own range (e.g. the StatefulSet ordinal times workers).",
    )
    topic_prefix: str = Field(
        "", description="Prefix of the batch topics (tests); empty means the standard names."
    )
    worker_concurrency: int = Field(
        4, ge=1, le=1024, description="Items each worker runs at once (the model queues its own share)."
    )
    worker_max_poll_records: int = Field(
        500,
        ge=1,
        le=10_000,
        description="Most items per worker batch and Kafka transaction (bounds what a crash makes run again).",
    )
    worker_target_batch_seconds: float = Field(
        2.0,
        gt=0,
        description="Workers size each batch to take about this long at their measured throughput: cache "
        "hits share a transaction by the hundred, model-bound items are committed every few seconds.",
    )
    pace_horizon_seconds: float = Field(
        5.0,
        gt=0,
        description="Each job may have about this many seconds of its own throughput published and not "
        "done (times its priority weight); what another tenant's new job waits behind.",
    )
    pace_min_window: int = Field(
        32, ge=1, description="Least items a normal-priority job may have in flight."
    )
    pace_max_window: int = Field(5_000, ge=1, description="Most items any job may have in flight.")


class GatewaySettings(ServiceSettings):
    """The gateway: tenants and keys, where budgets and rate limits are counted, how each port is
    wired, prices, and where usage records go."""

    model_config = SettingsConfigDict(env_prefix="AIGC_GATEWAY_", env_nested_delimiter="__", extra="ignore")

    tenants_file: Path | None = Field(
        None,
        description="YAML file of tenants and API key hashes (a mounted Secret on Kubernetes). Unset: no API "
        "keys, every caller is default_tenant (a single machine's default only).",
    )
    default_tenant: str = Field("default", description="Tenant every caller is when no tenants_file is set.")
    counters: Literal["memory", "redis"] = Field(
        "memory",
        description="Where budgets and rate limits are counted: memory (one gateway process) or redis "
        "(shared by every replica; required with more than one).",
    )
    redis: RedisSettings = Field(default_factory=RedisSettings, description="Redis, when counters is redis.")
    usage_sink: Literal["log", "kafka"] = Field(
        "log",
        description="kafka publishes one UsageRecorded event per request on usage_topic; log writes a line.",
    )
    usage_topic: str = Field(Topics.usage, description="Kafka topic of usage records.")
    kafka: KafkaSettings = Field(
        default_factory=KafkaSettings, description="Kafka, when usage_sink is kafka or batch is enabled."
    )
    batch: BatchSettings = Field(default_factory=BatchSettings, description="Batch jobs.")
    prompt: PortSettings = Field(
        default_factory=lambda: PortSettings(address="127.0.0.1:50052"), description="Prompt port."
    )
    safety: PortSettings = Field(
        default_factory=lambda: PortSettings(address="127.0.0.1:50055"), description="Safety port."
    )
    cache: PortSettings = Field(
        default_factory=lambda: PortSettings(address="127.0.0.1:50056"), description="Cache port."
    )
    inference: PortSettings = Field(
        default_factory=lambda: PortSettings(address="127.0.0.1:50054"), description="Inference port."
    )
    prices: dict[str, PriceSetting] = Field(
        default_factory=default_prices,
        description="Model name to price per 1,000 tokens (JSON in the environment).",
    )
