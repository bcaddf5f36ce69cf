"""Personal data detectors and redaction with numbered placeholders.

Detection runs on the normalised text, so full-width digits (１３８…) and zero-width characters
inside a number do not hide it; replacement happens on the original text through the index
map, so everything around the personal data stays exactly as the caller wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aigc_safety.normalize import NormalizedText, normalize
from aigc_safety.types import PiiEntity

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10x98765432"


def _resident_id_checksum_ok(value: str) -> bool:
    # GB 11643-1999: the 18th character is a mod-11 checksum of the first 17 digits, so random
    # 18-digit numbers (order ids, tracking numbers) are rarely mistaken for an identity number.
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17]


def _always(_: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class PiiDetector:
    """One kind of personal data: a pattern over normalised text and an optional validator."""

    type: str
    pattern: re.Pattern[str]
    description: str
    valid: Callable[[str], bool] = _always


PII_DETECTORS: dict[str, PiiDetector] = {
    d.type: d
    for d in (
        PiiDetector(
            "cn_resident_id",
            re.compile(
                r"(?<![0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])"
                r"(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9x](?![0-9x])"
            ),
            "Mainland resident identity number (18 characters, GB 11643 checksum); PIPL art. 28 sensitive data.",
            _resident_id_checksum_ok,
        ),
        PiiDetector(
            "cn_mobile",
            re.compile(r"(?<![0-9])(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])"),
            "Mainland mobile number (1[3-9] and 9 digits, optional +86, spaces or dashes); PIPL art. 4.",
        ),
        PiiDetector(
            "email",
            re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}"),
            "E-mail address; PIPL art. 4.",
        ),
    )
}


def find_pii(normalized: NormalizedText, types: Sequence[str]) -> list[tuple[str, tuple[int, int], str]]:
    """``(type, original span, normalised value)`` of each entity, in text order, never overlapping.

    Detectors run in the order of ``types``; where two overlap, the earlier-starting (then
    longer) one wins, so an identity number is not also reported as a phone number.
    """
    found: list[tuple[int, int, str, str]] = []
    for kind in types:
        detector = PII_DETECTORS[kind]
        for m in detector.pattern.finditer(normalized.text):
            if detector.valid(m.group()):
                found.append((m.start(), m.end(), kind, m.group()))
    found.sort(key=lambda f: (f[0], -f[1]))
    out: list[tuple[str, tuple[int, int], str]] = []
    last_end = 0
    for start, end, kind, value in found:
        if start < last_end:
            continue
        out.append((kind, normalized.original_span(start, end), value))
        last_end = end
    return out


def redact(
    text: str, types: Sequence[str], normalized: NormalizedText | None = None
) -> tuple[str, tuple[PiiEntity, ...]]:
    """Replaces each entity with ``[TYPE_n]``; the same value gets the same placeholder.

    ``normalized`` is ``normalize(text)`` when the caller has it already.
    """
    entities: list[PiiEntity] = []
    placeholders: dict[tuple[str, str], str] = {}
    counts: dict[str, int] = {}
    parts: list[str] = []
    last = 0
    for kind, (start, end), value in find_pii(normalized or normalize(text), types):
        # Separators do not make a different number: "138 0013 8000" is "13800138000".
        key = (kind, re.sub(r"[ -]", "", value))
        placeholder = placeholders.get(key)
        if placeholder is None:
            counts[kind] = counts.get(kind, 0) + 1
            placeholder = placeholders[key] = f"[{kind.upper()}_{counts[kind]}]"
        parts.append(text[last:start])
        parts.append(placeholder)
        last = end
        entities.append(PiiEntity(kind, (start, end), placeholder))
    parts.append(text[last:])
    return "".join(parts), tuple(entities)
