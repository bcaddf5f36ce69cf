"""Chunking and tokenisation."""

from __future__ import annotations

import itertools

import pytest

from aigc_retrieval.text import chunk_text, tokenize


def test_latin_words_are_lower_case_and_cjk_runs_become_bigrams() -> None:
    assert tokenize("Return POLICY, v2!") == ["return", "policy", "v2"]
    assert tokenize("退货政策") == ["退货", "货政", "政策"]
    assert tokenize("iPhone15的退货") == ["iphone15", "的退", "退货"]
    assert tokenize("猫") == ["猫"]
    assert tokenize("ＡＢＣ　１２３") == ["abc", "123"]  # full width folded


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("  One paragraph.  \n", 400, 80) == ["One paragraph."]


def test_chunks_respect_the_limit_end_at_sentences_and_overlap() -> None:
    sentences = [f"Sentence number {i} says something useful." for i in range(40)]
    text = " ".join(sentences)
    chunks = chunk_text(text, 200, 50)
    assert len(chunks) > 5
    assert all(len(c) <= 200 for c in chunks)
    assert all(c.endswith(".") for c in chunks)
    # Consecutive chunks share text, so a fact at a boundary is whole in one of them.
    for before, after in itertools.pairwise(chunks):
        assert after.split(".")[0] in before
    # Nothing is lost.
    for sentence in sentences:
        assert any(sentence in c for c in chunks)


def test_paragraphs_and_chinese_sentences_split_cleanly() -> None:
    text = "第一段。很短。\n\n" + "这是第二段的一句话。" * 30
    chunks = chunk_text(text, 100, 20)
    assert chunks[0].startswith("第一段。很短。")
    assert all(len(c) <= 100 for c in chunks)
    assert all(c.endswith("。") for c in chunks)


def test_a_sentence_longer_than_a_chunk_is_cut_hard_with_overlap() -> None:
    text = "字" * 1000
    chunks = chunk_text(text, 300, 60)
    assert all(len(c) <= 300 for c in chunks)
    assert sum(len(c) for c in chunks) >= 1000


def test_overlap_must_be_below_the_chunk_size() -> None:
    with pytest.raises(ValueError):
        chunk_text("x", 100, 100)
