"""Safety product logic: input checks, PII redaction and streaming output moderation over a rule
pack. No gRPC here; the gateway also calls this in-process.

Nothing in this module logs or returns the text it checks: verdicts name the policy, the rules
and the spans, never the matched words.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable

from aigc_common.errors import FailedPrecondition, InvalidArgument
from aigc_safety import pii
from aigc_safety.metrics import SafetyMetrics
from aigc_safety.normalize import NormalizedText, StreamNormalizer, normalize
from aigc_safety.rules import Rule, RulePack
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

log = logging.getLogger(__name__)

# Which action wins when several rules fire: the strictest.
_STRICTNESS = {Action.ALLOW: 0, Action.REDACT: 1, Action.REVIEW: 2, Action.BLOCK: 3}
PII_CATEGORY = "pii"
PII_SEVERITY = 2


def _rule_hits(rules: Iterable[Rule], normalized: NormalizedText, pos: int = 0) -> list[tuple[Rule, RuleHit]]:
    found = []
    for rule in rules:
        spans = rule.find(normalized.text, pos)
        if spans:
            original = tuple(normalized.original_span(s, e) for s, e in spans)
            found.append((rule, RuleHit(rule.rule_id, rule.category, rule.severity, original)))
    return found


def _categories(hits: Iterable[RuleHit]) -> list[str]:
    return sorted({h.category for h in hits})


def _in_text_order(hits: Iterable[RuleHit]) -> tuple[RuleHit, ...]:
    return tuple(sorted(hits, key=lambda h: (h.spans[0] if h.spans else (0, 0), h.rule_id)))


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
        pack: RulePack,
        metrics: SafetyMetrics,
        *,
        window: int,
        tenant_id: str = "",
        request_id: str = "",
    ) -> None:
        # Only blocking rules can stop a stream; review and redact apply to whole texts.
        self._rules = tuple(r for r in pack.rules_for(Stage.OUTPUT) if r.action == Action.BLOCK)
        self._policy_version = pack.policy_version
        self._lookback = pack.stream_lookback
        self._metrics = metrics
        self._window = window
        self._tenant_id = tenant_id
        self._request_id = request_id
        self._normalizer = StreamNormalizer()
        self._scanned = 0  # normalised characters already scanned
        self._held = ""  # original text checked or not, but not yet released
        self._violation: Verdict | None = None
        self._finished = False

    @property
    def violation(self) -> Verdict | None:
        """The blocking verdict, once the answer has violated the policy."""
        return self._violation

    @property
    def policy_version(self) -> str:
        return self._policy_version

    def feed(self, delta: str) -> str:
        """Checks the next piece of the answer; returns the text now safe to show (maybe empty)."""
        if self._finished:
            raise FailedPrecondition("the answer is already complete", field="delta")
        if self._violation is not None or not delta:
            return ""
        start = time.perf_counter()
        self._normalizer.feed(delta)
        self._held += delta
        # A match not seen before must end in the new text, so only the tail needs scanning; it
        # reaches back far enough to hold the longest keyword or pattern match.
        normalized = self._normalizer.view()
        hits = _rule_hits(self._rules, normalized, max(0, self._scanned - self._lookback))
        self._scanned = len(normalized.text)
        self._metrics.check_duration.labels(Stage.OUTPUT).observe(time.perf_counter() - start)
        if hits:
            self._stop(tuple(hit for _, hit in hits))
            return ""
        cut = len(self._held) - self._window
        if cut <= 0:
            return ""
        released, self._held = self._held[:cut], self._held[cut:]
        return released

    def finish(self) -> str:
        """The answer is complete: returns the held-back text, already checked (empty after a violation)."""
        if self._finished:
            return ""
        self._finished = True
        if self._violation is not None:
            return ""
        self._metrics.verdicts.labels(Stage.OUTPUT, "none", Action.ALLOW).inc()
        released, self._held = self._held, ""
        return released

    def _stop(self, hits: tuple[RuleHit, ...]) -> None:
        categories = _categories(hits)
        self._violation = Verdict(
            action=Action.BLOCK,
            policy_version=self._policy_version,
            hits=_in_text_order(hits),
            message=f"answer stopped by safety policy {self._policy_version} ({', '.join(categories)})",
        )
        self._held = ""
        for category in categories:
            self._metrics.verdicts.labels(Stage.OUTPUT, category, Action.BLOCK).inc()
        log.info(
            "output blocked",
            extra={
                "fields": {
                    "tenant_id": self._tenant_id,
                    "request_id": self._request_id,
                    "policy_version": self._policy_version,
                    "rule_ids": [h.rule_id for h in hits],
                }
            },
        )


class SafetyCore:
    """Checks text against a rule pack: one policy, named after the pack, for every tenant.

    Per-tenant policies come later; the ``tenant_id`` and ``policy`` parameters are already the
    ones callers will use, and an unknown policy name is refused rather than silently defaulted.
    """

    def __init__(
        self,
        pack: RulePack,
        metrics: SafetyMetrics,
        *,
        holdback_chars: int = 16,
        max_text_chars: int = 100_000,
    ) -> None:
        self._pack = pack
        self._metrics = metrics
        self._holdback_chars = holdback_chars
        self._max_text_chars = max_text_chars

    @property
    def pack_version(self) -> str:
        """Version of the active rule pack."""
        return self._pack.version

    @property
    def policy_version(self) -> str:
        """``name@version`` of the default policy, as verdicts carry it."""
        return self._pack.policy_version

    def _policy(self, policy: str, field: str) -> RulePack:
        if policy and policy != self._pack.name:
            raise InvalidArgument(f"unknown safety policy {policy!r}; known: {self._pack.name}", field=field)
        return self._pack

    def check_input(self, tenant_id: str, policy: str, text: str) -> Verdict:
        """Checks a request's input. Empty text is allowed; ``policy`` empty means the default."""
        pack = self._policy(policy, "policy")
        if len(text) > self._max_text_chars:
            raise InvalidArgument(f"is {len(text)} characters; at most {self._max_text_chars}", field="text")
        start = time.perf_counter()
        normalized = normalize(text)
        found = _rule_hits(pack.rules_for(Stage.INPUT), normalized)
        action = max((rule.action for rule, _ in found), key=_STRICTNESS.__getitem__, default=Action.ALLOW)
        deciding = [hit for rule, hit in found if rule.action == action]
        hits = [hit for _, hit in found]
        redacted_text = ""
        if pack.pii:
            redacted, entities = pii.redact(text, pack.pii, normalized)
            pii_hits = self._pii_hits(entities)
            hits.extend(pii_hits)
            if pii_hits and action == Action.ALLOW:
                action, redacted_text, deciding = Action.REDACT, redacted, pii_hits
        self._metrics.check_duration.labels(Stage.INPUT).observe(time.perf_counter() - start)
        for category in _categories(hits) or ["none"]:
            self._metrics.verdicts.labels(Stage.INPUT, category, action).inc()
        verdict = Verdict(
            action=action,
            policy_version=pack.policy_version,
            hits=_in_text_order(hits),
            redacted_text=redacted_text,
            message=self._message(action, pack.policy_version, deciding),
        )
        if action in (Action.BLOCK, Action.REVIEW):
            log.info(
                "input %s",
                action,
                extra={
                    "fields": {
                        "tenant_id": tenant_id,
                        "policy_version": pack.policy_version,
                        "rule_ids": [h.rule_id for h in verdict.hits],
                    }
                },
            )
        return verdict

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

    def redact(self, text: str) -> tuple[str, tuple[PiiEntity, ...]]:
        """Replaces personal data with placeholders like ``[CN_MOBILE_1]``; returns text and entities."""
        if len(text) > self._max_text_chars:
            raise InvalidArgument(f"is {len(text)} characters; at most {self._max_text_chars}", field="text")
        return pii.redact(text, self._pack.pii)

    def list_rules(self) -> tuple[RuleInfo, ...]:
        """Rules of the active policy, PII detectors included, sorted by rule id."""
        rules = [
            RuleInfo(r.rule_id, r.category, r.action, r.language, r.description) for r in self._pack.rules
        ]
        rules.extend(
            RuleInfo(f"pii.{kind}", PII_CATEGORY, Action.REDACT, "any", pii.PII_DETECTORS[kind].description)
            for kind in self._pack.pii
        )
        return tuple(sorted(rules, key=lambda r: r.rule_id))

    def open_output(self, tenant_id: str, policy: str, request_id: str = "") -> OutputModerator:
        """Starts moderating one streaming answer."""
        return OutputModerator(
            self._policy(policy, "open.policy"),
            self._metrics,
            window=self._holdback_chars,
            tenant_id=tenant_id,
            request_id=request_id,
        )

    async def moderate(self, events: AsyncIterable[OutputEvent]) -> AsyncIterator[str | Verdict]:
        """Moderates a stream of open, deltas and end: yields released text, or one violation and stops."""
        stream = aiter(events)
        first = await anext(stream, None)
        if not isinstance(first, OutputOpen):
            raise InvalidArgument("the first message must be `open` (tenant and policy)", field="open")
        moderator = self.open_output(first.tenant_id, first.policy, first.request_id)
        async for event in stream:
            if isinstance(event, OutputOpen):
                raise InvalidArgument("only the first message may be `open`", field="open")
            if isinstance(event, OutputEnd):
                released = moderator.finish()
                if released:
                    yield released
                return
            released = moderator.feed(event.text)
            if released:
                yield released
            if moderator.violation is not None:
                yield moderator.violation
                return
        # The caller closed its side without `end`: the answer is complete all the same.
        released = moderator.finish()
        if released:
            yield released

    async def close(self) -> None:
        """Nothing to release yet; the composition root treats every core alike."""
