"""Measures a self-hosted model's prompt (prefill) and completion (decode) throughput, the two
figures a self-hosted price needs (``PriceSetting.prompt_tokens_per_second`` and
``completion_tokens_per_second``), and prints the per-1,000-token prices they give for an hourly
hardware price.

Prefill: a long prompt with ``max_tokens=1``, prompt tokens over time to first token. Decode: a
short prompt with ``max_tokens=N``, completion tokens after the first over the time after the first.
Every round uses a fresh prompt, so the engine's prompt cache cannot make prefill look free.
Last line: one JSON object.

    .venv/bin/python loadtests/bench_throughput.py [--rounds 3] [--hour-price 0.30] [--currency CNY]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from prometheus_client import CollectorRegistry

from aigc_common.model_files import default_gguf_path
from aigc_common.pricing import Price, PriceSetting
from aigc_common.types import (
    ChatMessage,
    GenerationDelta,
    GenerationFinished,
    GenerationRequest,
    Role,
    SamplingParams,
)
from aigc_inference.core import InferenceCore
from aigc_inference.engines.llama_cpp import LlamaCppEngine
from aigc_inference.metrics import InferenceMetrics

PARAGRAPH = (
    "The warehouse received {n} pallets of ceramic tableware on Monday; each pallet holds forty boxes "
    "and every box must be checked for cracks before it is shelved. 仓库周一收到了{n}托陶瓷餐具，每托四十箱，"
    "上架前每箱都要检查是否有裂纹。 "
)


async def _one(core: InferenceCore, prompt: str, max_tokens: int) -> tuple[int, int, float, float]:
    """(prompt tokens, completion tokens, seconds to first token, seconds after it)."""
    request = GenerationRequest(
        messages=(ChatMessage(Role.USER, prompt),),
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
    )
    start = time.perf_counter()
    first = 0.0
    usage = None
    async for event in core.generate(request):
        if isinstance(event, GenerationDelta) and event.token_ids and not first:
            first = time.perf_counter()
        elif isinstance(event, GenerationFinished):
            usage = event.usage
    end = time.perf_counter()
    assert usage is not None and first
    return usage.prompt_tokens, usage.completion_tokens, first - start, end - first


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-paragraphs", type=int, default=12, help="length of the prefill prompt")
    parser.add_argument("--max-tokens", type=int, default=128, help="completion tokens per decode round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hour-price", type=float, default=0.30, help="hardware price per hour")
    parser.add_argument("--currency", default="CNY")
    args = parser.parse_args()

    engine = LlamaCppEngine(default_gguf_path(), contexts=1, threads=args.threads)
    await engine.start()
    core = InferenceCore(engine, InferenceMetrics(CollectorRegistry()), max_queue=4, default_max_tokens=64)
    await _one(core, "warm up", 4)
    prefill, decode = [], []
    for r in range(args.rounds):
        long_prompt = "".join(PARAGRAPH.format(n=r * 100 + i) for i in range(args.prompt_paragraphs))
        p, _, ttft, _ = await _one(core, f"Round {r}. Summarise:\n{long_prompt}", 1)
        prefill.append(p / ttft)
        _, c, _, rest = await _one(core, f"Round {r}: tell a long story about a lighthouse.", args.max_tokens)
        decode.append((c - 1) / rest)
        print(
            f"round {r + 1}/{args.rounds}: prefill {prefill[-1]:.0f} tok/s ({p} tokens), decode {decode[-1]:.1f} tok/s"
        )
    await engine.stop()

    prompt_tps, completion_tps = statistics.median(prefill), statistics.median(decode)
    price = Price.from_setting(
        PriceSetting(
            currency=args.currency,
            hour_price=args.hour_price,
            prompt_tokens_per_second=prompt_tps,
            completion_tokens_per_second=completion_tps,
        )
    )
    print(
        f"at {args.hour_price} {args.currency}/hour: {price.prompt_per_1k:.6f} per 1k prompt tokens, "
        f"{price.completion_per_1k:.6f} per 1k completion tokens"
    )
    print(
        json.dumps(
            {
                "model": engine.info.name,
                "prompt_tokens_per_second": round(prompt_tps, 1),
                "completion_tokens_per_second": round(completion_tps, 1),
                "hour_price": args.hour_price,
                "currency": args.currency,
                "prompt_per_1k": round(price.prompt_per_1k, 8),
                "completion_per_1k": round(price.completion_per_1k, 8),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
