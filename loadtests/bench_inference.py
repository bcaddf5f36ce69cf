"""Inference overhead benchmark: the gRPC service against the same engine called in-process.

Measures tokens/s and time to first token (TTFT) at concurrency 1, 4 and 16, in-process
(``InferenceCore.generate``) and through the real gRPC server on 127.0.0.1 serving the same
engine, interleaving the two so machine noise hits both alike. The gRPC load comes from a
separate client process, as real callers do, so the client's own Python work does not compete
with the server for the GIL. Optionally also through Ray Serve's gRPC proxy (``--ray``).
Prints a table, then one JSON object as the last line.

Targets on the 2-core CPU machine: the service keeps >= 95% of in-process tokens/s and adds
<= 2 ms to TTFT at concurrency 1.

    .venv/bin/python loadtests/bench_inference.py [--rounds 3] [--max-tokens 64] [--ray]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry

from aigc.common.v1 import common_pb2
from aigc.inference.v1 import inference_pb2 as pb
from aigc.inference.v1 import inference_pb2_grpc as pb_grpc
from aigc_common.metrics import RpcMetrics
from aigc_common.model_files import default_gguf_path
from aigc_common.server import GrpcServer
from aigc_common.settings import GrpcSettings
from aigc_common.types import (
    ChatMessage,
    GenerationDelta,
    GenerationRequest,
    Role,
    SamplingParams,
)
from aigc_inference.core import InferenceCore
from aigc_inference.engines.llama_cpp import LlamaCppEngine
from aigc_inference.metrics import InferenceMetrics
from aigc_inference.servicer import binding

PROMPT = "Write a short story about a lighthouse keeper and a storm."


@dataclass
class Sample:
    tokens: int
    ttft: float


@dataclass
class Result:
    tokens_per_s: float
    ttft_ms: float


OneCall = Callable[[], Awaitable[Sample]]


async def _run(call: OneCall, concurrency: int, requests: int) -> Result:
    """``requests`` calls with at most ``concurrency`` in flight; aggregate tokens/s, mean TTFT."""
    semaphore = asyncio.Semaphore(concurrency)
    samples: list[Sample] = []

    async def one() -> None:
        async with semaphore:
            samples.append(await call())

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    wall = time.perf_counter() - start
    return Result(sum(s.tokens for s in samples) / wall, 1000 * statistics.mean(s.ttft for s in samples))


def in_process_call(core: InferenceCore, max_tokens: int) -> OneCall:
    async def call() -> Sample:
        request = GenerationRequest(
            messages=(ChatMessage(Role.USER, PROMPT),),
            sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        )
        start = time.perf_counter()
        ttft = 0.0
        tokens = 0
        async for event in core.generate(request):
            if isinstance(event, GenerationDelta) and event.token_ids:
                ttft = ttft or time.perf_counter() - start
                tokens += len(event.token_ids)
        return Sample(tokens, ttft)

    return call


def grpc_call(
    stub: pb_grpc.InferenceServiceStub, max_tokens: int, metadata: tuple[tuple[str, str], ...] = ()
) -> OneCall:
    request = pb.GenerateRequest(
        messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=PROMPT)],
        sampling=common_pb2.SamplingParams(max_tokens=max_tokens, temperature=0.0),
    )

    async def call() -> Sample:
        start = time.perf_counter()
        ttft = 0.0
        tokens = 0
        async for reply in stub.Generate(request, metadata=metadata):
            if reply.WhichOneof("event") == "delta" and reply.delta.token_ids:
                ttft = ttft or time.perf_counter() - start
                tokens += len(reply.delta.token_ids)
        return Sample(tokens, ttft)

    return call


async def client_main(address: str, concurrency: int, requests: int, max_tokens: int, app: str) -> None:
    """Client process: drives the server and prints one JSON result line."""
    metadata = (("application", app),) if app else ()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        # Connect (HTTP/2 handshake) before the clock starts: callers keep their channels open.
        await stub.ListModels(pb.ListModelsRequest(), metadata=metadata)
        result = await _run(grpc_call(stub, max_tokens, metadata), concurrency, requests)
    print(json.dumps({"tokens_per_s": result.tokens_per_s, "ttft_ms": result.ttft_ms}))


async def remote(address: str, concurrency: int, requests: int, max_tokens: int, app: str = "") -> Result:
    """Runs one measurement from a separate client process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        address,
        "--concurrency",
        str(concurrency),
        "--requests",
        str(requests),
        "--max-tokens",
        str(max_tokens),
        "--app",
        app,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    data = json.loads(out.decode().strip().splitlines()[-1])
    return Result(data["tokens_per_s"], data["ttft_ms"])


