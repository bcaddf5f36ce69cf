"""Every settings field is documented, and bad configuration says what to change."""

from __future__ import annotations

import importlib

import pytest
from pydantic import BaseModel

from aigc_common.errors import ConfigError
from aigc_common.settings import load_settings

SETTINGS = [
    ("aigc_gateway.settings", "GatewaySettings"),
    ("aigc_prompt.settings", "PromptSettings"),
    ("aigc_retrieval.settings", "RetrievalSettings"),
    ("aigc_inference.settings", "InferenceSettings"),
    ("aigc_safety.settings", "SafetySettings"),
    ("aigc_cache.settings", "CacheSettings"),
]


def _undocumented(model: type[BaseModel], path: str = "") -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        if not (field.description or "").strip():
            missing.append(path + name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            missing += _undocumented(annotation, f"{path}{name}.")
    return missing


@pytest.mark.parametrize(("module", "name"), SETTINGS)
def test_every_settings_field_has_a_description(module: str, name: str) -> None:
    model = getattr(importlib.import_module(module), name)
    assert _undocumented(model) == []


def test_bad_value_names_the_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from aigc_inference.settings import InferenceSettings

    monkeypatch.setenv("AIGC_INFERENCE_GRPC__PORT", "not-a-port")
    monkeypatch.setenv("AIGC_INFERENCE_CONTEXTS", "0")
    with pytest.raises(ConfigError) as err:
        load_settings(InferenceSettings)
    message = str(err.value)
    assert "AIGC_INFERENCE_GRPC__PORT" in message
    assert "AIGC_INFERENCE_CONTEXTS" in message


def test_env_prefix_and_nested_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from aigc_gateway.settings import GatewaySettings

    monkeypatch.setenv("AIGC_GATEWAY_GRPC__PORT", "50999")
    monkeypatch.setenv("AIGC_GATEWAY_INFERENCE__MODE", "inprocess")
    settings = load_settings(GatewaySettings)
    assert settings.grpc.port == 50999
    assert settings.inference.mode == "inprocess"


@pytest.mark.parametrize("service", ["gateway", "prompt", "retrieval", "inference", "safety", "cache"])
def test_service_readme_settings_table_is_current(service: str) -> None:
    from pathlib import Path

    from aigc_common.settings_doc import BEGIN, SERVICE_SETTINGS, _load, render_readme

    readme = Path(__file__).resolve().parents[2] / service / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert BEGIN in text, f"{readme} has no generated settings table"
    assert render_readme(text, _load(SERVICE_SETTINGS[service])) == text, (
        f"{readme} is stale: run `python -m aigc_common.settings_doc`"
    )
