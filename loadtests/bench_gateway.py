"""Gateway overhead and cache-hit throughput, with a scripted engine so the gateway's own cost shows.

The server process hosts the gateway (every port in-process: prompt, safety with the classifier,
the exact cache in memory, inference) and, on a second port, the inference service over the SAME
engine: a scripted one that emits a fixed 16-token answer instantly (used only here and in unit
tests). A separate client process measures, interleaved in rounds so machine noise hits both alike:

- latency of a whole Generate stream through the gateway (product_copy template, a new product
  each time: render, input safety, cache miss and store, inference, output moderation, accounting)
- latency of the same generation asked of the inference service directly

overhead = gateway latency - direct latency, p50 and p99, at concurrency 1 and 32. Then cache-hit
requests per second through the whole pipeline (auth, render, input safety, lookup, replay,
accounting) with 64 streams in flight, next to the same client against a bare servicer that streams
the same four messages with no interceptors and no work: the floor this machine and client allow.

Targets (issue 6, 2 cores, in-process ports): overhead p50 <= 2 ms and p99 <= 5 ms at concurrency 1;
>= 1,500 cache-hit requests per second. Last line: one JSON object.

    .venv/bin/python loadtests/bench_gateway.py [--requests 400] [--hit-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Sequence

import grpc
from prometheus_client import CollectorRegistry

from aigc.common.v1 import common_pb2
from aigc.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from aigc.inference.v1 import inference_pb2, inference_pb2_grpc
from aigc_cache.adapters.memory_store import MemoryStore
from aigc_cache.core import CacheCore
from aigc_cache.metrics import CacheMetrics
from aigc_common.metrics import RpcMetrics
from aigc_common.runtime import ProcessRuntime
from aigc_common.server import GrpcServer
from aigc_common.settings import GrpcSettings
from aigc_common.types import ChatMessage, FinishReason
from aigc_gateway.adapters import inprocess
from aigc_gateway.app import build_gateway
from aigc_gateway.servicer import binding as gateway_binding
from aigc_gateway.settings import GatewaySettings
from aigc_inference.core import InferenceCore
from aigc_inference.engine import Engine, EngineDelta, EngineRequest, ModelInfo
from aigc_inference.metrics import InferenceMetrics
from aigc_inference.servicer import binding as inference_binding
from aigc_prompt.app import build_core as build_prompt
from aigc_prompt.settings import PromptSettings
from aigc_safety.app import build_core as build_safety
from aigc_safety.settings import SafetySettings

MODEL = "smollm2-135m-instruct"
ANSWER = [
    "这款",
    "保温杯",
    "采用",
    "304",
    "不锈钢",
    "，",
    "保温",
    "长达",
    "12",
    "小时",
    "，",
    "轻巧",
    "便携",
    "，",
    "适合",
    "通勤。",
]


class FixedTokensEngine(Engine):
    """Emits the same 16 tokens at once for every request: no model time, only the plumbing."""

    def __init__(self) -> None:
        self._info = ModelInfo(name=MODEL, engine="scripted", context_window=4096)

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def start(self) -> None:
        return None

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineDelta]:
        last = len(ANSWER) - 1
        for i, piece in enumerate(ANSWER):
            yield EngineDelta(piece, (i + 1,), FinishReason.STOP if i == last else None)

    def abort(self, request_id: str) -> None:
        return None

    def health(self) -> bool:
        return True

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content) // 2 + 4 for m in messages)

    async def count_text_tokens(self, text: str) -> int:
        return len(text) // 2

    @property
    def concurrency(self) -> int:
        return 64


class EchoGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """The floor: a bare servicer (no interceptors, no pipeline) streaming a hit's four messages."""

    async def Generate(self, request: object, context: object) -> AsyncIterator[gateway_pb2.GenerateResponse]:
        yield gateway_pb2.GenerateResponse(
            started=gateway_pb2.GenerateStarted(request_id="r", cache_hit=True)
        )
        yield gateway_pb2.GenerateResponse(
            delta=gateway_pb2.GenerateDelta(text="这款保温杯采用304不锈钢，保温长达12小时")
        )
        yield gateway_pb2.GenerateResponse(delta=gateway_pb2.GenerateDelta(text="，轻巧便携，适合通勤。"))
        yield gateway_pb2.GenerateResponse(finished=gateway_pb2.GenerateFinished())


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- client process ---------------------------------------------------------------------------


