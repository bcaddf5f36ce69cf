"""Retrieval settings: documented fields and clear errors on bad values."""

from __future__ import annotations

import pytest

from aigc_common.errors import ConfigError
from aigc_common.settings import load_settings
from aigc_retrieval.settings import RetrievalSettings


def test_overlap_must_be_below_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGC_RETRIEVAL_CHUNK_CHARS", "100")
    monkeypatch.setenv("AIGC_RETRIEVAL_CHUNK_OVERLAP", "100")
    with pytest.raises(ConfigError, match="AIGC_RETRIEVAL_CHUNK_OVERLAP"):
        load_settings(RetrievalSettings)


def test_environment_overrides_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGC_RETRIEVAL_DEFAULT_TOP_K", "3")
    assert load_settings(RetrievalSettings).default_top_k == 3
