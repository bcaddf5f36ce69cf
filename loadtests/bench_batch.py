"""Batch throughput end to end: ``SubmitBatch`` -> Kafka -> worker processes running the whole
pipeline (prompt, safety, cache, model) -> results topic -> tracker -> job store.

Two phases, each on its own topics and consumer groups, with ``--workers`` worker processes
(``python -m aigc_gateway.batch``, every stage in-process, the job store and the cache in Redis):

* cache hits: a warm-up job runs candidate prompts once, then a ``--items`` job over the ones
  whose answers were cached is all exact-cache hits, so the model is not the bottleneck; this is also the
  acceptance check that a 10,000-item job completes with exactly 10,000 results;
* model: ``--model-items`` distinct prompts with small ``max_tokens`` on the CPU model
  (``AIGC_INFERENCE_THREADS=1`` per process, so two processes do not oversubscribe two cores).

This process submits, runs the tracker and samples the worker group's lag on the requests topic
every second. After each job it checks exactly-once twice: the job store streams each item id
once, and the results topic read ``read_committed`` holds exactly one result per item.

The cache-hit phase uses ``product_attributes`` (greedy, JSON output): its answers end on their
own, and only such answers are cached; a free-text template cut at ``max_tokens`` would never be a
hit. The bench checks the job cost nothing (a hit is charged zero) and says so if any item ran the
model. The model phase uses ``product_copy`` with a few tokens per item.

Kafka and Redis come from ``scripts/local-stack.sh`` (started if nothing listens on their ports,
and stopped again at the end). Progress goes to stderr; the last line of stdout is one JSON object.

    .venv/bin/python loadtests/bench_batch.py [--items 10000] [--model-items 40] [--workers 2]

Measured 2026-12-01 on the 2-core machine (Kafka, Redis, this process and two workers sharing
it), with the pacer releasing each job a window at a time and workers sizing their batches to
~2 s of their throughput: 10,000 cache-hit items exactly once at 1,155-1,238 items/s end to end
(target 1,000); 40 model items of 16 tokens at 1.9 items/s. Fixed on the way: the warm-up answers
were cut at max_tokens and never cached (the first figure, 21 items/s, ran the model); pure-Python
CRC-32C in kafka-python (the ``crc32c`` package); four Redis round trips per recorded result (now
one pipelined round trip per tracker poll); a cancellation lookup per item (one per job per
second); a thread hop per item; and 50-item transactions (798 items/s with them, same run day).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from aigc.events.v1 import events_pb2
from aigc_common.kafka import Topics, ensure_topics
from aigc_common.runtime import ProcessRuntime
from aigc_common.settings import KafkaSettings, RedisSettings
from aigc_gateway.adapters import inprocess
from aigc_gateway.app import Wiring, build_gateway
from aigc_gateway.batch.service import BatchRequest, BatchService
from aigc_gateway.settings import BatchSettings, GatewaySettings
from aigc_gateway.tenants import Tenant
from aigc_prompt.app import build_core as build_prompt
from aigc_prompt.settings import PromptSettings

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "scripts" / "local-stack.sh"
HIT_TEMPLATE = "translation"
MODEL_TEMPLATE = "product_copy"
TARGET_CACHE_HIT_ITEMS_PER_S = 1_000.0


def progress(message: str) -> None:
    print(f"[bench_batch {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the local stack ------------------------------------------------------------------------


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class LocalStack:
    """Starts what is not already running; stops only what it started."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def ensure(self, component: str, port: int) -> None:
        if listening(port):
            progress(f"{component} already listening on 127.0.0.1:{port}; leaving it as it is")
            return
        progress(f"starting {component} (scripts/local-stack.sh up {component})")
        done = subprocess.run(
            ["bash", str(STACK), "up", component], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"could not start {component}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        self.started.append(component)

    def stop_started(self) -> None:
        if self.started:
            progress(f"stopping what this run started: {' '.join(self.started)}")
            subprocess.run(["bash", str(STACK), "down", *self.started], capture_output=True, timeout=120)


# --- consumer lag, sampled in a thread -------------------------------------------------------


class LagSampler:
    """Every ``interval_s``: end offsets of the requests topic minus the group's committed offsets."""

    def __init__(self, bootstrap: str, group: str, topic: str, interval_s: float = 1.0) -> None:
        self._bootstrap = bootstrap
        self._group = group
        self._topic = topic
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)
        self.samples: list[tuple[float, int]] = []
        self._origin = time.perf_counter()

    def start(self, origin: float) -> None:
        self._origin = origin
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self._bootstrap, client_id="bench-batch-lag")
        consumer = KafkaConsumer(bootstrap_servers=self._bootstrap, client_id="bench-batch-lag")
        try:
            partitions = [
                TopicPartition(self._topic, p)
                for p in sorted(consumer.partitions_for_topic(self._topic) or ())
            ]
            while not self._stop.is_set():
                try:
                    ends = consumer.end_offsets(partitions)
                    committed = admin.list_group_offsets({self._group: partitions}).get(self._group, {})
                    lag = 0
                    for tp in partitions:
                        done = committed.get(tp)
                        offset = done.offset if done is not None and done.offset >= 0 else 0
                        lag += max(0, ends.get(tp, 0) - offset)
                    self.samples.append((round(time.perf_counter() - self._origin, 1), lag))
                except Exception as exc:  # a sample lost to a hiccup is not worth failing the run
                    progress(f"lag sample failed: {exc!r}")
                self._stop.wait(self._interval)
        finally:
            consumer.close()
            admin.close()


