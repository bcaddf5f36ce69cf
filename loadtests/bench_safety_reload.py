"""Input-check latency while a pack is hot-reloaded, with and without gc.freeze.

An operator edits a pack; the service rebuilds its policies in a worker thread (``core.watch``)
while the event loop goes on checking. The rebuild holds the interpreter lock in turns with the
checks, and the garbage it makes triggers full collections that walk every object alive. This
bench copies the shipped packs and policies to a scratch folder, serves input checks on the main
thread (one every ~0.5 ms, short business texts and paragraphs), and edits ``default.yaml`` a few
times while it does:

1. collector as Python leaves it (``AIGC_SAFETY_GC_FREEZE=false``);
2. after ``freeze_long_lived()`` (the service's default), with ``gc.freeze()`` after each reload
   as ``core.watch`` does.

For each: latency p50 / p99 / max of the checks while idle and while reloads ran, checks per
second during reloads as a share of idle, and the longest full collection. The frozen object count
after each reload shows that replaced snapshots are freed (it stays flat). Last line: one JSON object.

    .venv/bin/python loadtests/bench_safety_reload.py [--reloads 3] [--idle-seconds 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from aigc_safety.classifier import SafetyClassifier
from aigc_safety.core import SafetyCore, freeze_long_lived
from aigc_safety.metrics import SafetyMetrics
from aigc_safety.policy import PolicyStore, default_packs_dir, default_policies_dir

TEXTS = [
    "请为这款保温杯写三条卖点，突出304不锈钢和12小时保温。",
    "Translate into English: 本店支持七天无理由退货。",
    "顾客问：快递三天还没到，能帮我查一下吗？",
    "Summarise the customer's complaint in one sentence: the blender arrived with a cracked jug.",
    "这款羊毛大衣采用澳洲美利奴羊毛，手感柔软，保暖性好，适合秋冬通勤穿着。版型经过多次调整，肩线自然，"
    "腰部略收，显得人更加挺拔。我们提供七天无理由退换货服务，如有任何质量问题，请联系在线客服处理。",
    "Our customer-service team answers within two hours on working days. Orders placed before 4 pm ship "
    "the same day, and every parcel is insured. If an item arrives damaged, send a photo and we replace it.",
]
PACE_SECONDS = 0.0005


class FullCollections:
    """Durations of generation-2 collections (gc callbacks), in ms."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.durations.append((time.perf_counter() - self._started) * 1000)


def serve(core: SafetyCore, until: Any) -> list[float]:
    """Checks one text after another until ``until()`` is true, pausing ``PACE_SECONDS`` between
    them as a server waits for the next request. A latency runs from the moment the pause ends
    (the request "arrives") to the verdict: it includes the wait to get the interpreter lock back
    from a busy reload thread, as a real request waking the event loop would."""
    latencies = []
    i = 0
    while not until():
        arrived = time.perf_counter() + PACE_SECONDS
        time.sleep(PACE_SECONDS)
        core.check_input("bench", "", TEXTS[i % len(TEXTS)])
        latencies.append(time.perf_counter() - arrived)
        i += 1
    return latencies


def figures(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "checks": len(ordered),
        "checks_per_second": round(len(ordered) / seconds, 1),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def phase(
    core: SafetyCore, store: PolicyStore, pack: Path, args: argparse.Namespace, freeze: bool
) -> dict[str, Any]:
    collections = FullCollections()
    deadline = time.perf_counter() + args.idle_seconds
    idle = figures(serve(core, lambda: time.perf_counter() >= deadline), args.idle_seconds)
    during: list[float] = []
    reload_seconds = 0.0
    frozen = []
    collections.durations.clear()
    for n in range(args.reloads):
        pack.write_text(pack.read_text(encoding="utf-8") + f"\n# edit {n}\n", encoding="utf-8")
        outcome: dict[str, Any] = {}

        def reload(outcome: dict[str, Any] = outcome) -> None:
            started = time.perf_counter()
            outcome["applied"] = store.reload(SafetyCore._warm_policies)
            outcome["seconds"] = time.perf_counter() - started
            if freeze and outcome["applied"]:
                gc.freeze()

        worker = threading.Thread(target=reload)
        worker.start()
        during.extend(serve(core, lambda worker=worker: not worker.is_alive()))
        worker.join()
        if not outcome.get("applied"):
            raise SystemExit("the reload was not applied; the bench measured nothing")
        reload_seconds += outcome["seconds"]
        frozen.append(gc.get_freeze_count())
    gc.callbacks.remove(collections._callback)
    reloading = figures(during, reload_seconds)
    return {
        "idle": idle,
        "reloading": reloading,
        "reload_seconds_mean": round(reload_seconds / args.reloads, 2),
        "throughput_while_reloading_vs_idle": round(
            reloading["checks_per_second"] / idle["checks_per_second"], 3
        ),
        "longest_full_collection_ms": round(max(collections.durations, default=0.0), 1),
        "full_collections": len(collections.durations),
        "frozen_objects_after_each_reload": frozen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reloads", type=int, default=3, help="pack edits per phase")
    parser.add_argument("--idle-seconds", type=float, default=2.0, help="idle serving window per phase")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    try:
        shutil.copytree(default_packs_dir(), scratch / "packs")
        shutil.copytree(default_policies_dir(), scratch / "policies")
        store = PolicyStore(scratch / "packs", scratch / "policies")
        core = SafetyCore(store, SafetyMetrics(CollectorRegistry()), classifier=SafetyClassifier.load())
        core.warm_up()
        pack = scratch / "packs" / "default.yaml"
        report: dict[str, Any] = {}
        for name, freeze in (("collector_as_is", False), ("gc_freeze", True)):
            if freeze:
                freeze_long_lived()
            report[name] = result = phase(core, store, pack, args, freeze)
            print(
                f"{name:<16} idle p50 {result['idle']['p50_ms']:.3f} p99 {result['idle']['p99_ms']:.3f} ms | "
                f"reloading ({result['reload_seconds_mean']:.2f} s each) p50 {result['reloading']['p50_ms']:.3f} "
                f"p99 {result['reloading']['p99_ms']:.2f} max {result['reloading']['max_ms']:.1f} ms, "
                f"throughput {result['throughput_while_reloading_vs_idle']:.2f}x idle | longest full collection "
                f"{result['longest_full_collection_ms']:.1f} ms ({result['full_collections']})",
                flush=True,
            )
        as_is, frozen = report["collector_as_is"]["reloading"], report["gc_freeze"]["reloading"]
        report["p99_while_reloading_frozen_vs_as_is"] = round(frozen["p99_ms"] / as_is["p99_ms"], 3)
        report["max_while_reloading_frozen_vs_as_is"] = round(frozen["max_ms"] / as_is["max_ms"], 3)
        print(json.dumps(report, sort_keys=True))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
