"""Prompt render benchmark: latency p50 / p99 and renders per second for loaded templates,
without retrieval, through ``PromptCore.render`` (the code every Generate runs).

Target: p99 <= 1 ms. Bounded: ``--seconds`` per template (default 2). Prints a table, then one
JSON object as the last line.

    .venv/bin/python loadtests/bench_prompt.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from aigc_common.types import ChatMessage
from aigc_prompt.core import PromptCore
from aigc_prompt.settings import PromptSettings
from aigc_prompt.templates import TemplateStore

CASES = {
    "chat": {"prompt": "长城有多长？请简要回答，并说明它大约建于哪个朝代。"},
    "product_copy": {
        "product": "保温杯",
        "selling_points": "304不锈钢, 12小时保温, 一键开盖",
        "language": "zh",
    },
    # Few-shot CoT with similarity-ranked exemplars: the most work a render does.
    "math_word_problem": {"problem": "一辆车每小时行驶 80 公里，3 小时行驶多少公里？"},
}


def _no_tokens(messages: tuple[ChatMessage, ...]) -> int:
    # Rendering alone is measured here; token counting has its own cost and its own numbers.
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per template")
    args = parser.parse_args()
    core = PromptCore(
        TemplateStore(PromptSettings().templates_dir),
        count_tokens=_no_tokens,
        count_text_tokens=len,
        prices={},
        default_model="m",
    )
    figures: dict[str, float] = {}
    worst_p99 = 0.0
    print(f"{'template':<16}{'renders/s':>12}{'p50 us':>10}{'p99 us':>10}")
    for template, variables in CASES.items():
        for _ in range(200):  # warm-up: Jinja compiles and caches each template on first use
            core.render("bench", template, variables)
        latencies: list[float] = []
        deadline = time.perf_counter() + args.seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            core.render("bench", template, variables)
            latencies.append(time.perf_counter() - start)
        latencies.sort()
        p50 = statistics.median(latencies) * 1e6
        p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1e6
        rate = len(latencies) / sum(latencies)
        worst_p99 = max(worst_p99, p99)
        print(f"{template:<16}{rate:>12.0f}{p50:>10.1f}{p99:>10.1f}")
        figures[f"{template}_renders_per_s"] = round(rate, 1)
        figures[f"{template}_p50_ms"] = round(p50 / 1000, 4)
        figures[f"{template}_p99_ms"] = round(p99 / 1000, 4)
    figures["p99_ms_worst"] = round(worst_p99 / 1000, 4)
    figures["target_p99_le_1ms_met"] = float(worst_p99 <= 1000)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