def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, member count) of a consumer group."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-batch-admin")
    try:
        described: Any = admin.describe_groups([group])
    finally:
        admin.close()
    info = described.get(group, {}) if isinstance(described, Mapping) else described[0]
    if not isinstance(info, Mapping):
        info = getattr(info, "_asdict", lambda: {})()
    state = str(info.get("group_state") or info.get("state") or "")
    return state, len(info.get("members") or ())


def committed_results(bootstrap: str, topic: str, job_id: str) -> Counter[str]:
    """Results of ``job_id`` per item id on the results topic, as a ``read_committed`` reader sees them."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="bench-batch-verify",
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    counts: Counter[str] = Counter()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000, max_records=5000).values():
                for record in records:
                    result = events_pb2.GenerationResult.FromString(record.value)
                    if result.job_id == job_id:
                        counts[result.item_id] += 1
    finally:
        consumer.close()
    return counts


# --- worker processes -------------------------------------------------------------------------


@dataclass
class Environment:
    bootstrap: str
    redis_url: str
    run_id: str
    templates_dir: Path
    logs_dir: Path


@dataclass
class WorkerProcesses:
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[TextIO] = field(default_factory=list)

    def start(self, env: Environment, phase: str, count: int, topic_prefix: str, group: str) -> None:
        for index in range(count):
            variables = {
                **os.environ,
                "AIGC_GATEWAY_BATCH__WORKERS": "1",
                "AIGC_GATEWAY_BATCH__WORKER_INDEX_BASE": str(index),
                "AIGC_GATEWAY_BATCH__STORE": "redis",
                "AIGC_GATEWAY_BATCH__TOPIC_PREFIX": topic_prefix,
                "AIGC_GATEWAY_BATCH__WORKER_GROUP": group,
                "AIGC_GATEWAY_KAFKA__BOOTSTRAP_SERVERS": env.bootstrap,
                "AIGC_GATEWAY_KAFKA__CLIENT_ID": f"{env.run_id}-{phase}-w{index}",
                "AIGC_GATEWAY_REDIS__URL": env.redis_url,
                "AIGC_GATEWAY_REDIS__KEY_PREFIX": f"{env.run_id}:",
                "AIGC_GATEWAY_PROMPT__MODE": "inprocess",
                "AIGC_GATEWAY_SAFETY__MODE": "inprocess",
                "AIGC_GATEWAY_CACHE__MODE": "inprocess",
                "AIGC_GATEWAY_INFERENCE__MODE": "inprocess",
                "AIGC_GATEWAY_METRICS__PORT": "0",
                "AIGC_GATEWAY_LOG__LEVEL": "WARNING",
                "AIGC_PROMPT_TEMPLATES_DIR": str(env.templates_dir),
                "AIGC_PROMPT_RELOAD_INTERVAL_SECONDS": "0",
                "AIGC_CACHE_STORE": "redis",
                "AIGC_CACHE_REDIS__URL": env.redis_url,
                "AIGC_CACHE_REDIS__KEY_PREFIX": f"{env.run_id}:cache:",
                "AIGC_CACHE_SEMANTIC_ENABLED": "false",
                "AIGC_INFERENCE_THREADS": "1",
                "AIGC_INFERENCE_CONTEXTS": "1",
            }
            log = (env.logs_dir / f"{phase}-worker-{index}.log").open("w", encoding="utf-8")
            self.logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "aigc_gateway.batch"],
                    env=variables,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )

    def check_alive(self) -> None:
        for index, proc in enumerate(self.procs):
            if proc.poll() is not None:
                raise RuntimeError(f"worker process {index} exited with {proc.returncode}; see its log")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for log in self.logs:
            log.close()
        self.procs.clear()
        self.logs.clear()


# --- one phase --------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    items: int
    submit_s: float
    elapsed_s: float
    items_per_s: float
    processing_items_per_s: float
    counts: dict[str, int]
    exactly_once: bool
    duplicates_on_topic: int
    missing: int
    cost_nanos: int
    lag: list[tuple[float, int]]


async def run_job(
    service: BatchService,
    tenant: Tenant,
    template: str,
    items: dict[str, dict[str, str]],
    max_tokens: int,
    workers: WorkerProcesses,
    label: str,
    timeout_s: float,
) -> tuple[str, float, float, dict[str, int], int]:
    """Submits one job and waits for its last result: (job id, submit seconds, total seconds,
    counts, cost in nanos)."""
    start = time.perf_counter()
    submitted = await service.submit(
        tenant, BatchRequest(template_id=template, items=items, max_tokens=max_tokens)
    )
    submit_s = time.perf_counter() - start
    job_id = submitted.job.job_id
    progress(f"{label}: submitted {submitted.job.total} items as {job_id} in {submit_s:.2f}s")
    last_report = 0.0
    while True:
        view = await service.get(tenant, job_id)
        now = time.perf_counter()
        if view.status.done >= submitted.job.total:
            return job_id, submit_s, now - start, dict(view.counts), view.status.cost_nanos
        if now - start > timeout_s:
            raise TimeoutError(f"{label}: {view.status.done}/{submitted.job.total} after {timeout_s:.0f}s")
        if now - last_report >= 2.0:
            last_report = now
            rate = view.status.done / max(now - start, 1e-6)
            progress(f"{label}: {view.status.done}/{submitted.job.total} done, {rate:.0f} items/s so far")
            workers.check_alive()
        await asyncio.sleep(0.05)


async def run_phase(
    env: Environment,
    phase: str,
    *,
    template: str,
    worker_count: int,
    partitions: int,
    warm_items: dict[str, dict[str, str]],
    items: dict[str, dict[str, str]] | int,
    max_tokens: int,
    timeout_s: float,
) -> PhaseResult:
    """One job of ``items`` through ``worker_count`` worker processes. With ``warm_items``, those
    run first, and ``items`` (a count) cycles over the warm-up variables whose answers ended on
    their own, i.e. were cached."""
    prefix = f"{env.run_id}-{phase}-"
    topics = Topics.with_prefix(prefix)
    worker_group = f"{env.run_id}-{phase}-workers"
    kafka = KafkaSettings(bootstrap_servers=env.bootstrap, client_id=f"{env.run_id}-{phase}")
    # More than one partition, or one worker process would get every item; the gateway then finds
    # the topics in place and leaves them as they are.
    await asyncio.to_thread(
        ensure_topics,
        kafka,
        [topics.generation_requests, topics.generation_results, topics.generation_dlq],
        partitions=partitions,
    )
    settings = GatewaySettings(
        kafka=kafka,
        redis=RedisSettings(url=env.redis_url, key_prefix=f"{env.run_id}:"),
        batch=BatchSettings(
            enabled=True,
            store="redis",
            workers=0,
            tracker=True,
            topic_prefix=prefix,
            tracker_group=f"{env.run_id}-{phase}-tracker",
            worker_group=worker_group,
        ),
    )
    runtime = ProcessRuntime(f"bench-batch-{phase}", settings, CollectorRegistry())
    prompt = await build_prompt(
        PromptSettings(templates_dir=env.templates_dir, reload_interval_seconds=0), runtime
    )
    # Only the prompt port is used here (submission renders each item); the other ports stay
    # unconnected gRPC clients, since no worker runs in this process.
    wiring: Wiring = await build_gateway(settings, runtime, prompt=inprocess.InProcessPrompt(prompt))
    workers = WorkerProcesses()
    sampler = LagSampler(env.bootstrap, worker_group, topics.generation_requests)
    try:
        assert wiring.batch is not None
        service = wiring.batch
        tenant = next(iter(wiring.directory.tenants.values()))
        progress(f"{phase}: starting {worker_count} worker processes (logs in {env.logs_dir})")
        workers.start(env, phase, worker_count, prefix, worker_group)
        if warm_items:
            warm_id, _, warm_s, warm_counts, _ = await run_job(
                service, tenant, template, warm_items, max_tokens, workers, f"{phase} warm-up", timeout_s
            )
            progress(f"{phase} warm-up: {len(warm_items)} items in {warm_s:.1f}s {warm_counts}")
            cached = [
                warm_items[result.item_id]
                async for result in service.results(tenant, warm_id)
                if result.status == "succeeded" and result.usage.completion_tokens < max_tokens
            ]
            if not cached:
                raise RuntimeError(f"{phase} warm-up: no answer ended before max_tokens, none was cached")
            progress(f"{phase} warm-up: {len(cached)} of {len(warm_items)} answers cached")
        if isinstance(items, int):
            items = {f"item-{i:05d}": cached[i % len(cached)] for i in range(items)}
        deadline = time.monotonic() + 180
        while True:
            workers.check_alive()
            state, members = await asyncio.to_thread(group_members, env.bootstrap, worker_group)
            if members >= worker_count and state.lower() == "stable":
                break
            if time.monotonic() > deadline:
                progress(f"{phase}: group is {state!r} with {members} members; going on anyway")
                break
            await asyncio.sleep(1.0)
        progress(f"{phase}: {worker_count} workers in group {worker_group}")
        sampler.start(time.perf_counter())
        job_id, submit_s, elapsed_s, counts, cost_nanos = await run_job(
            service, tenant, template, items, max_tokens, workers, phase, timeout_s
        )
        sampler.stop()
        progress(f"{phase}: {len(items)} items in {elapsed_s:.2f}s {counts}; checking exactly-once")
        streamed = [result.item_id async for result in service.results(tenant, job_id)]
        on_topic = await asyncio.to_thread(
            committed_results, env.bootstrap, topics.generation_results, job_id
        )
        expected = set(items)
        duplicates = sum(n - 1 for n in on_topic.values() if n > 1)
        missing = len(expected - set(on_topic))
        exactly_once = (
            len(streamed) == len(expected)
            and set(streamed) == expected
            and set(on_topic) == expected
            and duplicates == 0
        )
        progress(
            f"{phase}: store streamed {len(streamed)} results ({len(set(streamed))} distinct), "
            f"results topic {sum(on_topic.values())} records for {len(on_topic)} items; "
            f"exactly once: {exactly_once}"
        )
        return PhaseResult(
            items=len(items),
            submit_s=round(submit_s, 3),
            elapsed_s=round(elapsed_s, 3),
            items_per_s=round(len(items) / elapsed_s, 1),
            processing_items_per_s=round(len(items) / max(elapsed_s - submit_s, 1e-6), 1),
            counts=counts,
            exactly_once=exactly_once,
            duplicates_on_topic=duplicates,
            missing=missing,
            cost_nanos=cost_nanos,
            lag=list(sampler.samples),
        )
    finally:
        sampler.stop()
        workers.stop()
        await wiring.close()


def lag_summary(samples: list[tuple[float, int]], keep: int = 12) -> dict[str, Any]:
    if not samples:
        return {"samples": 0, "max": 0, "series": []}
    step = max(1, len(samples) // keep)
    series = samples[::step]
    if series[-1] != samples[-1]:
        series.append(samples[-1])
    return {
        "samples": len(samples),
        "max": max(lag for _, lag in samples),
        "series": [[t, lag] for t, lag in series],
    }


# --- main ------------------------------------------------------------------------------------


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--items", type=int, default=10_000, help="items of the cache-hit job (at most 10,000)"
    )
    parser.add_argument(
        "--distinct", type=int, default=4, help="distinct prompts tried for the cache-hit job (twice as many)"
    )
    parser.add_argument("--model-items", type=int, default=40, help="items of the model job (0 skips it)")
    # Only answers that finished on their own are cached: the cache-hit phase needs room for the
    # template's whole answer, or every item would run the model again.
    parser.add_argument("--max-tokens", type=int, default=160, help="max_tokens of the cache-hit items")
    parser.add_argument("--model-max-tokens", type=int, default=16, help="max_tokens of the model items")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the requests topic")
    parser.add_argument("--phase-timeout", type=float, default=240.0, help="seconds each job may take")
    args = parser.parse_args()

    kafka_port = int(os.environ.get("AIGC_KAFKA_PORT", "19092"))
    redis_port = int(os.environ.get("AIGC_REDIS_PORT", "16379"))
    stack = LocalStack()
    workdir = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        stack.ensure("kafka", kafka_port)
        stack.ensure("redis", redis_port)
        env = Environment(
            bootstrap=f"127.0.0.1:{kafka_port}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            run_id=f"bench-batch-{uuid.uuid4().hex[:8]}",
            templates_dir=ROOT / "prompt_templates",
            logs_dir=workdir,
        )
        # Twice as many candidates as needed: the small model sometimes talks until max_tokens,
        # and such an answer is not cached; the job cycles over the ones that were.
        phrases = [f"竹制砧板 {i} 号" for i in range(2 * max(1, args.distinct))]
        warm = {f"warm-{i}": {"text": t} for i, t in enumerate(phrases)}
        started = time.perf_counter()
        cache_hit = await run_phase(
            env,
            "hit",
            template=HIT_TEMPLATE,
            worker_count=args.workers,
            partitions=args.partitions,
            warm_items=warm,
            items=args.items,
            max_tokens=args.max_tokens,
            timeout_s=args.phase_timeout,
        )
        progress(
            f"cache hits: {cache_hit.items_per_s:.0f} items/s end to end "
            f"(target >= {TARGET_CACHE_HIT_ITEMS_PER_S:.0f})"
        )
        if cache_hit.cost_nanos:
            progress(
                f"cache hits: the job cost {cache_hit.cost_nanos / 1e9:.6f}, so some items ran the model; "
                "the figure is not a pure cache-hit rate"
            )
        model: PhaseResult | None = None
        if args.model_items > 0:
            fresh = {
                f"model-{i:03d}": {"product": f"不锈钢保温杯 型号 {i}", "language": "zh"}
                for i in range(args.model_items)
            }
            model = await run_phase(
                env,
                "model",
                template=MODEL_TEMPLATE,
                worker_count=args.workers,
                partitions=args.partitions,
                warm_items={},
                items=fresh,
                max_tokens=args.model_max_tokens,
                timeout_s=args.phase_timeout,
            )
            progress(f"model: {model.items_per_s:.2f} items/s end to end")
        succeeded_hits = cache_hit.counts.get("succeeded", 0)
        summary: dict[str, Any] = {
            "cache_hit_items_per_s": cache_hit.items_per_s,
            "model_items_per_s": model.items_per_s if model else None,
            "target_cache_hit_items_per_s": TARGET_CACHE_HIT_ITEMS_PER_S,
            "meets_target": cache_hit.items_per_s >= TARGET_CACHE_HIT_ITEMS_PER_S,
            "items": cache_hit.items,
            "model_items": model.items if model else 0,
            "workers": args.workers,
            "partitions": args.partitions,
            "max_tokens": args.max_tokens,
            "exactly_once": cache_hit.exactly_once and (model.exactly_once if model else True),
            "all_cache_hits": cache_hit.cost_nanos == 0,
            "acceptance_10k_exactly_10k_results": cache_hit.items == 10_000
            and cache_hit.exactly_once
            and succeeded_hits == 10_000,
            "cache_hit": {
                "submit_s": cache_hit.submit_s,
                "elapsed_s": cache_hit.elapsed_s,
                "processing_items_per_s": cache_hit.processing_items_per_s,
                "counts": cache_hit.counts,
                "duplicates_on_topic": cache_hit.duplicates_on_topic,
                "missing": cache_hit.missing,
                "lag": lag_summary(cache_hit.lag),
            },
            "model": None
            if model is None
            else {
                "submit_s": model.submit_s,
                "elapsed_s": model.elapsed_s,
                "counts": model.counts,
                "duplicates_on_topic": model.duplicates_on_topic,
                "missing": model.missing,
                "lag": lag_summary(model.lag),
            },
            "lag_samples": len(cache_hit.lag) + (len(model.lag) if model else 0),
            "wall_s": round(time.perf_counter() - started, 1),
        }
        print(json.dumps(summary, ensure_ascii=False))
        return 0 if summary["exactly_once"] else 1
    finally:
        stack.stop_started()
        if os.environ.get("AIGC_BENCH_KEEP_LOGS") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            progress(f"logs kept in {workdir}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
