"""A gateway for end-to-end tests: the real cores (CPU model, rule packs, templates), real Redis
for budgets, limits and the cache, real Kafka for usage records, served over gRPC on 127.0.0.1:0,
wired either with every port in-process or with every port a gRPC service of its own.

The inference port is wrapped in a recorder that forwards to the real engine and notes what the
gateway asked for and whether the stream was closed early: that is how a test sees that a blocked
prompt never reached the model, or that personal data was redacted before it did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from aigc_cache.app import build_core as build_cache
from aigc_cache.servicer import binding as cache_binding
from aigc_cache.settings import CacheSettings
from aigc_common.kafka import ensure_topics
from aigc_common.metrics import RpcMetrics
from aigc_common.runtime import ProcessRuntime
from aigc_common.server import GrpcServer
from aigc_common.settings import GrpcSettings, KafkaSettings, RedisSettings
from aigc_common.types import GenerationEvent, GenerationFinished, GenerationRequest
from aigc_gateway.adapters import inprocess
from aigc_gateway.app import build_gateway
from aigc_gateway.ports import InferencePort
from aigc_gateway.servicer import binding as gateway_binding
from aigc_gateway.settings import GatewaySettings, PortSettings
from aigc_gateway.tenants import new_key
from aigc_inference.app import build_core as build_inference
from aigc_inference.servicer import binding as inference_binding
from aigc_inference.settings import InferenceSettings
from aigc_prompt.app import build_core as build_prompt
from aigc_prompt.servicer import binding as prompt_binding
from aigc_prompt.settings import PromptSettings
from aigc_safety.app import build_core as build_safety
from aigc_safety.policy import default_packs_dir, default_policies_dir
from aigc_safety.servicer import binding as safety_binding
from aigc_safety.settings import SafetySettings

# A pack that blocks words every English answer contains, for the tenant whose answers must be
# stopped mid-stream by output moderation.
OUTPUT_PACK = """\
name: e2e-output
version: 1
rules:
  - id: en.e2e.common_words.001
    category: ethics_morality
    severity: 3
    action: block
    language: en
    stages: [output]
    description: Test rule that fires on ordinary English words.
    keywords: [the, is, and, are, it, of, to]
"""
OUTPUT_POLICY = """\
name: e2e-output
version: 1
packs: [default, e2e-output]
classifier: {enabled: false}
"""


@dataclass
class RecordingInference:
    """Forwards to the real inference port and records each request and how its stream ended."""

    inner: InferencePort
    requests: list[GenerationRequest] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    closed_early: list[str] = field(default_factory=list)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        self.requests.append(request)
        done = False
        stream = self.inner.generate(request)
        try:
            async for event in stream:
                if isinstance(event, GenerationFinished):
                    done = True
                    self.finished.append(request.request_id)
                yield event
        finally:
            if not done:
                self.closed_early.append(request.request_id)
            await stream.aclose()  # type: ignore[attr-defined]

    def for_request(self, request_id: str) -> list[GenerationRequest]:
        return [r for r in self.requests if r.request_id.startswith(request_id)]


@dataclass
class GatewayHarness:
    address: str
    keys: dict[str, str]
    inference: RecordingInference
    registry: CollectorRegistry
    usage_topic: str
    kafka: KafkaSettings
    servers: list[GrpcServer]
    closers: list[object]

    async def close(self) -> None:
        for server in self.servers:
            await server.stop(0)
        for closer in self.closers:
            await closer()  # type: ignore[operator]


def tenants_file(folder: Path) -> tuple[Path, dict[str, str]]:
    """Tenants for the suite; returns the file and each tenant's (clear) key."""
    keys: dict[str, str] = {}
    lines = ["tenants:"]
    specs = {
        "acme": "",
        "globex": "",
        "strictout": "    safety_policy: e2e-output\n",
        "limited": "    rate_limits: {requests_per_minute: 2}\n",
        # A budget that fits a couple of short answers: the third is refused.
        "thrifty": "    budget: {amount: 0.0002, currency: CNY, period: month}\n",
        "narrow": "    allowed_templates: [product_copy]\n",
    }
    for tenant, extra in specs.items():
        key, entry = new_key(tenant.replace("-", "")[:8] + "k1")
        keys[tenant] = key
        lines.append(
            f"  - id: {tenant}\n    api_keys: [{{key_id: {entry.key_id}, sha256: {entry.sha256}}}]\n{extra}"
        )
    path = folder / "tenants.yaml"
    path.write_text("\n".join(lines))
    return path, keys


