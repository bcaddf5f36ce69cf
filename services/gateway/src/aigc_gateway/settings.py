"""Settings of the gateway (env prefix ``AIGC_GATEWAY_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from aigc_common.pricing import PriceSetting, default_prices
from aigc_common.settings import ServiceSettings


class PortSettings(BaseModel):
    """How the gateway reaches one stage: a core in this process, or a remote service."""

    mode: Literal["inprocess", "grpc"] = Field(
        "grpc", description="inprocess: call the core here; grpc: call the service."
    )
    address: str = Field("", description="host:port of the service when mode is grpc.")
    timeout_seconds: float = Field(10.0, gt=0, description="Deadline of each unary call to the service.")


class GatewaySettings(ServiceSettings):
    """The gateway: how each port is wired, the tenant used before authentication lands, prices."""

    model_config = SettingsConfigDict(env_prefix="AIGC_GATEWAY_", env_nested_delimiter="__", extra="ignore")

    default_tenant: str = Field(
        "default", description="Tenant every request runs as until API keys are configured (issue: tenants)."
    )
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
