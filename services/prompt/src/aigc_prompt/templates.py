"""Template files: ``prompt_templates/<id>/v<N>.yaml`` (immutable versions) and ``labels.yaml``.

Loading validates every file and fails with the file and the field at fault, so a broken
template is caught before it serves anyone.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aigc_common.errors import ConfigError

log = logging.getLogger(__name__)

_VERSION_FILE = re.compile(r"^v(\d+)\.ya?ml$")


class VariableSpec(BaseModel):
    """A typed template variable."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field("string", pattern="^(string|integer|number|boolean|enum)$")
    required: bool = False
    max_length: int = Field(4000, ge=1)
    allowed_values: list[str] = Field(default_factory=list)
    default: str | None = None
    description: str = ""


class MessageSpec(BaseModel):
    """One message of the template, its content a sandboxed Jinja2 template."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern="^(system|user|assistant)$")
    content: str


class Parameters(BaseModel):
    """Model parameters the template asks for."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(256, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: list[str] = Field(default_factory=list)


class StrategySpec(BaseModel):
    """The template's chain-of-thought / few-shot strategy and its settings."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "none",
        pattern="^(none|zero_shot_cot|few_shot|few_shot_cot|self_consistency)$",
        description="Strategy.",
    )
    selection: str = Field(
        "fixed", pattern="^(fixed|random|similar)$", description="How exemplars are picked."
    )
    k: int = Field(3, ge=1, le=32, description="Exemplars to include.")
    token_budget: int = Field(1024, ge=1, description="Most tokens exemplars may take.")
    samples: int = Field(1, ge=1, le=16, description="Samples to vote over (self-consistency).")


class CacheSpec(BaseModel):
    """How answers of this template may be reused."""

    model_config = ConfigDict(extra="forbid")

    semantic_threshold: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Cosine similarity for a semantic hit on the caller's input; 0 = exact only.",
    )
    sampled: bool = Field(False, description="Cache answers sampled with temperature > 0 too.")


class ExampleSpec(BaseModel):
    """One few-shot exemplar shipped with the template."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    reasoning: str = ""


class TemplateFile(BaseModel):
    """The schema of one template version file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    version: int = Field(ge=1)
    description: str = ""
    tenants: list[str] = Field(default_factory=list)
    model: str = ""
    language: str = Field("zh", pattern="^(zh|en)$")
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    examples: list[ExampleSpec] = Field(default_factory=list)
    output_schema: dict[str, Any] | None = None
    show_reasoning: bool = False
    cache: CacheSpec = Field(default_factory=CacheSpec)
    safety_policy: str = ""
    knowledge_base: str = ""
    parameters: Parameters = Field(default_factory=Parameters)
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    messages: list[MessageSpec] = Field(min_length=1)

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_shorthand(cls, value: object) -> object:
        # `strategy: zero_shot_cot` is shorthand for `strategy: {name: zero_shot_cot}`.
        return {"name": value} if isinstance(value, str) else value

    @field_validator("variables")
    @classmethod
    def _names(cls, value: dict[str, VariableSpec]) -> dict[str, VariableSpec]:
        for name in value:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"variable name {name!r} must be lower_snake_case")
        return value


@dataclass(frozen=True)
class TemplateVersion:
    """One immutable, validated version with the hash of its file."""

    spec: TemplateFile
    content_hash: str
    path: Path


@dataclass(frozen=True)
class TenantExamples:
    """Exemplars a tenant keeps for a template (``examples/<tenant>.jsonl``), with their hash so
    the bundle id changes when they do."""

    examples: tuple[ExampleSpec, ...]
    content_hash: str


@dataclass
class TemplateEntry:
    """All versions of a template, its labels and the tenants' example stores."""

    template_id: str
    versions: dict[int, TemplateVersion] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    tenant_examples: dict[str, TenantExamples] = field(default_factory=dict)

    @property
    def latest(self) -> int:
        return max(self.versions)


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {exc}") from None


def load_examples_file(path: Path) -> TenantExamples:
    """One tenant's example store: JSON lines of ``{"input", "output", "reasoning"?}``."""
    raw = path.read_bytes()
    examples = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(ExampleSpec.model_validate_json(line))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "line"
            raise ConfigError(f"{path} line {number}: field {loc}: {err['msg']}") from None
    return TenantExamples(tuple(examples), hashlib.sha256(raw).hexdigest())