def _prepare(folder: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    """Copies the shipped packs and policies next to the test's own, and writes the tenants file."""
    folder.mkdir(parents=True, exist_ok=True)
    packs, policies = folder / "packs", folder / "policies"
    for src, dst in ((default_packs_dir(), packs), (default_policies_dir(), policies)):
        dst.mkdir(exist_ok=True)
        for f in src.glob("*.yaml"):
            (dst / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (packs / "e2e-output.yaml").write_text(OUTPUT_PACK)
    (policies / "e2e-output.yaml").write_text(OUTPUT_POLICY)
    tenants, keys = tenants_file(folder)
    return packs, policies, tenants, keys


async def start_gateway(
    wiring: str, folder: Path, *, redis_url: str, kafka_bootstrap: str, unique: str, model_path: Path
) -> GatewayHarness:
    """Builds the cores and the gateway with ``wiring`` = "inprocess" or "remote"."""
    packs, policies, tenants, keys = _prepare(folder)

    registry = CollectorRegistry()
    redis = RedisSettings(url=redis_url, key_prefix=f"{unique}:")
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, client_id=unique)
    usage_topic = f"{unique}-aigc.usage.v1"
    ensure_topics(kafka, [usage_topic], partitions=1)
    gateway_settings = GatewaySettings(
        tenants_file=tenants,
        counters="redis",
        redis=redis,
        usage_sink="kafka",
        usage_topic=usage_topic,
        kafka=kafka,
    )
    runtime = ProcessRuntime("e2e-gateway", gateway_settings, registry)
    prompt = await build_prompt(PromptSettings(reload_interval_seconds=0, tokenizer_path=model_path), runtime)
    safety = await build_safety(
        SafetySettings(packs_dir=packs, policies_dir=policies, reload_interval_seconds=0, gc_freeze=False),
        runtime,
    )
    cache = await build_cache(CacheSettings(store="redis", redis=redis), runtime)
    inference = await build_inference(
        InferenceSettings(model_path=model_path, contexts=1, threads=2), runtime
    )
    servers: list[GrpcServer] = []
    closers: list[object] = [prompt.close, safety.close, cache.close, inference.close]

    if wiring == "inprocess":
        recorder = RecordingInference(inprocess.InProcessInference(inference))
        built = await build_gateway(
            gateway_settings,
            runtime,
            prompt=inprocess.InProcessPrompt(prompt),
            safety=inprocess.InProcessSafety(safety),
            cache=inprocess.InProcessCache(cache),
            inference=recorder,
        )
    else:
        addresses = {}
        for name, bound in (
            ("prompt", prompt_binding(prompt)),
            ("safety", safety_binding(safety)),
            ("cache", cache_binding(cache)),
            ("inference", inference_binding(inference)),
        ):
            server = GrpcServer(name, [bound], GrpcSettings(port=0), RpcMetrics(CollectorRegistry()))
            await server.start()
            servers.append(server)
            addresses[name] = server.address
        remote = gateway_settings.model_copy(
            update={name: PortSettings(mode="grpc", address=address) for name, address in addresses.items()}
        )
        from aigc_common.tracing import traced_channel
        from aigc_gateway.adapters.grpc_clients import GrpcInference

        channel = traced_channel(addresses["inference"])
        recorder = RecordingInference(GrpcInference(channel))
        built = await build_gateway(remote, runtime, inference=recorder)
        closers.append(channel.close)
    closers.insert(0, built.close)
    gateway_server = GrpcServer(
        "gateway",
        [gateway_binding(built.gateway, built.directory)],
        GrpcSettings(port=0),
        runtime.rpc_metrics,
    )
    await gateway_server.start()
    servers.insert(0, gateway_server)
    return GatewayHarness(
        gateway_server.address, keys, recorder, registry, usage_topic, kafka, servers, closers
    )


async def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    """Polls ``predicate()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())  # type: ignore[operator]
