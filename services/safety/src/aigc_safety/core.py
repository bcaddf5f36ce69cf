"""Safety product logic: input checks (rules, attack detectors, the trained classifier, PII),
streaming output moderation with a hold-back window, per-tenant policies and audit records.
No gRPC or Kafka here; the gateway also calls this in-process.

Nothing in this module logs or returns the text it checks: verdicts name the policy, the rules
and the spans, never the matched words.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aigc_common.errors import FailedPrecondition, InvalidArgument
from aigc_safety import pii
from aigc_safety.audit import AuditRecord, AuditSink, LogAuditSink
from aigc_safety.metrics import SafetyMetrics
from aigc_safety.normalize import NormalizedText, StreamNormalizer, folding_path, normalize
from aigc_safety.normalize import warm_up as normalize_warm_up
from aigc_safety.policy import Policy, PolicySet, PolicyStore, QuotedSpec
from aigc_safety.quoted import frame_text, inside, quoted_task_spans
from aigc_safety.types import (
    Action,
    OutputEnd,
    OutputEvent,
    OutputOpen,
    PiiEntity,
    RuleHit,
    RuleInfo,
    Stage,
    Verdict,
)

if TYPE_CHECKING:
    from aigc_safety.classifier import SafetyClassifier

log = logging.getLogger(__name__)

# A long benign text of both languages for warm_up(): long enough for every vectorised path.
_WARM_UP_TEXT = (
    "请把下面的会议纪要整理成三条要点，并翻译成英文。客户张女士来电询问订单 20231108 的物流进度，"
    "联系电话 138 0013 8000。Please summarise the notes below in three bullet points and reply "
    "to the customer by email at service@example.com before Friday. "
) * 6

# Which action wins when several rules fire: the strictest.
_STRICTNESS = {Action.ALLOW: 0, Action.REDACT: 1, Action.REVIEW: 2, Action.BLOCK: 3}
PII_CATEGORY = "pii"
PII_SEVERITY = 2
CLASSIFIER_SEVERITY = 3


def _strictest(actions: Iterable[Action]) -> Action:
    return max(actions, key=_STRICTNESS.__getitem__, default=Action.ALLOW)


def _categories(hits: Iterable[RuleHit]) -> list[str]:
    return sorted({h.category for h in hits})


def _in_text_order(hits: Iterable[RuleHit]) -> tuple[RuleHit, ...]:
    return tuple(sorted(hits, key=lambda h: (h.spans[0] if h.spans else (0, 0), h.rule_id)))


def _rule_hits(
    policy: Policy, stage: Stage, normalized: NormalizedText, pos: int = 0
) -> list[tuple[Action, RuleHit]]:
    """Rules of the policy's packs that fire, each with the action the policy gives its category."""
    found = []
    for rule, spans in policy.scanner(stage).scan(normalized.text, pos):
        action = policy.action_for(rule.category, rule.action)
        if action is None:
            continue  # the policy turns this category off
        original = tuple(normalized.original_span(s, e) for s, e in spans)
        found.append((action, RuleHit(rule.rule_id, rule.category, rule.severity, original)))
    return found


