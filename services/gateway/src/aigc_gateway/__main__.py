"""Runs the gateway alone: ``python -m aigc_gateway``."""

from aigc_common.runtime import run_service
from aigc_gateway.app import builder
from aigc_gateway.settings import GatewaySettings

if __name__ == "__main__":
    run_service("gateway", GatewaySettings, builder)