async def _timed(make_call: object, concurrency: int, count: int) -> list[float]:
    semaphore = asyncio.Semaphore(concurrency)
    out: list[float] = []

    async def one(i: int) -> None:
        async with semaphore:
            start = time.perf_counter()
            async for _ in make_call(i):  # type: ignore[operator]
                pass
            out.append(time.perf_counter() - start)

    await asyncio.gather(*(one(i) for i in range(count)))
    return out


async def client_main(gateway: str, inference: str, echo: str, requests: int, hit_seconds: float) -> None:
    async with grpc.aio.insecure_channel(gateway) as gch, grpc.aio.insecure_channel(inference) as ich:
        gw = gateway_pb2_grpc.GatewayServiceStub(gch)
        inf = inference_pb2_grpc.InferenceServiceStub(ich)
        sampling = common_pb2.SamplingParams(max_tokens=32, temperature=0.0)
        seq = [0]

        def via_gateway(i: int) -> object:
            seq[0] += 1
            return gw.Generate(
                gateway_pb2.GenerateRequest(
                    template_id="product_copy",
                    variables={"product": f"保温杯 型号 {seq[0]}", "language": "zh"},
                    sampling=sampling,
                )
            )

        def direct(i: int) -> object:
            return inf.Generate(
                inference_pb2.GenerateRequest(
                    model=MODEL,
                    messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=f"保温杯 型号 {i}")],
                    sampling=sampling,
                )
            )

        # Connections and lazy initialisation before the clock starts.
        await _timed(via_gateway, 4, 20)
        await _timed(direct, 4, 20)
        figures: dict[str, float] = {}
        for concurrency in (1, 32):
            gw_lat: list[float] = []
            direct_lat: list[float] = []
            rounds = 4
            for _ in range(rounds):
                direct_lat += await _timed(direct, concurrency, requests // rounds)
                gw_lat += await _timed(via_gateway, concurrency, requests // rounds)
            for q, name in ((0.5, "p50"), (0.99, "p99")):
                g, d = _pct(gw_lat, q) * 1e3, _pct(direct_lat, q) * 1e3
                figures[f"gateway_{name}_ms_c{concurrency}"] = round(g, 3)
                figures[f"direct_{name}_ms_c{concurrency}"] = round(d, 3)
                figures[f"overhead_{name}_ms_c{concurrency}"] = round(g - d, 3)
            print(
                f"[client] c={concurrency}: gateway p50 {figures[f'gateway_p50_ms_c{concurrency}']} ms "
                f"p99 {figures[f'gateway_p99_ms_c{concurrency}']} ms; direct p50 "
                f"{figures[f'direct_p50_ms_c{concurrency}']} ms p99 {figures[f'direct_p99_ms_c{concurrency}']} ms",
                file=sys.stderr,
            )

        hit = gateway_pb2.GenerateRequest(
            template_id="product_copy", variables={"product": "竹制砧板", "language": "zh"}, sampling=sampling
        )
        async for _ in gw.Generate(hit):  # stores the answer
            pass
        figures["cache_hit_rps"], figures["cache_hit_misses"] = await _hits(gw, hit, hit_seconds)
    # The floor this client and machine allow: the same four messages from a bare servicer.
    async with grpc.aio.insecure_channel(echo) as ech:
        bare = gateway_pb2_grpc.GatewayServiceStub(ech)
        figures["bare_streaming_echo_rps"], _ = await _hits(bare, hit, hit_seconds)
    figures["cache_hit_vs_bare_echo"] = round(
        figures["cache_hit_rps"] / figures["bare_streaming_echo_rps"], 3
    )
    print(json.dumps(figures))


async def _hits(
    stub: gateway_pb2_grpc.GatewayServiceStub, request: object, seconds: float
) -> tuple[float, int]:
    """Cache-hit streams per second with 64 in flight, and how many were not hits."""
    hits = misses = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal hits, misses
        while time.perf_counter() < stop_at:
            async for reply in stub.Generate(request):
                if reply.WhichOneof("event") == "started":
                    if reply.started.cache_hit:
                        hits += 1
                    else:
                        misses += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(64)))
    return round(hits / (time.perf_counter() - start), 1), misses