async def measure_ray(max_tokens: int, rounds: int, threads: int, levels: list[int]) -> dict[str, float]:
    """Tokens/s and TTFT through Ray Serve's gRPC proxy (one replica), next to a fresh in-process
    baseline measured while Ray is idle. Ray binds every interface: run this inside a private
    network namespace (`make bench-inference` does)."""
    import socket
    import tempfile

    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    from aigc_inference.deployment import GRPC_SERVICER_FUNCTIONS, build_app

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    grpc_port = free_port()
    print("[bench] starting a local Ray and Serve (one replica)...", file=sys.stderr)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=tempfile.mkdtemp(prefix="aigc-bench-ray-", dir="/tmp"),
        log_to_driver=False,
    )
    figures: dict[str, float] = {}
    try:
        serve.start(
            http_options={"host": "127.0.0.1", "port": free_port()},
            grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
        )
        app = build_app(
            {
                "settings": {"threads": threads, "max_queue": 64},
                "autoscaling": {"min_replicas": 1, "max_replicas": 1},
                "ray_actor_options": {"num_cpus": 1},
            }
        )
        serve.run(app, name="inference", route_prefix="/inference")
        engine = LlamaCppEngine(default_gguf_path(), contexts=1, threads=threads)
        await engine.start()
        core = InferenceCore(
            engine, InferenceMetrics(CollectorRegistry()), max_queue=64, default_max_tokens=64
        )
        baseline = in_process_call(core, max_tokens)
        address = f"127.0.0.1:{grpc_port}"
        await remote(address, 1, 1, max_tokens, "inference")  # warm-up
        for c in levels:
            requests = max(4, 2 * c)
            base_runs, ray_runs = [], []
            for _ in range(rounds):
                base_runs.append(await _run(baseline, c, requests))
                ray_runs.append(await remote(address, c, requests, max_tokens, "inference"))
            b_tps = statistics.median(r.tokens_per_s for r in base_runs)
            r_tps = statistics.median(r.tokens_per_s for r in ray_runs)
            b_ttft = statistics.median(r.ttft_ms for r in base_runs)
            r_ttft = statistics.median(r.ttft_ms for r in ray_runs)
            print(f"{'in-process':<12}{c:>6}{b_tps:>12.1f}{b_ttft:>10.1f}")
            print(f"{'ray-serve':<12}{c:>6}{r_tps:>12.1f}{r_ttft:>10.1f}")
            figures[f"ray_tokens_per_s_c{c}"] = round(r_tps, 2)
            figures[f"ray_tokens_per_s_ratio_c{c}"] = round(r_tps / b_tps, 4)
            figures[f"ray_ttft_added_ms_c{c}"] = round(r_ttft - b_ttft, 2)
        await engine.stop()
    finally:
        serve.shutdown()
        ray.shutdown()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--client", default="", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--app", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per concurrency")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument(
        "--coalesce-ms", type=float, default=15.0, help="the service's delta coalescing window"
    )
    parser.add_argument("--ray", action="store_true", help="also measure through Ray Serve's gRPC proxy")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="llama.cpp threads; 1 leaves the second core to the server and the client process, so the "
        "comparison measures the service's overhead rather than a fight over the cores",
    )
    args = parser.parse_args()
    if args.client:
        await client_main(args.client, int(args.concurrency), args.requests, args.max_tokens, args.app)
        return
    levels = [int(c) for c in args.concurrency.split(",")]

    print(
        f"[bench] loading SmolLM2-135M-Instruct (llama.cpp, 1 context, {args.threads} threads)...",
        file=sys.stderr,
    )
    engine = LlamaCppEngine(default_gguf_path(), contexts=1, threads=args.threads)
    await engine.start()
    registry = CollectorRegistry()
    baseline_core = InferenceCore(engine, InferenceMetrics(registry), max_queue=64, default_max_tokens=64)
    service_core = InferenceCore(
        engine,
        InferenceMetrics(CollectorRegistry()),
        max_queue=64,
        default_max_tokens=64,
        coalesce_seconds=args.coalesce_ms / 1000,
    )
    server = GrpcServer(
        "inference", [binding(service_core)], GrpcSettings(port=0), RpcMetrics(CollectorRegistry())
    )
    await server.start()
    baseline = in_process_call(baseline_core, args.max_tokens)
    await baseline()  # warm-up: first decode allocates buffers
    await remote(server.address, 1, 1, args.max_tokens)

    figures: dict[str, float] = {}
    print(f"{'path':<12}{'conc':>6}{'tokens/s':>12}{'TTFT ms':>10}")
    for c in levels:
        requests = max(4, 2 * c)
        base_runs, svc_runs = [], []
        for _ in range(args.rounds):
            base_runs.append(await _run(baseline, c, requests))
            svc_runs.append(await remote(server.address, c, requests, args.max_tokens))
        b_tps = statistics.median(r.tokens_per_s for r in base_runs)
        s_tps = statistics.median(r.tokens_per_s for r in svc_runs)
        b_ttft = statistics.median(r.ttft_ms for r in base_runs)
        s_ttft = statistics.median(r.ttft_ms for r in svc_runs)
        print(f"{'in-process':<12}{c:>6}{b_tps:>12.1f}{b_ttft:>10.1f}")
        print(f"{'grpc':<12}{c:>6}{s_tps:>12.1f}{s_ttft:>10.1f}")
        figures[f"in_process_tokens_per_s_c{c}"] = round(b_tps, 2)
        figures[f"grpc_tokens_per_s_c{c}"] = round(s_tps, 2)
        figures[f"tokens_per_s_ratio_c{c}"] = round(s_tps / b_tps, 4)
        figures[f"ttft_added_ms_c{c}"] = round(s_ttft - b_ttft, 2)
    await server.stop(0)

    if args.ray:
        # The in-process baseline shares the CPU with Ray's replica: free the engine's context first.
        await engine.stop()
        figures.update(await measure_ray(args.max_tokens, args.rounds, args.threads, levels))
    else:
        await engine.stop()
    figures["target_tokens_per_s_ratio_c1_met"] = float(figures.get("tokens_per_s_ratio_c1", 0) >= 0.95)
    figures["target_ttft_added_ms_c1_met"] = float(figures.get("ttft_added_ms_c1", 99) <= 2.0)
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
