"""Prompt product logic: resolve a template version, validate variables, render in a
sandbox, compute the bundle id, move labels, estimate cost. No gRPC here."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aigc_common.errors import InvalidArgument, NotFound, PermissionDenied
from aigc_common.pricing import Price
from aigc_common.types import ChatMessage, Role, SamplingParams
from aigc_prompt.labels import LabelLog, LabelMove
from aigc_prompt.strategies import Example, ExamplePool, StrategyConfigError, StrategyContext, build_strategy
from aigc_prompt.templates import TemplateEntry, TemplateStore, TemplateVersion, TenantExamples

MAX_RENDERED_CHARS = 64_000


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A template version rendered into messages, with everything needed to run it."""

    template_id: str
    version: int
    bundle_id: str
    messages: tuple[ChatMessage, ...]
    model: str
    sampling: SamplingParams
    safety_policy: str
    knowledge_base: str
    json_schema: str = ""
    strategy: str = "none"
    samples: int = 1
    show_reasoning: bool = False
    semantic_threshold: float = 0.0
    cache_sampled: bool = False


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """Tokens and cost of a render times a number of items."""

    prompt_tokens: int
    completion_tokens: int
    currency: str
    amount_nanos: int


class PromptCore:
    """Serves templates loaded by the caller (see ``templates.load_template_dir``)."""

    def __init__(
        self,
        templates: TemplateStore,
        *,
        count_tokens: Callable[[tuple[ChatMessage, ...]], int],
        count_text_tokens: Callable[[str], int],
        prices: Mapping[str, Price],
        default_model: str,
        label_log: LabelLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = templates
        # Label moves made through SetLabel win over labels.yaml and survive hot reloads; with a
        # log file they survive restarts too.
        self._label_moves: dict[tuple[str, str], int] = {}
        self._label_log = label_log or LabelLog(None)
        self._pools: dict[tuple[str, str], ExamplePool] = {}
        self._bundle_ids: dict[tuple[str, str, str], str] = {}
        self._watch: asyncio.Task[None] | None = None
        self._templates_compiled: dict[tuple[str, int], Template] = {}
        self._count_tokens = count_tokens
        self._count_text_tokens = count_text_tokens
        self._prices = dict(prices)
        self._default_model = default_model
        self._clock = clock
        self._lock = threading.Lock()
        self.label_history: list[LabelMove] = []
        # Undefined variables are errors, attribute escapes are blocked, templates cannot change state.
        self._env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self.sync_labels()

    def sync_labels(self) -> int:
        """Applies label moves other replicas (or an earlier run) appended to the log; returns how many."""
        with self._lock:
            return self._apply_logged_moves()

    def _apply_logged_moves(self) -> int:
        # Caller holds the lock. File order is the order the moves happened in, across replicas.
        moves = self._label_log.read_new()
        for move in moves:
            self._label_moves[(move.template_id, move.label)] = move.to_version
            self.label_history.append(move)
        return len(moves)

    def history(self, template_id: str) -> list[LabelMove]:
        """Label moves of one template, oldest first."""
        with self._lock:
            return [m for m in self.label_history if m.template_id == template_id]

    def watch(self, interval_seconds: float) -> None:
        """Starts hot reload: template files are re-read every ``interval_seconds``."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_seconds)
                await asyncio.to_thread(self._store.reload)
                await asyncio.to_thread(self.sync_labels)

        self._watch = asyncio.get_running_loop().create_task(loop())

    async def close(self) -> None:
        """Stops hot reload; templates and the tokenizer need no release."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _entry(self, tenant_id: str, template_id: str) -> TemplateEntry:
        if not template_id:
            raise InvalidArgument("must not be empty", field="template_id")
        entry = self._store.entries.get(template_id)
        if entry is None:
            raise InvalidArgument(f"unknown template {template_id!r}", field="template_id")
        tenants = entry.versions[entry.latest].spec.tenants
        if tenants and tenant_id not in tenants:
            raise PermissionDenied(f"template {template_id!r} belongs to another tenant", field="template_id")
        return entry

    def resolve(self, tenant_id: str, template_id: str, label: str = "", version: int = 0) -> TemplateVersion:
        """The immutable version a label (default ``production``) or explicit version names."""
        entry = self._entry(tenant_id, template_id)
        if version:
            if version not in entry.versions:
                raise InvalidArgument(f"template {template_id!r} has no version {version}", field="version")
            return entry.versions[version]
        label = label or "production"
        resolved = self.labels(template_id).get(label)
        if resolved is None:
            raise InvalidArgument(f"template {template_id!r} has no label {label!r}", field="label")
        return entry.versions[resolved]

    def _variables(self, tv: TemplateVersion, given: Mapping[str, str]) -> dict[str, str]:
        specs = tv.spec.variables
        unknown = sorted(set(given) - set(specs))
        if unknown:
            raise InvalidArgument(
                f"template {tv.spec.id!r} has no variable {unknown[0]!r}", field=f"variables.{unknown[0]}"
            )
        values: dict[str, str] = {}
        for name, spec in specs.items():
            value = given.get(name)
            if value is None or value == "":
                if spec.required:
                    raise InvalidArgument("is required and missing", field=f"variables.{name}")
                value = spec.default or ""
            if len(value) > spec.max_length:
                raise InvalidArgument(f"longer than {spec.max_length} characters", field=f"variables.{name}")
            if spec.type == "enum" and value and value not in spec.allowed_values:
                raise InvalidArgument(f"must be one of {spec.allowed_values}", field=f"variables.{name}")
            if spec.type == "integer" and value and not value.lstrip("-").isdigit():
                raise InvalidArgument("must be an integer", field=f"variables.{name}")
            values[name] = value
        return values

    def _tenant_examples(self, tenant_id: str, template_id: str) -> TenantExamples | None:
        entry = self._store.entries.get(template_id)
        return entry.tenant_examples.get(tenant_id) if entry is not None and tenant_id else None

    def _pool(self, tv: TemplateVersion, tenant: TenantExamples | None) -> ExamplePool:
        # The template's exemplars first, then the tenant's store; vectors are computed once per
        # (version, store content), so a changed store is a new pool and the old one is dropped.
        key = (tv.content_hash, tenant.content_hash if tenant else "")
        pool = self._pools.get(key)
        if pool is None:
            specs = [*tv.spec.examples, *(tenant.examples if tenant else ())]
            pool = ExamplePool([Example(e.input, e.output, e.reasoning) for e in specs])
            if len(self._pools) > 1024:
                self._pools.clear()
            self._pools[key] = pool
        return pool

    def _apply_strategy(
        self,
        tv: TemplateVersion,
        values: Mapping[str, str],
        messages: tuple[ChatMessage, ...],
        tenant: TenantExamples | None,
    ) -> tuple[ChatMessage, ...]:
        spec = tv.spec
        config: dict[str, object] = {}
        if spec.strategy.name in ("few_shot", "few_shot_cot", "self_consistency"):
            config = {
                "selection": spec.strategy.selection,
                "k": spec.strategy.k,
                "token_budget": spec.strategy.token_budget,
            }
        if spec.strategy.name == "self_consistency":
            config["samples"] = spec.strategy.samples
        language = values.get("language", "")
        user = [m.content for m in messages if m.role == Role.USER]
        context = StrategyContext(
            # A template's `language` variable wins, so a bilingual template gets the right trigger.
            language=language if language in ("zh", "en") else spec.language,
            examples=self._pool(tv, tenant) if config else (),
            query=user[-1] if user else "",
            count_tokens=self._count_text_tokens,
        )
        try:
            return build_strategy(spec.strategy.name, **config).apply(messages, context)
        except StrategyConfigError as exc:
            raise InvalidArgument(str(exc), field=f"strategy.{exc.field}") from None

    def _compiled(self, tv: TemplateVersion, index: int, source: str) -> Template:
        # Compiling is ~100x the cost of rendering; versions are immutable, so compile each once.
        key = (tv.content_hash, index)
        template = self._templates_compiled.get(key)
        if template is None:
            template = self._env.from_string(source)
            self._templates_compiled[key] = template
        return template

    def bundle_id(self, tv: TemplateVersion, model: str, tenant: TenantExamples | None = None) -> str:
        """Stable id of (template version, strategy, examples including the tenant's store,
        parameters, policy, knowledge base, model)."""
        # Everything it hashes is immutable per (version content, model, tenant store): compute once.
        key = (tv.content_hash, model, tenant.content_hash if tenant else "")
        found = self._bundle_ids.get(key)
        if found is None:
            found = self._bundle_ids[key] = self._compute_bundle_id(tv, model, tenant)
        return found

    def _compute_bundle_id(self, tv: TemplateVersion, model: str, tenant: TenantExamples | None) -> str:
        spec = tv.spec
        material = json.dumps(
            {
                "template": spec.id,
                "version": spec.version,
                "content": tv.content_hash,
                "strategy": spec.strategy.model_dump(),
                "examples": [e.model_dump() for e in spec.examples],
                "tenant_examples": tenant.content_hash if tenant and spec.strategy.name != "none" else "",
                "output_schema": spec.output_schema,
                "show_reasoning": spec.show_reasoning,
                "cache": spec.cache.model_dump(),
                "language": spec.language,
                "parameters": spec.parameters.model_dump(),
                "safety_policy": spec.safety_policy,
                "knowledge_base": spec.knowledge_base,
                "model": model,
            },
            sort_keys=True,
        )
        # "<template>@<version>-<hash>": readable in metrics and audit records, and every bundle of
        # a template shares a prefix, so the cache can drop a template's answers by prefix.
        return f"{spec.id}@{spec.version}-" + hashlib.sha256(material.encode()).hexdigest()[:16]

    def render(
        self,
        tenant_id: str,
        template_id: str,
        variables: Mapping[str, str],
        label: str = "",
        version: int = 0,
    ) -> RenderedPrompt:
        """Renders the resolved version; variable values are data, never template syntax."""
        tv = self.resolve(tenant_id, template_id, label, version)
        values = self._variables(tv, variables)
        messages = []
        total = 0
        for i, m in enumerate(tv.spec.messages):
            try:
                content = self._compiled(tv, i, m.content).render(**values)
            except UndefinedError as exc:
                raise InvalidArgument(
                    f"template references an undefined variable: {exc.message}", field="variables"
                ) from None
            except TemplateError as exc:
                raise InvalidArgument(f"template failed to render: {exc}", field=f"messages[{i}]") from None
            total += len(content)
            if total > MAX_RENDERED_CHARS:
                raise InvalidArgument(
                    f"rendered prompt exceeds {MAX_RENDERED_CHARS} characters", field="variables"
                )
            messages.append(ChatMessage(Role(m.role), content))
        tenant = self._tenant_examples(tenant_id, tv.spec.id)
        messages = list(self._apply_strategy(tv, values, tuple(messages), tenant))
        params = tv.spec.parameters
        model = tv.spec.model or self._default_model
        return RenderedPrompt(
            template_id=tv.spec.id,
            version=tv.spec.version,
            bundle_id=self.bundle_id(tv, model, tenant),
            messages=tuple(messages),
            model=model,
            sampling=SamplingParams(
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                stop=tuple(params.stop),
            ),
            safety_policy=tv.spec.safety_policy,
            knowledge_base=tv.spec.knowledge_base,
            json_schema=json.dumps(tv.spec.output_schema, ensure_ascii=False)
            if tv.spec.output_schema
            else "",
            strategy=tv.spec.strategy.name,
            samples=tv.spec.strategy.samples if tv.spec.strategy.name == "self_consistency" else 1,
            show_reasoning=tv.spec.show_reasoning,
            semantic_threshold=tv.spec.cache.semantic_threshold,
            cache_sampled=tv.spec.cache.sampled,
        )

    def list_templates(self, tenant_id: str) -> list[TemplateEntry]:
        visible = []
        for entry in sorted(self._store.entries.values(), key=lambda e: e.template_id):
            tenants = entry.versions[entry.latest].spec.tenants
            if not tenants or tenant_id in tenants:
                visible.append(entry)
        return visible

    def labels(self, template_id: str) -> dict[str, int]:
        """Label name to version: labels.yaml, overridden by moves made through SetLabel."""
        entry = self._store.entries.get(template_id)
        if entry is None:
            return {}
        with self._lock:
            return self._labels_of(entry)

    def _labels_of(self, entry: TemplateEntry) -> dict[str, int]:
        # Caller holds the lock. A move to a version that vanished in a reload is ignored.
        labels = dict(entry.labels)
        for (template_id, label), version in self._label_moves.items():
            if template_id == entry.template_id and version in entry.versions:
                labels[label] = version
        return labels

    def set_label(self, tenant_id: str, template_id: str, label: str, version: int, actor: str) -> int:
        """Points ``label`` at ``version`` atomically; returns the previous version (0 if new)."""
        entry = self._entry(tenant_id, template_id)
        if not label:
            raise InvalidArgument("must not be empty", field="label")
        if version not in entry.versions:
            raise NotFound(f"template {template_id!r} has no version {version}", field="version")
        with self._lock:
            # Moves by other replicas first, so `previous` is what the label really pointed at.
            self._apply_logged_moves()
            previous = self._labels_of(entry).get(label, 0)
            move = LabelMove(template_id, label, previous, version, actor or "unknown", self._clock())
            # Logged before it takes effect: a move that was answered is never lost on restart.
            self._label_log.append(move)
            if self._label_log.path is None:
                self._label_moves[(template_id, label)] = version
                self.label_history.append(move)
            else:
                self._apply_logged_moves()
        return previous

    def estimate_cost(
        self,
        tenant_id: str,
        template_id: str,
        variables: Mapping[str, str],
        *,
        label: str = "",
        version: int = 0,
        item_count: int = 1,
        completion_tokens_per_item: int = 0,
    ) -> CostEstimate:
        """Worst case unless told otherwise: max_tokens completion tokens per item."""
        rendered = self.render(tenant_id, template_id, variables, label, version)
        items = max(item_count, 1)
        prompt = self._count_tokens(rendered.messages) * items
        completion = (completion_tokens_per_item or rendered.sampling.max_tokens) * items
        price = self._prices.get(rendered.model)
        if price is None:
            return CostEstimate(prompt, completion, "", 0)
        return CostEstimate(prompt, completion, price.currency, price.cost_nanos(prompt, completion))