# --- server process -------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    registry = CollectorRegistry()
    settings = GatewaySettings()
    runtime = ProcessRuntime("bench-gateway", settings, registry)
    print("[bench] loading templates, tokenizer, rule packs and the classifier...", file=sys.stderr)
    prompt = await build_prompt(PromptSettings(reload_interval_seconds=0), runtime)
    safety = await build_safety(SafetySettings(reload_interval_seconds=0), runtime)
    cache = CacheCore(
        MemoryStore(), CacheMetrics(registry), key_prefix="b:", default_ttl_seconds=600, max_answer_chars=9999
    )
    engine = FixedTokensEngine()
    core = InferenceCore(
        engine, InferenceMetrics(registry, runtime.usage_metrics), max_queue=256, default_max_tokens=64
    )
    wiring = await build_gateway(
        settings,
        runtime,
        prompt=inprocess.InProcessPrompt(prompt),
        safety=inprocess.InProcessSafety(safety),
        cache=inprocess.InProcessCache(cache),
        inference=inprocess.InProcessInference(core),
    )
    gateway = GrpcServer(
        "gateway",
        [gateway_binding(wiring.gateway, wiring.directory)],
        GrpcSettings(port=0),
        runtime.rpc_metrics,
    )
    inference = GrpcServer(
        "inference", [inference_binding(core)], GrpcSettings(port=0), RpcMetrics(CollectorRegistry())
    )
    echo = grpc.aio.server()
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(EchoGateway(), echo)
    echo_port = echo.add_insecure_port("127.0.0.1:0")
    await gateway.start()
    await inference.start()
    await echo.start()
    print(
        f"[bench] gateway on {gateway.address}, inference on {inference.address}; client running...",
        file=sys.stderr,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        gateway.address,
        inference.address,
        f"127.0.0.1:{echo_port}",
        "--requests",
        str(args.requests),
        "--hit-seconds",
        str(args.hit_seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=900)
    await gateway.stop(0)
    await inference.stop(0)
    await echo.stop(0)
    await wiring.close()
    figures = json.loads(out.decode().strip().splitlines()[-1])
    targets = {
        "overhead_p50_ms_c1": 2.0,
        "overhead_p99_ms_c1": 5.0,
    }
    figures["targets_met"] = (
        all(figures[k] <= v for k, v in targets.items()) and figures["cache_hit_rps"] >= 1500
    )
    print(
        f"overhead c=1: p50 {figures['overhead_p50_ms_c1']} ms, p99 {figures['overhead_p99_ms_c1']} ms "
        f"(targets 2 / 5 ms); c=32: p50 {figures['overhead_p50_ms_c32']} ms, p99 {figures['overhead_p99_ms_c32']} ms; "
        f"cache hits {figures['cache_hit_rps']:,.0f}/s (target 1,500; a bare servicer streaming the same "
        f"messages to the same client: {figures['bare_streaming_echo_rps']:,.0f}/s)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--client", nargs=3, metavar=("GATEWAY", "INFERENCE", "ECHO"), help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level and path")
    parser.add_argument("--hit-seconds", type=float, default=5.0, help="duration of the cache-hit phase")
    parsed = parser.parse_args()
    if parsed.client:
        asyncio.run(client_main(*parsed.client, parsed.requests, parsed.hit_seconds))
    else:
        asyncio.run(main(parsed))
