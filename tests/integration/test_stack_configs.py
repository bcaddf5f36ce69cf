"""The local stack's Prometheus configuration is valid for the real promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_prometheus_config_passes_promtool(prometheus_url: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the Debian prometheus package the stack installs"
    result = subprocess.run(
        [
            promtool,
            "check",
            "config",
            "--syntax-only",
            str(ROOT / "deploy" / "prometheus" / "prometheus.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
