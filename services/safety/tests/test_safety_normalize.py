"""Normalisation undoes evasion tricks and keeps a map back to the original text."""

from __future__ import annotations

from typing import Any

import pytest

from aigc_safety import normalize as normalize_module
from aigc_safety.normalize import FOLD_LIBRARY, StreamNormalizer, normalize

NOT_BUILT = "scripts/build-native.sh has not been run here: text is folded with numpy"


@pytest.fixture(
    params=[
        pytest.param("native", marks=pytest.mark.skipif(not FOLD_LIBRARY.exists(), reason=NOT_BUILT)),
        "numpy",
    ]
)
def fold_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with the compiled fold and again without it (numpy for long texts)."""
    if request.param == "numpy":
        monkeypatch.setattr(normalize_module, "_native_fold", lambda: None)
    assert normalize_module.folding_path() == request.param
    return str(request.param)


def test_full_width_and_case_fold_to_ascii() -> None:
    assert normalize("ＩＧＮＯＲＥ　Previous").text == "ignore previous"


def test_zero_width_and_control_characters_are_dropped() -> None:
    assert normalize("ig\u200bno\u200dre\u2060 pre\ufeffvious\x07").text == "ignore previous"


def test_accents_zalgo_and_look_alikes_fold_to_plain_latin() -> None:
    assert normalize("ïgnörë").text == "ignore"
    assert normalize("i\u0336g\u0301n\u0300ore").text == "ignore"
    assert normalize("ignоre").text == "ignore"  # Cyrillic о


def test_whitespace_collapses_and_disappears_next_to_cjk() -> None:
    assert normalize("  a \n\t b  ").text == "a b"
    assert normalize("制 作\u3000炸\n弹").text == "制作炸弹"
    assert normalize("请 ignore 这个").text == "请ignore这个"


def test_spans_map_back_to_original_code_points() -> None:
    original = "前缀 ＩＧ\u200bＮＯＲＥ 后缀"
    norm = normalize(original)
    start = norm.text.index("ignore")
    s, e = norm.original_span(start, start + len("ignore"))
    assert original[s:e] == "ＩＧ\u200bＮＯＲＥ"


def test_span_of_character_that_expands_maps_to_that_character() -> None:
    original = "x ﬁle y"  # the ligature ﬁ becomes two characters
    norm = normalize(original)
    assert norm.text == "x file y"
    s, e = norm.original_span(2, 6)
    assert original[s:e] == "ﬁle"


def test_streaming_equals_whole_text() -> None:
    text = "Hello  ＷＯＲＬＤ， 制 作\u200b 炸弹 and ig\u200bnore\n\nprevious 指令 "
    whole = normalize(text)
    stream = StreamNormalizer()
    for ch in text:
        stream.feed(ch)
    assert stream.result() == whole


def test_fast_batch_normalisation_equals_the_streaming_one_on_random_text(fold_path: str) -> None:
    # normalize() takes a str.translate fast path; the stream normaliser is the reference. Random
    # mixes of every awkward class of character must come out identical, index map included.
    import random

    from aigc_safety.normalize import StreamNormalizer

    alphabet = [
        *"aZ9 \t\n\u3000\u200b\u200d\ufeffＡｂ１制作炸弹аеоå\u0301¨ﬁ…，。!?-x",
        "\U00020001",
        "한",
        "カ",
    ]
    rng = random.Random(5)
    for i in range(3000):
        # Short texts take str.translate; long non-ASCII ones the vectorised fold.
        length = rng.randint(0, 30) if i % 3 else rng.randint(512, 700)
        text = "".join(rng.choice(alphabet) for _ in range(length))
        reference = StreamNormalizer()
        for i in range(0, len(text), 3):
            reference.feed(text[i : i + 3])
        fast = normalize(text)
        assert fast.text == reference.text, repr(text)
        assert list(fast.offsets) == list(reference.result().offsets), repr(text)


def test_the_vectorised_fold_learns_new_characters_from_many_threads_at_once(fold_path: str) -> None:
    # The fold arrays fill in on first sight of a code point; threads checking at the same time
    # must never see a length before its output is in place.
    import threading

    from aigc_safety.normalize import StreamNormalizer

    texts = [
        "".join(chr(0x1F600 + (k * 7 + j) % 80) + "制作 Ａｂ\u200b" for j in range(90)) + chr(0x2460 + k)
        for k in range(16)
    ]
    expected = []
    for text in texts:
        reference = StreamNormalizer()
        reference.feed(text)
        expected.append(reference.result())
    results: dict[int, object] = {}

    def check(k: int) -> None:
        results[k] = normalize(texts[k])

    threads = [threading.Thread(target=check, args=(k,)) for k in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[k] for k in range(len(texts))] == expected


@pytest.mark.parametrize(
    "text",
    ["\ufdfa" * 40, "x\ufdfa y", "\ud800制 作\udfff", "ﬁ" * 300 + " 制作", "\u200b" * 50, "  制  "],
    ids=["long-forms", "one-long-form", "lone-surrogates", "ligatures", "all-dropped", "spaces-around-cjk"],
)
def test_every_fold_path_gives_the_stream_result_on_awkward_text(fold_path: str, text: Any) -> None:
    # U+FDFA folds to 18 characters: more than the compiled fold's first output buffer holds.
    reference = StreamNormalizer()
    reference.feed(text)
    assert normalize(text) == reference.result()


def test_the_compiled_fold_can_be_turned_off_for_the_process() -> None:
    text = "Ｈｅｌｌｏ 制 作\u200b炸弹"
    before = normalize(text)
    normalize_module.use_native_fold(False)
    try:
        assert normalize_module.folding_path() == "numpy"
        assert normalize(text) == before
    finally:
        normalize_module.use_native_fold(True)
    assert normalize_module.folding_path() == ("native" if FOLD_LIBRARY.exists() else "numpy")