class OutputModerator:
    """Moderates one streaming answer, holding back the last ``window`` characters.

    Every character it releases has been checked together with everything before it; the held
    characters are checked too but wait, because a blocked phrase may start in them and end in
    the next delta. For that to never let part of a phrase out, the window should be at least
    the longest blocked phrase; it trades safety against delay of the first visible token.
    On a violation nothing more is released, ever.
    """

    def __init__(
        self,
        policy: Policy,
        metrics: SafetyMetrics,
        *,
        window: int,
        on_violation: Callable[[Verdict], None] = lambda verdict: None,
        tenant_id: str = "",
        request_id: str = "",
    ) -> None:
        self._policy = policy
        self._lookback = max(p.stream_lookback for p in policy.packs)
        self._metrics = metrics
        # Resolved once: a label lookup per delta would cost as much as the check of a short delta.
        self._feed_duration = metrics.check_duration.labels(Stage.OUTPUT)
        self._window = window
        self._on_violation = on_violation
        self._tenant_id = tenant_id
        self._request_id = request_id
        self._normalizer = StreamNormalizer()
        self._scanned = 0  # normalised characters already scanned
        self._held = ""  # original text checked or not, but not yet released
        self._violation: Verdict | None = None
        self._finished = False
        self._first_fed = 0.0
        self._first_released = False

    @property
    def violation(self) -> Verdict | None:
        """The blocking verdict, once the answer has violated the policy."""
        return self._violation

    @property
    def policy_version(self) -> str:
        return self._policy.version

    def feed(self, delta: str) -> str:
        """Checks the next piece of the answer; returns the text now safe to show (maybe empty)."""
        if self._finished:
            raise FailedPrecondition("the answer is already complete", field="delta")
        if self._violation is not None or not delta:
            return ""
        start = time.perf_counter()
        self._first_fed = self._first_fed or start
        self._normalizer.feed(delta)
        self._held += delta
        # A match not seen before must end in the new text, so only the tail needs scanning; it
        # reaches back far enough to hold the longest keyword or pattern match.
        normalized = self._normalizer.view()
        found = _rule_hits(self._policy, Stage.OUTPUT, normalized, max(0, self._scanned - self._lookback))
        self._scanned = len(normalized.text)
        self._feed_duration.observe(time.perf_counter() - start)
        # Only blocking rules stop a stream; review and redact apply to whole texts.
        blocking = tuple(hit for action, hit in found if action == Action.BLOCK)
        if blocking:
            self._stop(blocking)
            return ""
        cut = len(self._held) - self._window
        if cut <= 0:
            return ""
        released, self._held = self._held[:cut], self._held[cut:]
        return self._release(released)

    def finish(self) -> str:
        """The answer is complete: returns the held-back text, already checked (empty after a violation)."""
        if self._finished:
            return ""
        self._finished = True
        if self._violation is not None:
            return ""
        self._metrics.verdicts.labels(Stage.OUTPUT, "none", Action.ALLOW).inc()
        released, self._held = self._held, ""
        return self._release(released)

    def _release(self, text: str) -> str:
        if text and not self._first_released:
            # What the window costs the caller: first text in to first text out.
            self._first_released = True
            self._metrics.holdback.observe(time.perf_counter() - self._first_fed)
        return text

    def _stop(self, hits: tuple[RuleHit, ...]) -> None:
        categories = _categories(hits)
        self._violation = Verdict(
            action=Action.BLOCK,
            policy_version=self._policy.version,
            hits=_in_text_order(hits),
            message=f"answer stopped by safety policy {self._policy.version} ({', '.join(categories)})",
        )
        self._held = ""
        for category in categories:
            self._metrics.verdicts.labels(Stage.OUTPUT, category, Action.BLOCK).inc()
        self._on_violation(self._violation)


def freeze_long_lived() -> None:
    """Collects once, then moves every object alive into the collector's permanent generation
    (``gc.freeze``), so full collections stop walking the packs, scanners and classifier that live
    as long as the process. A reload builds a whole new snapshot and its garbage triggers full
    collections; with the old objects frozen they take milliseconds instead of 100-250, which
    stalled every check waiting for the interpreter lock. A replaced snapshot holds no reference
    cycles, so reference counting frees it, frozen or not (``loadtests/bench_safety_reload.py``)."""
    gc.collect()
    gc.freeze()