def load_template_folder(folder: Path) -> TemplateEntry | None:
    """Loads and validates one template folder; None when it holds no version file."""
    entry = TemplateEntry(folder.name)
    for path in sorted(folder.iterdir()):
        match = _VERSION_FILE.match(path.name)
        if not match:
            continue
        raw = path.read_bytes()
        try:
            spec = TemplateFile.model_validate(_load_yaml(path))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{path}: field {loc}: {err['msg']}") from None
        if spec.id != folder.name or spec.version != int(match.group(1)):
            raise ConfigError(
                f"{path}: id/version must match the folder and file name ({folder.name}, v{match.group(1)})"
            )
        entry.versions[spec.version] = TemplateVersion(spec, hashlib.sha256(raw).hexdigest(), path)
    if not entry.versions:
        return None
    labels_path = folder / "labels.yaml"
    labels = _load_yaml(labels_path) if labels_path.exists() else {"production": entry.latest}
    if not isinstance(labels, dict):
        raise ConfigError(f"{labels_path}: must map label names to version numbers")
    for label, version in labels.items():
        if version not in entry.versions:
            raise ConfigError(f"{labels_path}: label {label!r} points at missing version {version}")
        entry.labels[str(label)] = int(version)
    examples_dir = folder / "examples"
    if examples_dir.is_dir():
        for path in sorted(examples_dir.glob("*.jsonl")):
            entry.tenant_examples[path.stem] = load_examples_file(path)
    return entry


def load_template_dir(root: Path) -> dict[str, TemplateEntry]:
    """Loads and validates every template under ``root``; the first broken file raises."""
    if not root.is_dir():
        raise ConfigError(f"template folder {root} does not exist; set the templates_dir setting")
    entries: dict[str, TemplateEntry] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        entry = load_template_folder(folder)
        if entry is not None:
            entries[entry.template_id] = entry
    return entries


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    files = [p for p in folder.iterdir() if p.is_file()]
    if (folder / "examples").is_dir():
        files += [p for p in (folder / "examples").iterdir() if p.is_file()]
    return tuple(sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns, p.stat().st_size) for p in files))


class TemplateStore:
    """Templates with hot reload. A new or changed folder is picked up by ``reload``; a broken file,
    or an edit to an existing (immutable) version, never replaces the good templates: the error is
    kept in ``errors`` and logged, and the last good versions keep serving."""

    def __init__(self, root: Path) -> None:
        # Start-up is strict: a broken template stops the service with the file and field.
        self._root = root
        self._entries = load_template_dir(root)
        self._prints = {p.name: _fingerprint(p) for p in root.iterdir() if p.is_dir()}
        self.errors: dict[str, str] = {}

    @property
    def entries(self) -> dict[str, TemplateEntry]:
        return self._entries

    def reload(self) -> list[str]:
        """Re-reads folders whose files changed; returns the template ids that changed."""
        changed: list[str] = []
        entries = dict(self._entries)
        folders = {p.name: p for p in self._root.iterdir() if p.is_dir()} if self._root.is_dir() else {}
        for name in sorted(set(self._prints) - set(folders)):
            # A deleted folder is a deliberate removal.
            self._prints.pop(name)
            if entries.pop(name, None) is not None:
                changed.append(name)
        for name, folder in sorted(folders.items()):
            try:
                fingerprint = _fingerprint(folder)
            except OSError:
                continue  # removed while scanning; the next pass sees it
            if self._prints.get(name) == fingerprint:
                continue
            self._prints[name] = fingerprint
            try:
                fresh = load_template_folder(folder)
                old = entries.get(name)
                if fresh is not None and old is not None:
                    for version, tv in old.versions.items():
                        now = fresh.versions.get(version)
                        if now is None or now.content_hash != tv.content_hash:
                            raise ConfigError(
                                f"{tv.path}: version {version} changed or vanished; versions are immutable, "
                                f"add v{fresh.latest + 1} instead"
                            )
            except (ConfigError, OSError) as exc:
                self.errors[name] = str(exc)
                log.warning(
                    "template reload refused", extra={"fields": {"template": name, "error": str(exc)}}
                )
                continue
            self.errors.pop(name, None)
            if fresh is None:
                entries.pop(name, None)
            else:
                entries[name] = fresh
            changed.append(name)
        # Swap the whole mapping at once: readers never see a half-reloaded set.
        self._entries = entries
        return changed
