"""Settings of the safety service (env prefix ``AIGC_SAFETY_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import SettingsConfigDict

from aigc_common.kafka import Topics
from aigc_common.settings import KafkaSettings, ServiceSettings
from aigc_safety.policy import default_packs_dir, default_policies_dir


class AuditSettings(BaseModel):
    """Where audit records of non-allow verdicts go."""

    sink: Literal["log", "kafka"] = Field(
        "log",
        description="kafka publishes SafetyAudited events on the audit topic; log writes one line each.",
    )
    topic: str = Field(Topics.safety_audit, description="Kafka topic of audit records.")


class SafetySettings(ServiceSettings):
    """The safety service: packs and policies, the classifier, the streaming window, audit."""

    model_config = SettingsConfigDict(env_prefix="AIGC_SAFETY_", env_nested_delimiter="__", extra="ignore")

    packs_dir: Path = Field(
        default_factory=default_packs_dir,
        description="Folder of rule pack files (<name>.yaml); unset means the packs shipped in the package.",
    )
    policies_dir: Path = Field(
        default_factory=default_policies_dir,
        description="Folder of policy files (<name>.yaml); unset means the policies shipped in the package.",
    )
    default_policy: str = Field("default", description="Policy for tenants without one of their own.")
    tenant_policies: dict[str, str] = Field(
        default_factory=dict, description="Tenant id to policy name (JSON in the environment)."
    )
    reload_interval_seconds: float = Field(
        2.0, ge=0, description="How often pack and policy files are re-read for hot reload; 0 turns it off."
    )
    facts_cache: Path | None = Field(
        default_factory=lambda: Path.home() / ".cache" / "aigc" / "safety-pattern-facts.json",
        description="File where the analysis of each rule pattern (trigger words, widths) is kept between "
        "loads, so a start-up parses only new patterns (about half the policy load); unset (empty) works "
        "everything out each time. Keyed by pattern, analysis code and Python version; unwritable is only "
        "logged.",
    )

    @field_validator("facts_cache", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    gc_freeze: bool = Field(
        True,
        description="After start-up and after each applied reload, exempt the loaded objects from the "
        "garbage collector's full passes (gc.freeze); without it a pack reload stalls checks for "
        "100-250 ms at a time. Process-wide: it also covers what other services in the process loaded.",
    )
    classifier_path: Path | None = Field(
        None, description="Classifier artifact; unset means the one shipped in the package."
    )
    classifier_enabled: bool = Field(
        True, description="Load the classifier at all (policies may still turn it off)."
    )
    classifier_native: bool = Field(
        True,
        description="Score with the compiled feature pass when scripts/build-native.sh has built it "
        "(same scores as numpy, about 5x faster on long texts); false scores with numpy.",
    )
    scanner_native: bool = Field(
        True,
        description="Run the rule scan's automaton pass compiled when scripts/build-native.sh has "
        "built it (same hits as Python, about 2x faster); false scans in Python.",
    )
    fold_native: bool = Field(
        True,
        description="Normalise text that is not pure ASCII with the compiled fold when "
        "scripts/build-native.sh has built it (same text and index map); false uses numpy and "
        "str.translate. Applies to the whole process.",
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
    audit: AuditSettings = Field(default_factory=AuditSettings, description="Audit records.")
    kafka: KafkaSettings = Field(
        default_factory=KafkaSettings, description="Kafka, when audit.sink is kafka."
    )
