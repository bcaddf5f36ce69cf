"""Safety settings: documented fields, env prefix, and clear errors on bad values."""

from __future__ import annotations

import pytest

from aigc_common.errors import ConfigError
from aigc_common.runtime import ProcessRuntime
from aigc_common.settings import load_settings
from aigc_safety.app import build_core
from aigc_safety.settings import SafetySettings


def test_environment_overrides_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGC_SAFETY_HOLDBACK_CHARS", "32")
    monkeypatch.setenv("AIGC_SAFETY_GRPC__PORT", "50999")
    settings = load_settings(SafetySettings)
    assert settings.holdback_chars == 32
    assert settings.grpc.port == 50999


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGC_SAFETY_HOLDBACK_CHARS", "-1")
    with pytest.raises(ConfigError, match="AIGC_SAFETY_HOLDBACK_CHARS"):
        load_settings(SafetySettings)


def test_an_empty_facts_cache_setting_turns_the_cache_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(SafetySettings).facts_cache is not None, "on by default"
    monkeypatch.setenv("AIGC_SAFETY_FACTS_CACHE", "")
    assert load_settings(SafetySettings).facts_cache is None


async def test_build_core_loads_the_shipped_pack() -> None:
    settings = SafetySettings(gc_freeze=False)  # the test process keeps its garbage collectable
    core = await build_core(settings, ProcessRuntime("safety", settings))
    assert core.policy_version.startswith("default@")
    await core.close()
