"""The whole stack on one machine: every service as its own process, or all in one.

Ports are fixed here so the CLI, Prometheus's scrape config (deploy/prometheus) and the
README agree. Any of them can be overridden with the service's own env variables.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from aigc_common.runtime import ProcessRuntime
from aigc_common.server import GrpcServer, ServiceBinding, run_until_signal
from aigc_common.settings import ServiceSettings, load_settings


@dataclass(frozen=True)
class ServiceSpec:
    """Where one service of the local stack listens."""

    name: str
    grpc_port: int
    metrics_port: int
    health_name: str

    @property
    def module(self) -> str:
        return f"aigc_{self.name}"

    @property
    def env_prefix(self) -> str:
        return f"AIGC_{self.name.upper()}_"

    @property
    def address(self) -> str:
        port = os.environ.get(f"{self.env_prefix}GRPC__PORT", str(self.grpc_port))
        return f"127.0.0.1:{port}"


SERVICES = (
    ServiceSpec("prompt", 50052, 9102, "aigc.prompt.v1.PromptService"),
    ServiceSpec("retrieval", 50053, 9103, "aigc.retrieval.v1.RetrievalService"),
    ServiceSpec("inference", 50054, 9104, "aigc.inference.v1.InferenceService"),
    ServiceSpec("safety", 50055, 9105, "aigc.safety.v1.SafetyService"),
    ServiceSpec("cache", 50056, 9106, "aigc.cache.v1.CacheService"),
    ServiceSpec("gateway", 50051, 9101, "aigc.gateway.v1.GatewayService"),
)
GATEWAY = SERVICES[-1]
SAFETY = next(s for s in SERVICES if s.name == "safety")


def repo_root() -> Path | None:
    """The source checkout this package runs from (editable install), if any."""
    root = Path(__file__).resolve().parents[4]
    return root if (root / "scripts" / "local-stack.sh").exists() else None


# Set by `aigc up --no-infra`: Kafka and Redis are not known to run, so the in-process defaults stay.
NO_INFRA_ENV = "AIGC_STACK_NO_INFRA"


def service_env(spec: ServiceSpec, single_process: bool = False) -> dict[str, str]:
    """Environment defaults that put a service on its stack ports (explicit env wins). With the
    local Kafka and Redis up, state that replicas share lives there: budgets, rate limits and the
    cache in Redis; usage and safety audit records on Kafka (the settings' default addresses are the
    local stack's)."""
    env = {
        f"{spec.env_prefix}GRPC__PORT": str(spec.grpc_port),
        f"{spec.env_prefix}METRICS__PORT": str(spec.metrics_port),
    }
    if os.environ.get(NO_INFRA_ENV) != "1":
        if spec.name in ("gateway", "cache"):
            env["AIGC_CACHE_STORE"] = "redis"
        if spec.name == "gateway":
            env["AIGC_GATEWAY_COUNTERS"] = "redis"
            env["AIGC_GATEWAY_USAGE_SINK"] = "kafka"
            # Batch jobs: API, tracker and one worker in the gateway process, jobs in Redis.
            env["AIGC_GATEWAY_BATCH__ENABLED"] = "true"
            env["AIGC_GATEWAY_BATCH__STORE"] = "redis"
            env["AIGC_GATEWAY_BATCH__WORKERS"] = "1"
        if spec.name in ("gateway", "safety"):
            env["AIGC_SAFETY_AUDIT__SINK"] = "kafka"
    if spec.name == "gateway" and single_process:
        for port in ("PROMPT", "SAFETY", "CACHE", "INFERENCE"):
            env[f"AIGC_GATEWAY_{port}__MODE"] = "inprocess"
    root = repo_root()
    if spec.name in ("prompt", "gateway") and root is not None:
        # Label moves made through SetLabel survive a restart of the local stack.
        env["AIGC_PROMPT_LABEL_LOG_PATH"] = str(root / ".cache" / "run" / "prompt-labels.jsonl")
    return {k: v for k, v in env.items() if k not in os.environ}


async def serve_all_in_one() -> None:
    """Hosts every service in this process; the gateway calls the others' cores directly."""
    from aigc_cache.app import build_core as build_cache
    from aigc_cache.servicer import binding as cache_binding
    from aigc_cache.settings import CacheSettings
    from aigc_gateway.adapters import inprocess
    from aigc_gateway.app import build_gateway
    from aigc_gateway.servicer import binding as gateway_binding
    from aigc_gateway.settings import GatewaySettings
    from aigc_inference.app import build_core as build_inference
    from aigc_inference.servicer import binding as inference_binding
    from aigc_inference.settings import InferenceSettings
    from aigc_prompt.app import build_core as build_prompt
    from aigc_prompt.servicer import binding as prompt_binding
    from aigc_prompt.settings import PromptSettings
    from aigc_retrieval.app import build_core as build_retrieval
    from aigc_retrieval.servicer import binding as retrieval_binding
    from aigc_retrieval.settings import RetrievalSettings
    from aigc_safety.app import build_core as build_safety
    from aigc_safety.servicer import binding as safety_binding
    from aigc_safety.settings import SafetySettings

    for spec in SERVICES:
        env = service_env(spec, single_process=True)
        if spec is not GATEWAY:
            env = {k: v for k, v in env.items() if "METRICS" not in k}
        os.environ.update(env)
    gateway_settings = load_settings(GatewaySettings)
    # One process, one /metrics endpoint: the gateway's port serves every service's instruments.
    runtime = ProcessRuntime("stack", gateway_settings)
    runtime.start()
    prompt_settings = load_settings(PromptSettings)
    retrieval_settings = load_settings(RetrievalSettings)
    inference_settings = load_settings(InferenceSettings)
    safety_settings = load_settings(SafetySettings)
    cache_settings = load_settings(CacheSettings)
    settings: dict[str, ServiceSettings] = {
        "prompt": prompt_settings,
        "retrieval": retrieval_settings,
        "inference": inference_settings,
        "safety": safety_settings,
        "cache": cache_settings,
    }
    prompt = await build_prompt(prompt_settings, runtime)
    retrieval = await build_retrieval(retrieval_settings, runtime)
    inference = await build_inference(inference_settings, runtime)
    safety = await build_safety(safety_settings, runtime)
    cache = await build_cache(cache_settings, runtime)
    wiring = await build_gateway(
        gateway_settings,
        runtime,
        prompt=inprocess.InProcessPrompt(prompt),
        safety=inprocess.InProcessSafety(safety),
        cache=inprocess.InProcessCache(cache),
        inference=inprocess.InProcessInference(inference),
    )
    bindings: dict[str, ServiceBinding] = {
        "prompt": prompt_binding(prompt),
        "retrieval": retrieval_binding(retrieval),
        "inference": inference_binding(inference),
        "safety": safety_binding(safety),
        "cache": cache_binding(cache),
        "gateway": gateway_binding(wiring.gateway, wiring.directory, wiring.batch),
    }
    servers = []
    for spec in SERVICES:
        own = settings.get(spec.name, gateway_settings)
        server = GrpcServer(spec.name, [bindings[spec.name]], own.grpc, runtime.rpc_metrics)
        await server.start()
        servers.append(server)
    try:
        await run_until_signal(servers)
    finally:
        await wiring.close()
        await cache.close()
        await inference.close()
        runtime.stop()


def main() -> None:
    asyncio.run(serve_all_in_one())


if __name__ == "__main__":
    main()
