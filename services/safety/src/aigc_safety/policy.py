"""Safety policies: which rule packs, categories, classifier threshold, PII handling and actions
apply to a tenant's text, as versioned YAML files next to the rule packs.

A policy is what a verdict names (``strict@4``): the operator's decision of what to do about each
category, separate from the packs that say what each category looks like. Packs and policies
hot-reload together as one snapshot; a broken file never replaces the good snapshot.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aigc_common.config_files import read_yaml_model
from aigc_common.errors import ConfigError
from aigc_safety.pii import PII_DETECTORS
from aigc_safety.rules import PackScanner, RulePack, load_pack, load_pattern_facts, save_pattern_facts
from aigc_safety.types import CATEGORIES, Action, Stage

log = logging.getLogger(__name__)

# Actions a policy may give a category; "allow" turns the category off.
CategoryAction = Literal["allow", "redact", "review", "block"]


class ClassifierSpec(BaseModel):
    """How the trained classifier takes part in input checks."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run the classifier on inputs.")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="Unsafe score at or above which it fires; unset = the model's own."
    )
    action: Literal["review", "block"] = Field(
        "block", description="Action when it fires, unless the category says otherwise."
    )


class PiiSpec(BaseModel):
    """Which personal data is found and what happens to it."""

    model_config = ConfigDict(extra="forbid")

    types: list[str] = Field(default_factory=list, description="Detector names (see ListRules).")
    mode: Literal["placeholder", "mask", "off"] = Field(
        "placeholder",
        description="placeholder: [CN_MOBILE_1], restorable in the answer; mask: 138****8000; off: detect only.",
    )
    restore: bool = Field(False, description="Put the original values back into the answer for the caller.")

    @field_validator("types")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in PII_DETECTORS]
        if unknown:
            raise ValueError(f"unknown PII detector {unknown[0]!r}; known: {sorted(PII_DETECTORS)}")
        return value


class QuotedSpec(BaseModel):
    """Tasks about quoted text ("is this comment abusive: “……”", "translate this complaint: "……""):
    hits of these categories wholly inside the quotes get ``action`` instead of the category's
    own, and so does the classifier when the quotes alone score in one of these categories and the
    words around them do not flag. A request for more of the quoted text is not such a task."""

    model_config = ConfigDict(extra="forbid")

    categories: list[str] = Field(
        default_factory=list, description="Categories treated this way; empty turns it off."
    )
    action: Literal["allow", "review"] = Field(
        "review", description="What such a hit does; allow lets the task through with its hits listed."
    )


