"""Safety check speed, and the delay streaming moderation adds to the first released token.

1. Input checks with the default policy (rules, classifier, PII) on one thread: latency p50 / p99
   for texts of up to 2,000 characters, and checks per second on short business texts, each
   against a baseline of normalisation alone measured in the same run; and the classifier alone
   on the long texts with the compiled n-gram look-up against numpy, as a ratio (when built); and
   the whole check with the C helpers (fold, rule scan, classifier) against none of them, as
   ratios on the long and the short texts (when built).
2. Output moderation: a scripted answer streamed token by token (zh and en) through the moderator
   with the configured hold-back window; reports how many tokens the first released text waits
   for, the time that is at the CPU model's decode rate, and the moderator's own compute per delta.

Targets (issue 5): p99 <= 2 ms per input check of up to 2,000 characters; >= 5,000 checks/s on one core.
The targets are stated for the development set, which ``aigc safety eval`` measures; here they are
checked on these texts only (``targets_met_on_bench_texts``). Last line: one JSON object.

    .venv/bin/python loadtests/bench_safety.py [--seconds 3] [--tokens-per-second 85]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import statistics
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from aigc_safety.classifier import SafetyClassifier
from aigc_safety.core import SafetyCore
from aigc_safety.metrics import SafetyMetrics
from aigc_safety.normalize import normalize, use_native_fold
from aigc_safety.policy import PolicyStore, default_packs_dir, default_policies_dir

SHORT = [
    "请为这款保温杯写三条卖点，突出304不锈钢和12小时保温。",
    "Translate into English: 本店支持七天无理由退货。",
    "顾客问：快递三天还没到，能帮我查一下吗？",
    "Write a product description for a bamboo cutting board, 50 words.",
    "请审核这段广告文案是否含有“最佳”“第一”等违禁极限词：本品是全网最好的面霜。",
    "Summarise the customer's complaint in one sentence: the blender arrived with a cracked jug.",
    "帮我把这段话改写得更正式一些：我们下周二开会讨论新品定价。",
    "What is the return policy for opened cosmetics?",
]
PARAGRAPHS = [
    "这款羊毛大衣采用澳洲美利奴羊毛，手感柔软，保暖性好，适合秋冬通勤穿着。版型经过多次调整，肩线自然，"
    "腰部略收，显得人更加挺拔。我们提供七天无理由退换货服务，如有任何质量问题，请联系在线客服处理。",
    "Our customer-service team answers within two hours on working days. Orders placed before 4 pm ship the "
    "same day, and every parcel is insured. If an item arrives damaged, send a photo and we will replace it. ",
]
ANSWERS = {
    "zh": "您好，感谢您的耐心等待。根据物流信息，您的包裹已到达本地配送站，预计明天上午送达。如有其他问题，欢迎随时联系我们。",
    "en": "Hello, thank you for waiting. The tracking shows your parcel reached the local depot and should arrive "
    "tomorrow morning. Let us know if there is anything else we can help with.",
}


def _long_text(rng: random.Random, chars: int) -> str:
    text = ""
    while len(text) < chars:
        text += rng.choice(PARAGRAPHS)
    return text[:chars]


def _timed(fn: Callable[[str], object], texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        start = time.perf_counter()
        fn(text)
        out.append(time.perf_counter() - start)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _tokens(text: str, lang: str) -> list[str]:
    # Roughly how the CPU model's tokenizer splits: ~1.5 CJK characters or ~4 Latin characters a token.
    size = 2 if lang == "zh" else 4
    return [text[i : i + size] for i in range(0, len(text), size)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget of each throughput phase")
    parser.add_argument("--long-texts", type=int, default=400, help="2,000-character checks for the p99")
    parser.add_argument("--tokens-per-second", type=float, default=85.0, help="decode rate of the model")
    parser.add_argument("--holdback-chars", type=int, default=16)
    args = parser.parse_args()

    core_classifier = SafetyClassifier.load()
    core = SafetyCore(
        PolicyStore(default_packs_dir(), default_policies_dir()),
        SafetyMetrics(CollectorRegistry()),
        classifier=core_classifier,
        holdback_chars=args.holdback_chars,
        audit=None,
    )
    rng = random.Random(7)
    check = lambda text: core.check_input("bench", "", text)  # noqa: E731
    long_texts = [_long_text(rng, rng.randint(1500, 2000)) for _ in range(args.long_texts)]
    core.warm_up()  # as the service does before serving
    check(long_texts[0])
    baseline_long = _timed(normalize, long_texts)
    long_lat = _timed(check, long_texts)
    print(
        f"input check, 1,500-2,000 chars x{len(long_texts)}: p50 {_pct(long_lat, 0.5) * 1e3:.3f} ms, "
        f"p99 {_pct(long_lat, 0.99) * 1e3:.3f} ms (normalisation alone p99 {_pct(baseline_long, 0.99) * 1e3:.3f} ms)"
    )

    def rate(fn: Callable[[str], object]) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            for text in SHORT:
                fn(text)
            done += len(SHORT)
        return done / (time.perf_counter() - start)

    paths: dict[str, float] = {}
    if core_classifier.scoring_path == "native":
        numpy_only = SafetyClassifier.load(use_native=False)
        folded = [normalize(text).text for text in long_texts]
        for _ in range(2):  # alternate, keep the better of two: the machine's speed drifts
            for name, model in (("native", core_classifier), ("numpy", numpy_only)):
                took = statistics.median(_timed(model.score, folded))
                paths[name] = min(paths.get(name, math.inf), took)
        print(
            f"classifier alone, 1,500-2,000 chars: compiled look-up p50 {paths['native'] * 1e3:.3f} ms, "
            f"numpy {paths['numpy'] * 1e3:.3f} ms ({paths['numpy'] / paths['native']:.1f}x)"
        )
    else:
        print(
            f"classifier scoring path: {core_classifier.scoring_path} (run scripts/build-native.sh to compare)"
        )

    short_rate = rate(check)
    norm_rate = rate(normalize)
    print(f"input checks/s, short business texts: {short_rate:,.0f} (normalisation alone {norm_rate:,.0f}/s)")

    helpers: dict[str, float] = {}
    if core.scoring_paths == "fold native, rule scan native, classifier native":
        plain = SafetyCore(
            PolicyStore(default_packs_dir(), default_policies_dir(), native_scan=False),
            SafetyMetrics(CollectorRegistry()),
            classifier=SafetyClassifier.load(use_native=False),
            holdback_chars=args.holdback_chars,
            audit=None,
        )
        plain.warm_up()
        for _ in range(2):  # alternate, keep the better of two
            for name, subject, native in (("with", core, True), ("without", plain, False)):
                use_native_fold(native)
                subject_check = functools.partial(subject.check_input, "bench", "")
                took = statistics.mean(_timed(subject_check, long_texts))
                helpers[f"{name}_long"] = min(helpers.get(f"{name}_long", math.inf), took)
                took = 1 / rate(subject_check)
                helpers[f"{name}_short"] = min(helpers.get(f"{name}_short", math.inf), took)
        use_native_fold(True)
        print(
            f"whole input check with the C helpers vs without: 1,500-2,000 chars "
            f"{helpers['without_long'] / helpers['with_long']:.2f}x, short texts "
            f"{helpers['without_short'] / helpers['with_short']:.2f}x"
        )
    else:
        print(f"helpers: {core.scoring_paths} (run scripts/build-native.sh to compare)")

    stream: dict[str, dict[str, float]] = {}
    for lang, answer in ANSWERS.items():
        tokens = _tokens(answer, lang)
        compute: list[float] = []
        moderator = core.open_output("bench", "", "bench")
        first_at = -1
        for i, token in enumerate(tokens):
            start = time.perf_counter()
            released = moderator.feed(token)
            compute.append(time.perf_counter() - start)
            if released and first_at < 0:
                first_at = i
        moderator.finish()
        waited = first_at if first_at >= 0 else len(tokens)
        stream[lang] = {
            "first_release_after_tokens": waited,
            "first_token_delay_ms_at_model_rate": round(waited / args.tokens_per_second * 1e3, 1),
            "moderation_compute_per_delta_ms_p99": round(_pct(compute, 0.99) * 1e3, 4),
        }
        print(
            f"streaming {lang}: first text released after {waited} more tokens "
            f"(~{stream[lang]['first_token_delay_ms_at_model_rate']} ms at {args.tokens_per_second:g} tok/s); "
            f"moderation compute p99 {stream[lang]['moderation_compute_per_delta_ms_p99']} ms per delta"
        )
    result = {
        "input_p50_ms_2000_chars": round(_pct(long_lat, 0.5) * 1e3, 4),
        "input_p99_ms_2000_chars": round(_pct(long_lat, 0.99) * 1e3, 4),
        "input_mean_ms_2000_chars": round(statistics.mean(long_lat) * 1e3, 4),
        "checks_per_second_short": round(short_rate, 1),
        "normalize_only_per_second_short": round(norm_rate, 1),
        "holdback_chars": args.holdback_chars,
        "stream": stream,
        "classifier_native_speedup_2000_chars": round(paths["numpy"] / paths["native"], 2) if paths else None,
        "check_native_speedup_2000_chars": (
            round(helpers["without_long"] / helpers["with_long"], 2) if helpers else None
        ),
        "check_native_speedup_short": round(helpers["without_short"] / helpers["with_short"], 2)
        if helpers
        else None,
        "targets_met_on_bench_texts": _pct(long_lat, 0.99) <= 0.002 and short_rate >= 5000,
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
