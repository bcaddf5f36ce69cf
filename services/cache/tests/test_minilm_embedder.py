"""The numpy MiniLM embedder behaves like all-MiniLM-L6-v2 under sentence-transformers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from aigc_cache.adapters.minilm_embedder import MiniLmEmbedder, default_model_dir
from aigc_common.errors import ConfigError

RETURN = "How do I return an item I bought?"
RETURN_PARAPHRASE = "What is the process for returning a purchase?"


def cosine(embedder: MiniLmEmbedder, a: str, b: str) -> float:
    va, vb = embedder.embed([a, b])
    return float(va @ vb)


def test_matches_the_published_sentence_transformers_figures(embedder: MiniLmEmbedder) -> None:
    # The similarity matrix the sentence-transformers README prints for this model:
    # [[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]].
    vectors = embedder.embed(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    sims = vectors @ vectors.T
    expected = np.array([[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]])
    np.testing.assert_allclose(sims, expected, atol=6e-4)


def test_paraphrases_are_close_and_unrelated_questions_are_not(embedder: MiniLmEmbedder) -> None:
    assert cosine(embedder, RETURN, RETURN_PARAPHRASE) > 0.7
    assert cosine(embedder, "How can I reset my password?", "I forgot my password, how do I change it?") > 0.7
    assert cosine(embedder, RETURN, "What is the capital of France?") < 0.4
    assert cosine(embedder, RETURN, "How do I reset my password?") < 0.4


def test_vectors_are_unit_length_float32_and_deterministic(embedder: MiniLmEmbedder) -> None:
    first = embedder.embed([RETURN])
    assert first.shape == (1, embedder.dimension) == (1, 384)
    assert first.dtype == np.float32
    assert abs(float(np.linalg.norm(first[0])) - 1.0) < 1e-5
    np.testing.assert_array_equal(first, embedder.embed([RETURN]))


def test_a_batch_equals_one_by_one(embedder: MiniLmEmbedder) -> None:
    # More texts than one batch (32) and of very different lengths: padding and regrouping must
    # not change any vector, and the output keeps the input order.
    texts = [f"Question {i}: " + "how do I return the shoes I bought last week " * (i % 7) for i in range(40)]
    texts += ["", "长城有多长？"]
    batched = embedder.embed(texts)
    single = np.vstack([embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_input_is_truncated_at_256_tokens(embedder: MiniLmEmbedder) -> None:
    long = "shipping " * 300
    np.testing.assert_array_equal(
        embedder.embed([long]), embedder.embed([long + "refund policy for electronics"])
    )
    assert cosine(embedder, "shipping " * 10, "shipping " * 10 + "refund policy for electronics") < 0.99


def test_no_texts_is_an_empty_matrix(embedder: MiniLmEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_one_short_sentence_takes_milliseconds(embedder: MiniLmEmbedder) -> None:
    # Generous bound: the machine running tests is shared; the README has real figures.
    embedder.embed([RETURN])
    started = time.perf_counter()
    for _ in range(5):
        embedder.embed([RETURN])
    assert (time.perf_counter() - started) / 5 < 0.25


def test_the_name_identifies_the_weights(embedder: MiniLmEmbedder) -> None:
    assert embedder.name.startswith("minilm-")
    assert MiniLmEmbedder(default_model_dir()).name == embedder.name


def test_a_directory_without_the_model_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        MiniLmEmbedder(tmp_path)
    assert "model.safetensors" in str(err.value)
    assert "AIGC_CACHE_SEMANTIC_MODEL_PATH" in str(err.value)
