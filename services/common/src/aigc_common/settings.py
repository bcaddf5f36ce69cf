"""Typed settings shared by every service.

Each service has one ``BaseSettings`` model with its own env prefix (``AIGC_GATEWAY_``,
``AIGC_INFERENCE_``, ...) and nested blocks for shared concerns, set with a double
underscore: ``AIGC_GATEWAY_GRPC__PORT=50051``. Every field carries a description; a test
fails on an undocumented one and the services' READMEs list them.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from aigc_common.errors import ConfigError


class GrpcSettings(BaseModel):
    """Where and how the gRPC server listens."""

    host: str = Field("127.0.0.1", description="Address to bind; 0.0.0.0 inside a container.")
    port: int = Field(0, ge=0, le=65535, description="Port to bind; 0 picks a free port (tests).")
    grace_seconds: float = Field(
        10.0, gt=0, description="On SIGTERM, how long in-flight calls may run before they are cut."
    )
    max_message_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest request or response message in bytes."
    )


class MetricsSettings(BaseModel):
    """The Prometheus /metrics HTTP endpoint of the process."""

    host: str = Field("127.0.0.1", description="Address the /metrics endpoint binds.")
    port: int = Field(
        0, ge=0, le=65535, description="Port of the /metrics endpoint; 0 disables the endpoint."
    )


class OtelSettings(BaseModel):
    """OpenTelemetry tracing."""

    exporter: Literal["none", "console", "memory"] = Field(
        "none",
        description="Where finished spans go: none (propagate context only), console, or memory (tests).",
    )
    sample_ratio: float = Field(1.0, ge=0, le=1, description="Fraction of new traces that are recorded.")


class KafkaSettings(BaseModel):
    """Connection to the Kafka cluster."""

    bootstrap_servers: str = Field(
        "127.0.0.1:19092", description="Comma-separated host:port list of Kafka brokers."
    )
    client_id: str = Field("aigc", description="Client id prefix reported to the brokers.")


class RedisSettings(BaseModel):
    """Connection to Redis."""

    url: str = Field("redis://127.0.0.1:16379/0", description="Redis URL (redis:// or rediss://).")
    key_prefix: str = Field("aigc:", description="Prefix of every key this deployment writes.")


class LogSettings(BaseModel):
    """Process logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Lowest level logged.")
    json_format: bool = Field(True, description="One JSON object per line (true) or plain text (false).")
    log_content: bool = Field(
        False, description="Log prompt and answer text. Off by default: prompts may hold personal data."
    )


class ServiceSettings(BaseSettings):
    """Settings every service has; a service's model extends it and sets its env prefix."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    grpc: GrpcSettings = Field(default_factory=GrpcSettings, description="gRPC server.")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="/metrics endpoint.")
    otel: OtelSettings = Field(default_factory=OtelSettings, description="Tracing.")
    log: LogSettings = Field(default_factory=LogSettings, description="Logging.")


S = TypeVar("S", bound=BaseSettings)


def load_settings(model: type[S], **overrides: object) -> S:
    """Builds settings from the environment; a bad value raises ConfigError saying what to set."""
    try:
        return model(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        prefix = str(model.model_config.get("env_prefix", ""))
        lines = []
        for err in exc.errors():
            path = [str(p) for p in err["loc"]]
            env = prefix + "__".join(p.upper() for p in path)
            lines.append(f"  {env}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"invalid {model.__name__} configuration; change:\n" + "\n".join(lines)) from None