class SafetyCore:
    """Checks text under the policy a tenant uses (or the one a request names)."""

    def __init__(
        self,
        policies: PolicyStore,
        metrics: SafetyMetrics,
        *,
        classifier: SafetyClassifier | None = None,
        audit: AuditSink | None = None,
        default_policy: str = "default",
        tenant_policies: Mapping[str, str] | None = None,
        holdback_chars: int = 16,
        max_text_chars: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = policies
        self._metrics = metrics
        self._classifier = classifier
        self._audit = audit or LogAuditSink()
        self._default_policy = default_policy
        self._tenant_policies = dict(tenant_policies or {})
        self._holdback_chars = holdback_chars
        self._max_text_chars = max_text_chars
        self._clock = clock
        self._watch: asyncio.Task[None] | None = None
        # Metric children resolved once: a labels() look-up costs about as much as a short check.
        self._input_duration = metrics.check_duration.labels(Stage.INPUT)
        self._input_verdicts: dict[tuple[str, Action], Any] = {}
        for tenant, name in {"": default_policy, **self._tenant_policies}.items():
            if name not in policies.snapshot.policies:
                raise InvalidArgument(
                    f"policy {name!r} (for tenant {tenant or 'default'!r}) is not among "
                    f"{sorted(policies.snapshot.policies)}",
                    field="tenant_policies" if tenant else "default_policy",
                )

    def watch(self, interval_seconds: float, *, freeze: bool = False) -> None:
        """Starts hot reload of packs and policies every ``interval_seconds``; with ``freeze``, a
        snapshot swapped in is exempted from full garbage collections as the first one was (see
        :func:`freeze_long_lived`)."""

        async def loop() -> None:
            store, metrics = self._store, self._metrics
            while True:
                await asyncio.sleep(interval_seconds)
                refusals = store.refusals
                if await asyncio.to_thread(store.reload, self._warm_policies):
                    metrics.policy_reloads.labels("applied").inc()
                    if freeze:
                        gc.freeze()
                elif store.refusals > refusals:
                    metrics.policy_reloads.labels("refused").inc()
                metrics.policy_files_rejected.set(1 if store.last_error else 0)

        self._watch = asyncio.get_running_loop().create_task(loop())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def warm_up(self) -> None:
        """Does the first checks' one-time work before traffic arrives: fills the normaliser's
        tables for the common scripts and runs every policy's scanners, the PII detectors and the
        classifier once over a long mixed text. Nothing is checked: no metric, no audit event."""
        normalize_warm_up()
        normalized = self._warm_policies(self._store.snapshot)
        normalized.original_span(0, 1)  # the index map's path
        if self._classifier is not None:
            self._classifier.score(normalized.text)

    @staticmethod
    def _warm_policies(policies: PolicySet) -> NormalizedText:
        """Runs every policy's scanners and PII detectors once over the warm-up text: at start-up,
        and on a hot reload before the new snapshot serves."""
        normalized = normalize(_WARM_UP_TEXT)
        for policy in policies.policies.values():
            for stage in Stage:
                policy.scanner(stage).scan(normalized.text)
            pii.find_pii(normalized, policy.spec.pii.types)
        return normalized

    @property
    def scoring_paths(self) -> str:
        """Which compiled helpers run, e.g. ``fold native, rule scan native, classifier native``."""
        classifier = self._classifier.scoring_path if self._classifier else "off"
        return f"fold {folding_path()}, rule scan {self._store.scanning_path}, classifier {classifier}"

    @property
    def classifier_version(self) -> str:
        return self._classifier.version if self._classifier else ""

    def classifier_score(self, text: str) -> float | None:
        """The classifier's unsafe score for a text (None without a classifier): for tools that
        show how close a verdict was, not for deciding one."""
        if self._classifier is None:
            return None
        return self._classifier.score(normalize(text).text).unsafe

    @property
    def reload_error(self) -> str:
        """Why the packs and policies on disk were refused at the last reload (the last good ones
        keep serving); empty when what serves is what the folders hold."""
        return self._store.last_error

    def policy(self, tenant_id: str, name: str = "", field: str = "policy") -> Policy:
        """The policy a request names, else the tenant's, else the default."""
        chosen = name or self._tenant_policies.get(tenant_id) or self._default_policy
        policy = self._store.snapshot.policies.get(chosen)
        if policy is None:
            known = ", ".join(sorted(self._store.snapshot.policies))
            raise InvalidArgument(f"unknown safety policy {chosen!r}; known: {known}", field=field)
        return policy

    @property
    def policy_version(self) -> str:
        """Version of the default policy, as verdicts carry it."""
        return self.policy("").version

    @property
    def pack_version(self) -> str:
        """Versions of the default policy's packs."""
        return "+".join(p.policy_version for p in self.policy("").packs)

    def _check_length(self, text: str) -> None:
        if len(text) > self._max_text_chars:
            raise InvalidArgument(f"is {len(text)} characters; at most {self._max_text_chars}", field="text")

    def check_input(
        self, tenant_id: str, policy: str, text: str, *, request_id: str = "", bundle_id: str = ""
    ) -> Verdict:
        """Checks a request's input. Empty text is allowed; ``policy`` empty means the tenant's."""
        chosen = self.policy(tenant_id, policy)
        self._check_length(text)
        start = time.perf_counter()
        normalized = normalize(text)
        found = _rule_hits(chosen, Stage.INPUT, normalized)
        quoted = chosen.spec.quoted
        # The quotes of a task about quoted text, found once and only when something could use them.
        quotes: tuple[tuple[int, int], ...] | None = None
        if quoted.categories and any(hit.category in quoted.categories for _, hit in found):
            quotes = quoted_task_spans(text)
        if quotes:
            lenient = Action(quoted.action)
            found = [
                (lenient, hit)
                if hit.category in quoted.categories and all(inside(s, quotes) for s in hit.spans)
                else (action, hit)
                for action, hit in found
            ]
        spec = chosen.spec.classifier
        # The classifier catches paraphrases the rules miss; when a rule already blocks it adds nothing.
        if self._classifier is not None and spec.enabled and not any(a == Action.BLOCK for a, _ in found):
            threshold = spec.threshold if spec.threshold is not None else self._classifier.threshold
            scored = self._classifier.score(normalized.text, category_from=threshold)
            if scored.unsafe >= threshold:
                action = chosen.action_for(scored.category, Action(spec.action))
                if action is not None and quoted.categories:
                    if quotes is None:
                        quotes = quoted_task_spans(text)
                    if quotes and self._quoted_only(text, quotes, threshold, quoted):
                        action = Action(quoted.action)
                if action is not None:
                    hit = RuleHit(
                        f"classifier.{scored.category or 'unsafe'}",
                        scored.category or "unsafe",
                        CLASSIFIER_SEVERITY,
                        ((0, len(text)),),
                        round(scored.unsafe, 4),
                    )
                    found.append((action, hit))
        action = _strictest(a for a, _ in found)
        deciding = [hit for a, hit in found if a == action]
        hits = [hit for _, hit in found]
        redacted_text = ""
        pii_spec = chosen.spec.pii
        restorable: tuple[PiiEntity, ...] = ()
        # Most texts hold no personal data: detect first, build a redaction only when there is some.
        if pii_spec.types and pii.find_pii(normalized, pii_spec.types):
            redaction = (
                pii.mask(text, pii_spec.types, normalized)
                if pii_spec.mode == "mask"
                else pii.pseudonymize(text, pii_spec.types, normalized)
            )
            pii_hits = self._pii_hits(redaction.entities)
            hits.extend(pii_hits)
            if pii_hits and pii_spec.mode != "off" and action == Action.ALLOW:
                action, redacted_text, deciding = Action.REDACT, redaction.text, pii_hits
                if pii_spec.mode == "placeholder" and pii_spec.restore:
                    # Spans and placeholders only: the caller, who holds the original text, can
                    # rebuild the map and put the values back into the answer.
                    restorable = redaction.entities
        self._input_duration.observe(time.perf_counter() - start)
        for category in _categories(deciding) or ["none"]:
            counter = self._input_verdicts.get((category, action))
            if counter is None:
                counter = self._input_verdicts[(category, action)] = self._metrics.verdicts.labels(
                    Stage.INPUT, category, action
                )
            counter.inc()
        verdict = Verdict(
            action=action,
            policy_version=chosen.version,
            hits=_in_text_order(hits),
            redacted_text=redacted_text,
            message=self._message(action, chosen.version, deciding),
            entities=restorable,
        )
        if action != Action.ALLOW:
            self._record(tenant_id, request_id, bundle_id, Stage.INPUT, verdict, deciding)
        return verdict

    def _quoted_only(
        self, text: str, quotes: tuple[tuple[int, int], ...], threshold: float, quoted: QuotedSpec
    ) -> bool:
        """Whether the classifier flagged ``text`` for what it quotes (``quotes``, the spans of an
        analysis task's quotes): the quotes alone score in one of ``quoted.categories`` and the words around them do not, on
        their own, flag in one of them ("is this true: “……” I think so, explain why they are
        inferior"). A frame flagged in another category does not count: scored alone, a bare
        instruction such as "rewrite this message politely:" reads to the classifier like a
        request to it, and the rules still check the frame's words."""
        assert self._classifier is not None
        quote = normalize("\n".join(text[s:e] for s, e in quotes)).text
        if self._classifier.score(quote).category not in quoted.categories:
            return False
        frame = self._classifier.score(normalize(frame_text(text, quotes)).text, category_from=threshold)
        return frame.unsafe < threshold or frame.category not in quoted.categories

    def _record(
        self,
        tenant_id: str,
        request_id: str,
        bundle_id: str,
        stage: Stage,
        verdict: Verdict,
        deciding: Iterable[RuleHit],
    ) -> None:
        self._audit.record(
            AuditRecord(
                request_id=request_id,
                tenant_id=tenant_id,
                stage=str(stage),
                action=str(verdict.action),
                policy_version=verdict.policy_version,
                rule_ids=tuple(h.rule_id for h in verdict.hits),
                categories=tuple(_categories(deciding)),
                bundle_id=bundle_id,
                decided_at=self._clock(),
            )
        )

    @staticmethod
    def _pii_hits(entities: Iterable[PiiEntity]) -> list[RuleHit]:
        spans: dict[str, list[tuple[int, int]]] = {}
        for entity in entities:
            spans.setdefault(entity.type, []).append(entity.span)
        return [
            RuleHit(f"pii.{kind}", PII_CATEGORY, PII_SEVERITY, tuple(kind_spans))
            for kind, kind_spans in spans.items()
        ]

    @staticmethod
    def _message(action: Action, policy_version: str, deciding: list[RuleHit]) -> str:
        # Names the policy and categories (or PII types) only: echoing the matched words would
        # teach an attacker what to rephrase and would copy personal data into logs and UIs.
        if action == Action.REDACT:
            kinds = ", ".join(sorted(h.rule_id.removeprefix("pii.") for h in deciding))
            return f"personal data redacted under safety policy {policy_version} ({kinds})"
        categories = ", ".join(_categories(deciding))
        if action == Action.BLOCK:
            return f"blocked by safety policy {policy_version} ({categories})"
        if action == Action.REVIEW:
            return f"accepted for human review under safety policy {policy_version} ({categories})"
        return ""

    def redact(
        self, text: str, tenant_id: str = "", policy: str = "", mode: str = ""
    ) -> tuple[str, tuple[PiiEntity, ...]]:
        """Replaces the policy's personal data types with placeholders like ``[CN_MOBILE_1]`` or masks
        like ``138****8000``; ``mode`` empty means the policy's mode."""
        self._check_length(text)
        if mode not in ("", "placeholder", "mask"):
            raise InvalidArgument(f"must be placeholder or mask, got {mode!r}", field="mode")
        spec = self.policy(tenant_id, policy).spec.pii
        if (mode or spec.mode) == "mask":
            redaction = pii.mask(text, spec.types)
        else:
            redaction = pii.pseudonymize(text, spec.types)
        return redaction.text, redaction.entities

    def list_rules(self, tenant_id: str = "", policy: str = "") -> tuple[RuleInfo, ...]:
        """Rules of the tenant's policy with the action the policy gives them (categories the
        policy turns off are left out), PII detectors and the classifier included."""
        chosen = self.policy(tenant_id, policy)
        rules = []
        for pack in chosen.packs:
            for r in pack.rules:
                action = chosen.action_for(r.category, r.action)
                if action is not None:
                    rules.append(RuleInfo(r.rule_id, r.category, action, r.language, r.description))
        rules.extend(
            RuleInfo(f"pii.{kind}", PII_CATEGORY, Action.REDACT, "any", pii.PII_DETECTORS[kind].description)
            for kind in chosen.spec.pii.types
        )
        if self._classifier is not None and chosen.spec.classifier.enabled:
            rules.append(
                RuleInfo(
                    "classifier.*",
                    "any",
                    Action(chosen.spec.classifier.action),
                    "any",
                    f"Trained bilingual classifier {self._classifier.version}; fires at an unsafe "
                    f"score of {chosen.spec.classifier.threshold or self._classifier.threshold:.2f} or more.",
                )
            )
        return tuple(sorted(rules, key=lambda r: r.rule_id))

    def open_output(
        self,
        tenant_id: str,
        policy: str,
        request_id: str = "",
        *,
        reasoning: bool = False,
        bundle_id: str = "",
    ) -> OutputModerator:
        """Starts moderating one streaming answer; hidden reasoning is checked under the policy's
        ``reasoning_policy``."""
        chosen = self.policy(tenant_id, policy, "open.policy")
        if reasoning and chosen.spec.reasoning_policy:
            chosen = self.policy(tenant_id, chosen.spec.reasoning_policy, "open.policy")
        stage = Stage.OUTPUT

        def audit(verdict: Verdict) -> None:
            self._record(tenant_id, request_id, bundle_id, stage, verdict, verdict.hits)

        window = (
            chosen.spec.holdback_chars if chosen.spec.holdback_chars is not None else self._holdback_chars
        )
        return OutputModerator(
            chosen,
            self._metrics,
            window=window,
            on_violation=audit,
            tenant_id=tenant_id,
            request_id=request_id,
        )

    async def moderate(self, events: AsyncIterable[OutputEvent]) -> AsyncIterator[str | Verdict]:
        """Moderates a stream of open, deltas and end. Answers every event with exactly one result:
        the text released by it (maybe empty), or the violation, after which it stops. One answer
        per event lets a remote caller pair each send with one receive."""
        stream = aiter(events)
        first = await anext(stream, None)
        if not isinstance(first, OutputOpen):
            raise InvalidArgument("the first message must be `open` (tenant and policy)", field="open")
        moderator = self.open_output(
            first.tenant_id,
            first.policy,
            first.request_id,
            reasoning=first.reasoning,
            bundle_id=first.bundle_id,
        )
        yield ""
        async for event in stream:
            if isinstance(event, OutputOpen):
                raise InvalidArgument("only the first message may be `open`", field="open")
            if isinstance(event, OutputEnd):
                yield moderator.finish()
                return
            released = moderator.feed(event.text)
            if moderator.violation is not None:
                yield moderator.violation
                return
            yield released
        # The caller closed its side without `end`: the answer is complete all the same.
        moderator.finish()