class PolicySpec(BaseModel):
    """The schema of one policy file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    version: int = Field(ge=1)
    description: str = ""
    packs: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    categories: dict[str, CategoryAction] = Field(
        default_factory=dict, description="Category to action, overriding the rules' own; allow turns it off."
    )
    classifier: ClassifierSpec = Field(default_factory=ClassifierSpec)
    pii: PiiSpec = Field(default_factory=PiiSpec)
    quoted: QuotedSpec = Field(default_factory=QuotedSpec)
    reasoning_policy: str = Field(
        "", description="Policy that checks hidden chain-of-thought text; empty means this one."
    )
    holdback_chars: int | None = Field(
        None, ge=0, le=4096, description="Streaming hold-back window; unset means the service setting."
    )


@dataclass(frozen=True)
class Policy:
    """A loaded policy with its packs resolved."""

    spec: PolicySpec
    packs: tuple[RulePack, ...]
    # Every rule of every pack, per stage, in one automaton (shared by policies with the same packs).
    scanners: dict[Stage, PackScanner] = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @functools.cached_property
    def version(self) -> str:
        """What verdicts carry: ``name@version+pack@version...``, so a pack change is a new version."""
        packs = "+".join(p.policy_version for p in self.packs)
        return f"{self.spec.name}@{self.spec.version}+{packs}"

    def scanner(self, stage: Stage) -> PackScanner:
        """Every rule of every pack of the policy for one stage, in one automaton: a text is
        scanned once however many packs the policy names (compiled when the policy is loaded)."""
        return self.scanners[stage]

    def action_for(self, category: str, default: Action) -> Action | None:
        """The action for a hit of ``category``; None when the policy turns the category off."""
        chosen = self.spec.categories.get(category)
        if chosen is None:
            return default
        return None if chosen == "allow" else Action(chosen)


@dataclass(frozen=True)
class PolicySet:
    """Every loaded pack and policy: one immutable snapshot, swapped whole on reload."""

    packs: dict[str, RulePack]
    policies: dict[str, Policy]
    # For the next reload: each pack file's SHA-256, and the scanners per list of pack names.
    pack_digests: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    scanners: dict[tuple[str, ...], dict[Stage, PackScanner]] = field(
        default_factory=dict, compare=False, repr=False
    )


_YAML = re.compile(r"^[a-z0-9][a-z0-9_-]*\.ya?ml$")


def default_policies_dir() -> Path:
    """The policies shipped inside this package."""
    return Path(__file__).resolve().parent / "policies"


def default_packs_dir() -> Path:
    """The rule packs shipped inside this package."""
    return Path(__file__).resolve().parent / "packs"


def load_policy_file(path: Path) -> PolicySpec:
    """Reads and validates one policy file; problems raise ConfigError naming file, line or field."""
    spec = read_yaml_model(path, PolicySpec, "policy")
    if spec.name != path.stem:
        raise ConfigError(f"policy {path}: name {spec.name!r} must match the file name {path.stem!r}")
    return spec


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _YAML.match(p.name))


def build_policy_set(
    packs_dir: Path, policies_dir: Path, *, native_scan: bool = True, previous: PolicySet | None = None
) -> PolicySet:
    """Loads every pack and policy; the first broken file raises (start-up is strict).
    ``native_scan=False`` keeps the rule scan in Python where the compiled pass is built. With a
    ``previous`` snapshot (a reload), a pack file whose bytes are unchanged is not compiled again,
    and policies over unchanged packs keep their scanners: editing a policy reloads in
    milliseconds instead of recompiling hundreds of patterns while the service is serving."""
    for folder, what in ((packs_dir, "packs_dir"), (policies_dir, "policies_dir")):
        if not folder.is_dir():
            raise ConfigError(f"{what} {folder} is not a folder; set AIGC_SAFETY_{what.upper()}")
    packs: dict[str, RulePack] = {}
    digests: dict[str, str] = {}
    for path in _yaml_files(packs_dir):
        try:
            data: bytes | None = path.read_bytes()
        except OSError:
            data = None  # load_pack reads it again and names the problem
        digest = hashlib.sha256(data).hexdigest() if data is not None else ""
        if previous is not None and digest and previous.pack_digests.get(path.stem) == digest:
            pack = previous.packs[path.stem]  # a digest is only kept for a pack that loaded
        else:
            pack = load_pack(path, data)
        if pack.name != path.stem:
            raise ConfigError(f"rule pack {path}: name {pack.name!r} must match the file name {path.stem!r}")
        packs[pack.name] = pack
        digests[pack.name] = digest
    policies = {}
    compiled: dict[tuple[str, ...], dict[Stage, PackScanner]] = {}  # pack names -> their scanners
    for path in _yaml_files(policies_dir):
        spec = load_policy_file(path)
        missing = [p for p in spec.packs if p not in packs]
        if missing:
            raise ConfigError(f"policy {path}: field packs: no rule pack named {missing[0]!r} in {packs_dir}")
        chosen = tuple(packs[p] for p in spec.packs)
        _check_categories(path, spec, chosen)
        # Compiled now, so a reload swaps in a ready policy; once per distinct list of packs.
        scanners = compiled.get(tuple(spec.packs))
        if (
            scanners is None
            and previous is not None
            and all(p.name in previous.packs and previous.packs[p.name] is p for p in chosen)
        ):
            scanners = previous.scanners.get(tuple(spec.packs))  # the same pack objects: still valid
            if scanners is not None:
                compiled[tuple(spec.packs)] = scanners
        if scanners is None:
            scanners = compiled[tuple(spec.packs)] = {
                stage: PackScanner(
                    tuple(r for pack in chosen for r in pack.rules_for(stage)), use_native=native_scan
                )
                for stage in Stage
            }
        policies[spec.name] = Policy(spec, chosen, scanners)
    for policy in policies.values():
        reasoning = policy.spec.reasoning_policy
        if reasoning and reasoning not in policies:
            raise ConfigError(
                f"policy {policies_dir / (policy.name + '.yaml')}: field reasoning_policy: no policy named {reasoning!r}"
            )
    if not policies:
        raise ConfigError(f"no policy files in {policies_dir}")
    return PolicySet(packs, policies, digests, compiled)


def _check_categories(path: Path, spec: PolicySpec, packs: tuple[RulePack, ...]) -> None:
    """A category name the policy gives that nothing can report (a typo such as ``insutl``) would
    silently do nothing: refuse it, naming the field. Known are the service's categories (the
    classifier reports those) and any a pack of the policy defines for its own rules."""
    known = set(CATEGORIES).union(r.category for pack in packs for r in pack.rules)
    for where, names in (
        ("categories", list(spec.categories)),
        ("quoted.categories", spec.quoted.categories),
    ):
        unknown = [c for c in names if c not in known]
        if unknown:
            raise ConfigError(
                f"policy {path}: field {where}: no category named {unknown[0]!r} in its packs or the "
                f"classifier; known: {sorted(known)}"
            )


def _fingerprint(*folders: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    for folder in folders:
        for p in _yaml_files(folder):
            st = p.stat()
            entries.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(entries)


class PolicyStore:
    """Packs and policies with hot reload: ``reload`` re-reads the folders when a file changed and
    swaps in the new snapshot only if every file is valid; otherwise the error is kept in
    ``snapshot.errors`` and logged, and the last good snapshot keeps serving."""

    def __init__(
        self,
        packs_dir: Path,
        policies_dir: Path,
        *,
        native_scan: bool = True,
        facts_cache: Path | None = None,
    ) -> None:
        """``facts_cache``: a file where the analysis of each pattern is kept between loads
        (:func:`aigc_safety.rules.load_pattern_facts`); None works everything out each time."""
        self._packs_dir = packs_dir
        self._policies_dir = policies_dir
        self._native_scan = native_scan
        self._facts_cache = facts_cache
        if facts_cache is not None:
            load_pattern_facts(facts_cache)
        self._snapshot = build_policy_set(packs_dir, policies_dir, native_scan=native_scan)
        self._save_facts()
        self._print = _fingerprint(packs_dir, policies_dir)
        self.last_error = ""
        self.refusals = 0  # reloads refused since start

    @property
    def snapshot(self) -> PolicySet:
        return self._snapshot

    def _save_facts(self) -> None:
        if self._facts_cache is not None:
            save_pattern_facts(self._facts_cache, tuple(self._snapshot.packs.values()))

    @property
    def scanning_path(self) -> str:
        """``native`` when every policy's rule scan runs the compiled pass, else ``python``."""
        scanners = [s for p in self._snapshot.policies.values() for s in p.scanners.values()]
        return "native" if all(s.scanning_path == "native" for s in scanners) else "python"

    def reload(self, prepare: Callable[[PolicySet], object] | None = None) -> bool:
        """Returns True when a new snapshot was swapped in. ``prepare`` runs on the new snapshot
        before the swap (the service warms its scanners there, so the first requests after a
        reload do not pay for it); if it raises, the reload is refused like a broken file."""
        try:
            fingerprint = _fingerprint(self._packs_dir, self._policies_dir)
        except OSError:
            return False  # a file vanished mid-scan; the next pass sees the settled folder
        if fingerprint == self._print:
            return False
        self._print = fingerprint
        try:
            fresh = build_policy_set(
                self._packs_dir, self._policies_dir, native_scan=self._native_scan, previous=self._snapshot
            )
            if prepare is not None:
                prepare(fresh)
        except Exception as exc:  # a file that loads but cannot scan must not replace a good one
            self.last_error = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            self.refusals += 1
            log.warning("safety policy reload refused", extra={"fields": {"error": self.last_error}})
            return False
        self.last_error = ""
        self._snapshot = fresh
        self._save_facts()
        log.info(
            "safety policies reloaded",
            extra={"fields": {"policies": sorted(p.version for p in fresh.policies.values())}},
        )
        return True
