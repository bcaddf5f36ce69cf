"""Settings of the safety service (env prefix ``AIGC_SAFETY_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aigc_common.settings import ServiceSettings


class SafetySettings(ServiceSettings):
    """The safety service: which rule pack is the policy, and the streaming hold-back window."""

    model_config = SettingsConfigDict(env_prefix="AIGC_SAFETY_", env_nested_delimiter="__", extra="ignore")

    rule_pack: Path | None = Field(
        None,
        description="YAML rule pack to load; unset means packs/default.yaml shipped in the package. "
        "Its name is the policy name callers pass.",
    )
    holdback_chars: int = Field(
        16,
        ge=0,
        le=4096,
        description="Characters of a streaming answer held back until the text after them is checked. "
        "At least the longest blocked phrase, so no part of one is released; more delays the first token.",
    )
    max_text_chars: int = Field(
        100_000, ge=1, description="Longest text CheckInput and Redact accept; longer is INVALID_ARGUMENT."
    )
