"""Personal data detectors and redaction: masking, or reversible placeholders with a restore step.

Detection runs on the normalised text, so full-width digits (１３８…) and zero-width characters
inside a number do not hide it; replacement happens on the original text through the index
map, so everything around the personal data stays exactly as the caller wrote it.

Two ways to redact:

- :func:`mask` keeps a few characters (``138****8000``): irreversible, for logs, audit records and
  answers shown to people who may recognise their own data but must not read anyone else's.
- :func:`pseudonymize` replaces each value with a numbered placeholder (``[CN_MOBILE_1]``, the same
  value always the same placeholder) and returns a :class:`RedactionMap`; :func:`restore` puts the
  values back into the model's answer. This is de-identification in the sense of PIPL art. 73(3):
  the model never sees the data, and only the holder of the map (the gateway, for the length of
  one request) can re-identify it.

Detection is linear in the text length and cheap: one pass finds the runs of digits, ``str.find``
the "@", ":" and context words, and the patterns run only there (see :class:`Scan`); quantifiers
are bounded, boundaries are look-arounds, and validators (checksums, Luhn, octet ranges) only see
candidates. Nothing in this module logs, and :class:`RedactionMap` does not print its values.
"""

from __future__ import annotations

import enum
import ipaddress
import operator
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from aigc_safety.normalize import NormalizedText, normalize
from aigc_safety.types import PiiEntity

# --------------------------------------------------------------------------------------------
# Validators: cheap checks on a candidate, run only where a pattern matched.
# --------------------------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10x98765432"
_SEPARATORS = str.maketrans("", "", " .()+-")


def _digits(value: str) -> str:
    """The value without the separators a pattern allows (spaces, dashes, dots, parentheses, +)."""
    return value.translate(_SEPARATORS)


def _resident_id_checksum_ok(value: str) -> bool:
    # GB 11643-1999: the 18th character is a mod-11 checksum of the first 17 digits, so random
    # 18-digit numbers (order ids, tracking numbers) are rarely mistaken for an identity number.
    total = sum(map(operator.mul, map(int, value[:17]), _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == value[17]


def _resident_id_ok(value: str) -> bool:
    digits = _digits(value)
    # The 15-digit format (before 1999) has no checksum; it only counts next to a context word.
    return len(digits) == 15 or _resident_id_checksum_ok(digits)


def _is_old_resident_id(value: str) -> bool:
    return len(_digits(value)) == 15


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812 Luhn check digit: catches every single-digit typo and most transpositions,
    and rejects nine in ten random digit strings, which keeps order numbers from looking like cards."""
    total = sum(map(int, digits[-1::-2])) + sum(_LUHN_DOUBLED[int(d)] for d in digits[-2::-2])
    return total % 10 == 0


def _grouping_ok(value: str) -> bool:
    # Card numbers are written solid or in groups of 3 to 6 (4-4-4-4, 4-6-5, 4-4-4-4-3) with one
    # kind of separator; anything else ("4 0 1 2 ...", mixed "-" and " ") is a list of numbers.
    if value.isdigit():
        return True
    separator = " " if " " in value else "-"
    groups = value.split(separator)
    return all(g.isdigit() and 3 <= len(g) <= 6 for g in groups[:-1]) and 1 <= len(groups[-1]) <= 6


def _card_scheme(digits: str) -> str:
    """The card scheme a number's issuer prefix (IIN) and length belong to; "" for none.

    UnionPay and the mainland's domestic-only prefixes are ``bank_card``; the international
    schemes are ``credit_card`` (credit or debit alike). The prefix sets are disjoint, so a number
    gets exactly one type: 62 is UnionPay even where a Discover co-brand range overlaps it, and
    6011 is Discover although other 60 numbers are domestic.
    """
    n = len(digits)
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65:
        return "discover" if 16 <= n <= 19 else ""
    if p2 in (62, 81, 60) or p2 == 95:
        return "unionpay" if 16 <= n <= 19 else ""
    if p2 // 10 == 4:
        return "visa" if n in (13, 16, 19) else ""
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return "mastercard" if n == 16 else ""
    if p2 in (34, 37):
        return "amex" if n == 15 else ""
    if 3528 <= p4 <= 3589:
        return "jcb" if 16 <= n <= 19 else ""
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):
        return "diners" if 14 <= n <= 19 else ""
    if p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763):
        return "maestro" if 13 <= n <= 19 else ""
    if p4 == 5019:
        return "dankort" if n == 16 else ""
    return ""


def _bank_card_ok(value: str) -> bool:
    digits = _digits(value)
    return _card_scheme(digits) == "unionpay" and luhn_ok(digits) and _grouping_ok(value)


def _credit_card_ok(value: str) -> bool:
    digits = _digits(value)
    return _card_scheme(digits) not in ("", "unionpay") and luhn_ok(digits) and _grouping_ok(value)


def _ssn_ok(value: str) -> bool:
    # SSA never issues area 000, 666 or 900-999 (those are ITINs), group 00 or serial 0000.
    digits = _digits(value)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _is_unseparated(value: str) -> bool:
    return value.isdigit()


def _ipv4_ok(value: str) -> bool:
    # The pattern bounds octets 2-4; the first must be a unicast address: not 0 ("this network"),
    # not 224-255 (multicast, reserved and netmasks like 255.255.255.0, which identify nobody).
    return 1 <= int(value.split(".", 1)[0]) <= 223


def _ipv6_ok(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    # At least three groups with digits: "::1" and "fe80::1" are the same on every machine, and
    # short runs like "a::b" appear in code; a routable address has more.
    return sum(1 for g in re.split(r"[:.]", value) if g) >= 3


def _always(_: str) -> bool:
    return True


# --------------------------------------------------------------------------------------------
# Masking styles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MaskStyle:
    """How :func:`mask` hides a value: keep the first ``keep_start`` and last ``keep_end`` letters
    or digits, replace the others with ``char``; separators stay, so the shape stays readable.

    Country codes of phone numbers and the domain of an e-mail address are kept as well (they
    identify nobody); if the kept characters would cover the whole value, all of it is masked.
    """

    keep_start: int = 0
    keep_end: int = 4
    char: str = "*"

    def __post_init__(self) -> None:
        if self.keep_start < 0 or self.keep_end < 0:
            raise ValueError("keep_start and keep_end must be >= 0")
        if len(self.char) != 1:
            raise ValueError("char must be one character")


# --------------------------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------------------------


class Scan(enum.Enum):
    """Where a detector's pattern runs. Python's regex engine costs tens of nanoseconds per
    character and pass, so twelve patterns over the whole text would cost more than the rest of a
    safety check; instead one cheap pass (or ``str.find``) locates the few places where each kind
    of data can be, and patterns run only there. Places are bounded and no character is scanned
    twice by one detector, so the total stays linear in the text length."""

    NUMBERS = "numbers"
    """Inside runs of digits written with number punctuation (``+()-. `` and a final ``x``),
    found by one pass for all such detectors; runs shorter than ``min_digits`` (the fewest digits
    a value has), or without ``anchor`` when one is set, are skipped: years, prices and times
    never get further."""
    AROUND = "around"
    """Around each occurrence of ``anchor`` ("@" for e-mail, ":" for IPv6): a match starts where
    the run of ``token`` characters before the anchor starts (at most ``lead`` back), after any
    characters ``not_first`` matches there, and ends at most ``reach`` characters after the
    anchor; the pattern must require the anchor, so nothing elsewhere could have matched."""
    AFTER_CONTEXT = "after_context"
    """Only within ``window`` characters after a ``context`` word (plus ``reach`` for the value
    itself), for formats too plain to count anywhere else."""


@dataclass(frozen=True, slots=True)
class PiiDetector:
    """One kind of personal data: a pattern over normalised text and an optional validator.

    ``context`` are words (normalised: lower case) that must appear in the ``window`` characters
    before a match, for the values ``needs_context`` selects (``None``: every value); formats too
    plain to stand alone (15-digit identity numbers, 9 bare digits) count only there. ``veto``
    right before a match cancels it ("version 1.2.3.4"). With ``shorten``, a grouped match that
    fails validation is retried without its last groups, so a card number followed by more
    digits ("4111 1111 1111 1111 12/25") is still found. See :class:`Scan` for ``scan``,
    ``min_digits``, ``anchor``, ``lead`` and ``reach``.
    """

    type: str
    pattern: re.Pattern[str]
    description: str
    valid: Callable[[str], bool] = _always
    context: tuple[str, ...] = ()
    needs_context: Callable[[str], bool] | None = None
    veto: re.Pattern[str] | None = None
    window: int = 24
    mask_style: MaskStyle = MaskStyle()
    shorten: bool = False
    scan: Scan = Scan.NUMBERS
    min_digits: int = 0
    anchor: str = ""
    lead: int = 0
    reach: int = 0
    token: str = ""
    not_first: re.Pattern[str] | None = None

    def accepts(self, text: str, start: int, value: str) -> bool:
        """Whether a pattern match at ``start`` of the normalised ``text`` is this kind of data."""
        if not self.valid(value):
            return False
        before = text[max(0, start - self.window) : start]
        if self.veto is not None and self.veto.search(before):
            return False
        if self.context and (self.needs_context is None or self.needs_context(value)):
            return any(word in before for word in self.context)
        return True

    def accepted(self, text: str, start: int, value: str) -> str:
        """The longest part of a pattern match at ``start`` that :meth:`accepts` (``""``: none)."""
        if self.valid is _always and not self.context and self.veto is None:
            return value  # the pattern says it all (phone numbers): skip the calls
        while not self.accepts(text, start, value):
            cut = max(value.rfind(" "), value.rfind("-")) if self.shorten else -1
            if cut <= 0:
                return ""
            value = value[:cut]
        return value


# Patterns run on normalised text: lower case, ASCII digits and punctuation, single spaces, no
# spaces next to Chinese characters. Look-arounds at both ends keep a pattern from matching part
# of a longer number; every quantifier is bounded.
_MMDD = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
_CN_AREA = r"(?:10|2[0-9]|[3-9][0-9]{2})"  # mainland area codes without the trunk 0

PII_DETECTORS: dict[str, PiiDetector] = {
    d.type: d
    # The order is the precedence where two detectors claim the same text: checksummed formats
    # first, then the specific phone formats, the generic ones last.
    for d in (
        PiiDetector(
            "cn_resident_id",
            re.compile(
                r"(?<![0-9])[1-9][0-9]{5}[ -]?"
                rf"(?:(?:18|19|20)[0-9]{{2}}{_MMDD}[ -]?[0-9]{{3}}[0-9x]|[0-9]{{2}}{_MMDD}[0-9]{{3}})"
                r"(?![0-9x])"
            ),
            "Mainland resident identity number: 18 characters with the GB 11643 checksum, or the "
            "15-digit pre-1999 format next to words like 身份证 / ID card; sensitive personal "
            "information (specific identity), PIPL art. 28, GB/T 35273-2020 annex B.",
            _resident_id_ok,
            context=("身份", "證件", "证件", "identity", "id card", "id no", "id number", "resident id"),
            needs_context=_is_old_resident_id,
            mask_style=MaskStyle(3, 4),
            min_digits=15,
        ),
        PiiDetector(
            "bank_card",
            re.compile(r"(?<![0-9])[689](?:[ -]?[0-9]){15,18}(?![0-9])"),
            "Mainland bank card number: UnionPay (62, 81) and domestic prefixes (60, 95), 16-19 "
            "digits, Luhn check digit; financial account, sensitive under PIPL art. 28.",
            _bank_card_ok,
            mask_style=MaskStyle(4, 4),
            shorten=True,
            min_digits=16,
        ),
        PiiDetector(
            "credit_card",
            re.compile(r"(?<![0-9])[2-6](?:[ -]?[0-9]){12,18}(?![0-9])"),
            "Payment card of an international scheme (Visa, Mastercard, American Express, "
            "Discover, JCB, Diners Club, Maestro, Dankort) by prefix and length, Luhn check digit, "
            "solid or grouped with spaces or dashes; financial account, PIPL art. 28; PCI DSS "
            "req. 3.",
            _credit_card_ok,
            mask_style=MaskStyle(4, 4),
            shorten=True,
            min_digits=13,
        ),
        PiiDetector(
            "us_ssn",
            re.compile(r"(?<![0-9-])[0-8][0-9]{2}([ -]?)[0-9]{2}\1[0-9]{4}(?![0-9]|-[0-9])"),
            "US Social Security number, AAA-GG-SSSS without the never-issued ranges (area 000, "
            "666, 9xx; group 00; serial 0000); nine bare digits only next to SSN / social "
            "security; sensitive PII under NIST SP 800-122 and state breach laws (e.g. Cal. Civ. "
            "Code 1798.82).",
            _ssn_ok,
            context=("ssn", "social security", "社会安全", "社會安全", "社保号"),
            needs_context=_is_unseparated,
            mask_style=MaskStyle(0, 4),
            min_digits=9,
        ),
        PiiDetector(
            "cn_mobile",
            re.compile(r"(?<![0-9+])(?:\(?(?:\+|00)?86\)?[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])"),
            "Mainland mobile number: 1[3-9] and 9 digits, optional +86 / 0086 / (+86), spaces or "
            "dashes; personal information, PIPL art. 4.",
            mask_style=MaskStyle(3, 4),
            min_digits=11,
        ),
        PiiDetector(
            "cn_landline",
            re.compile(
                rf"(?<![0-9+])(?:(?:\+|00)86[ -]?(?:\(0?{_CN_AREA}\)|0?{_CN_AREA})"
                r"|\(0[1-9][0-9]{1,2}\)|0[1-9][0-9]{1,2})"
                r"[ -]?[2-9][0-9]{2,3}[ -]?[0-9]{4}(?![0-9])"
            ),
            "Landline number: area code 0xx / 0xxx (optionally in parentheses, or +86 without the "
            "0) and a 7-8 digit subscriber number, spaces or dashes; the same shape also covers "
            "national numbers of other countries with a trunk 0; personal information, PIPL art. 4.",
            mask_style=MaskStyle(3, 4),
            min_digits=10,
        ),
        PiiDetector(
            "us_phone",
            re.compile(
                r"(?<![0-9+])(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])"
                r"[0-9]{3}[ .-][0-9]{4}(?![0-9])"
            ),
            "North American number: (555) 123-4567, 555-123-4567, 555.123.4567, optional +1; "
            "personal information under CCPA (Cal. Civ. Code 1798.140(v)) and PIPL art. 4.",
            mask_style=MaskStyle(3, 4),
            min_digits=10,
        ),
        PiiDetector(
            "intl_phone",
            re.compile(
                r"(?<![0-9a-z+])\+[1-9](?:[ .-]?[0-9]){8,14}(?![0-9])"
                # National formats with a trunk 0 that the landline shape does not cover, always
                # written in groups (Australia: 0412 345 678, 02 9876 5432).
                r"|(?<![0-9+])0(?:[1-9][0-9]{2}([ -])[0-9]{3}\1[0-9]{3}|[1-9]([ -])[0-9]{4}\2[0-9]{4})"
                r"(?![0-9]|[ -][0-9])"
            ),
            "Phone number of another country: + and country code (E.164, 9-15 digits, spaces, dots "
            "or dashes), or a national number with a trunk 0 in groups (0412 345 678, 02 9876 "
            "5432); personal information, PIPL art. 4.",
            mask_style=MaskStyle(2, 4),
            min_digits=9,
        ),
        PiiDetector(
            "passport",
            # Mainland E/G/D/S/P + 8 digits or E + letter + 7 digits, Hong Kong H/K + 8 digits,
            # most countries' one or two letters + 6-8 digits; the US, UK and others 8-9 digits.
            re.compile(r"(?<![a-z0-9])(?:[a-z]{1,2}[0-9]{6,8}|[0-9]{8,9})(?![a-z0-9])"),
            "Passport number (mainland E/G + 8 digits or E + letter + 7 digits, one or two letters "
            "+ 6-8 digits, or 8-9 digits), only right after 护照 / passport, since the bare shapes "
            "are common product codes; identity document, sensitive under PIPL art. 28.",
            context=("护照", "護照", "passport", "travel document", "旅行证"),
            mask_style=MaskStyle(1, 3),
            scan=Scan.AFTER_CONTEXT,
            reach=10,
        ),
        PiiDetector(
            "email",
            re.compile(
                r"(?<![a-z0-9._%+-])[a-z0-9_%+-][a-z0-9._%+'-]{0,63}@"
                r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,8}(?:[a-z]{2,63}|xn--[a-z0-9-]{2,59})"
                r"(?![a-z0-9-])"
            ),
            "E-mail address, including internationalised (xn--) domains; personal information, PIPL art. 4.",
            mask_style=MaskStyle(1, 0),
            scan=Scan.AROUND,
            anchor="@",
            lead=64,
            reach=256,
            token="abcdefghijklmnopqrstuvwxyz0123456789._%+'-",
            not_first=re.compile(r"[.']+"),
        ),
        PiiDetector(
            "ipv6",
            re.compile(
                # Eight groups, or fewer with "::": this rules out times (12:30:45) and MAC
                # addresses before the validator is asked.
                r"(?<![0-9a-z.])(?<![0-9a-f]:)(?<!::)(?=[0-9a-f]{0,4}:)"
                r"(?=[0-9a-f:]{0,37}::|(?:[0-9a-f]{1,4}:){7}[0-9a-f])"
                r"[0-9a-f:]{2,39}"
                r"(?:(?<=:)[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?![0-9a-z:]|\.[0-9])"
            ),
            "IPv6 address (validated; loopback and two-group link-local forms are ignored); an "
            "online identifier, personal information under PIPL art. 4 and GDPR recital 30.",
            _ipv6_ok,
            mask_style=MaskStyle(4, 0),
            scan=Scan.AROUND,
            anchor=":",
            lead=39,
            reach=52,
            token="0123456789abcdef:",
            # A single colon in front is a label ("地址：2001:db8::1"), a double one is the address.
            not_first=re.compile(r":(?!:)"),
        ),
        PiiDetector(
            "ipv4",
            re.compile(
                r"(?<![0-9a-z.])[1-9][0-9]{0,2}(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}"
                r"(?![0-9]|\.[0-9])"
            ),
            "IPv4 unicast address with valid octets (not a 3-part version string, not after "
            "'version' / 'v' / 版本, no dates); an online identifier, personal information under "
            "PIPL art. 4 and GDPR recital 30.",
            _ipv4_ok,
            veto=re.compile(r"(?:\bversion|\bver|\bv|版本号?)[ .:=]*$"),
            window=12,
            mask_style=MaskStyle(3, 0),
            anchor=".",
            min_digits=4,
        ),
    )
}

PII_TYPES: tuple[str, ...] = tuple(PII_DETECTORS)
"""Every detector name, in precedence order."""

_PRECEDENCE = {kind: i for i, kind in enumerate(PII_TYPES)}

# Where numeric detectors look: digits with at most two of "+()-. " between them (possessive: a
# run is never re-split), and "x", the resident id check digit, at the end.
_NUMBER_RUN = re.compile(r"[0-9](?:[ ()+.-]{0,2}[0-9])*+x?")


class PiiMatch(NamedTuple):
    """One entity found by :func:`find_pii`: its type, original span and normalised value."""

    type: str
    span: tuple[int, int]
    value: str


def _occurrences(text: str, word: str) -> Iterator[int]:
    at = text.find(word)
    while at >= 0:
        yield at
        at = text.find(word, at + 1)


def _in_numbers(detectors: Sequence[PiiDetector], text: str) -> Iterator[tuple[PiiDetector, int, str]]:
    shortest = min(d.min_digits for d in detectors)
    for run in _NUMBER_RUN.finditer(text):
        lo, hi = run.span()
        # A run is at least as long as its digits: a cheap bound, checked before anything else.
        if hi - lo < shortest:
            continue
        # Country and area codes start with "+" or "(", which a run does not begin with.
        while lo > 0 and text[lo - 1] in "+(" and run.start() - lo < 2:
            lo -= 1
        number = run.group()
        for detector in detectors:
            if len(number) < detector.min_digits or detector.anchor not in number:
                continue
            covered = False
            for m in detector.pattern.finditer(text, lo, hi):
                if value := detector.accepted(text, m.start(), m.group()):
                    yield detector, m.start(), value
                    covered = m.start() == lo and m.start() + len(value) == hi
            if covered:
                # The whole run is one value: any later detector's match in it would overlap,
                # start no earlier and be no longer, and so lose to this one (detectors come in
                # precedence order).
                break


def _around(detector: PiiDetector, text: str) -> Iterator[tuple[PiiDetector, int, str]]:
    done = 0  # text before this is settled: a match already covers it
    tried = -1  # the last start tried: later anchors in the same token lead back to it
    for at in _occurrences(text, detector.anchor):
        if at < done:
            continue
        # The value starts where the run of characters it can contain starts (at most ``lead``
        # back, past what it cannot begin with): one match attempt there is much cheaper than
        # searching a window.
        start, floor = at, max(done, at - detector.lead)
        while start > floor and text[start - 1] in detector.token:
            start -= 1
        if detector.not_first is not None and (skip := detector.not_first.match(text, start, at)):
            start = skip.end()
        if start == tried:
            continue
        tried = start
        m = detector.pattern.match(text, start, min(len(text), at + detector.reach))
        if m is not None and (value := detector.accepted(text, start, m.group())):
            done = start + len(value)
            yield detector, start, value


def _after_context(detector: PiiDetector, text: str) -> Iterator[tuple[PiiDetector, int, str]]:
    ends = sorted(at + len(word) for word in detector.context for at in _occurrences(text, word))
    lo = hi = 0
    for end in [*ends, len(text) + detector.window + detector.reach + 1]:
        if end > hi:  # windows that overlap are scanned as one
            for m in detector.pattern.finditer(text, lo, hi):
                if value := detector.accepted(text, m.start(), m.group()):
                    yield detector, m.start(), value
            lo = end
        hi = min(len(text), end + detector.window + detector.reach)


def find_pii(normalized: NormalizedText, types: Sequence[str] | None = None) -> list[PiiMatch]:
    """Entities of the given types (``None``: all) in text order, never overlapping.

    Where two matches overlap, the earlier-starting one wins, then the longer, then the one whose
    detector comes first in :data:`PII_DETECTORS` (checksummed formats before plain shapes), so
    a span gets exactly one type: an identity number is not also a phone number, and a card is
    either ``bank_card`` or ``credit_card`` by its prefix.
    """
    text = normalized.text
    detectors = [PII_DETECTORS[kind] for kind in (PII_TYPES if types is None else types)]
    hits: list[Iterator[tuple[PiiDetector, int, str]]] = []
    numeric = sorted((d for d in detectors if d.scan is Scan.NUMBERS), key=lambda d: _PRECEDENCE[d.type])
    if numeric:
        hits.append(_in_numbers(numeric, text))
    for detector in detectors:
        if detector.scan is Scan.AROUND:
            hits.append(_around(detector, text))
        elif detector.scan is Scan.AFTER_CONTEXT:
            hits.append(_after_context(detector, text))
    found = sorted(
        {
            (start, -(start + len(value)), _PRECEDENCE[d.type], d.type)
            for hit in hits
            for d, start, value in hit
        }
    )

    out: list[PiiMatch] = []
    last_end = 0
    for start, neg_end, _, kind in found:
        if start < last_end:
            continue
        out.append(PiiMatch(kind, normalized.original_span(start, -neg_end), text[start:-neg_end]))
        last_end = -neg_end
    return out


# --------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------

_DROPPED = frozenset({"Cc", "Cf", "Mn", "Me"})
_COUNTRY_CODE = {
    "cn_mobile": re.compile(r"\(?(?:\+|00)?86\)?[ -]?(?=1)"),
    "cn_landline": re.compile(r"(?:\+|00)86[ -]?"),
    "us_phone": re.compile(r"\+?1[ .-]?(?=[(0-9])"),
    "intl_phone": re.compile(r"\+[0-9]{1,3}[ .-]|\+"),
}


def _clean(original: str) -> str:
    """The original spelling of a value with width folded and invisible characters removed, so a
    mask or a restored value never carries zero-width characters."""
    return "".join(
        ch for ch in unicodedata.normalize("NFKC", original) if unicodedata.category(ch) not in _DROPPED
    )


def _mask_chars(value: str, style: MaskStyle) -> str:
    positions = [i for i, ch in enumerate(value) if ch.isalnum()]
    keep_start, keep_end = style.keep_start, style.keep_end
    if keep_start + keep_end >= len(positions):
        keep_start = keep_end = 0
    hidden = set(positions[keep_start : len(positions) - keep_end])
    return "".join(style.char if i in hidden else ch for i, ch in enumerate(value))


def mask_value(kind: str, value: str, style: MaskStyle | None = None) -> str:
    """Masks one value of type ``kind`` (``13800138000`` -> ``138****8000``); ``style`` defaults
    to the detector's."""
    style = style or PII_DETECTORS[kind].mask_style
    value = _clean(value)
    if kind == "email":
        local, _, domain = value.rpartition("@")
        return f"{_mask_chars(local, style)}@{domain}"
    prefix_re = _COUNTRY_CODE.get(kind)
    prefix = ""
    if prefix_re is not None and (m := prefix_re.match(value)) is not None:
        prefix, value = m.group(), value[m.end() :]
    return prefix + _mask_chars(value, style)


# --------------------------------------------------------------------------------------------
# Placeholders and the map back
# --------------------------------------------------------------------------------------------


# Placeholders as a model repeats them: our exact form, and the same with another case or spaces
# inside the brackets. Bounded, so a long run of "[" cannot make restore quadratic.
_PLACEHOLDER = re.compile(r"\[ ?([A-Za-z][A-Za-z0-9_]{0,40}_[0-9]{1,6}) ?\]")
# What can still grow into a placeholder: held back by the streaming restorer, anything else is
# released at once.
_PLACEHOLDER_PREFIX = re.compile(r"\[ ?(?:[A-Za-z][A-Za-z0-9_]{0,47} ?)?")


def _canonical(kind: str, normalized_value: str) -> str:
    """The identity of a value for "same value, same placeholder": separators and the country
    code do not make a different number ("+86 138 0013 8000" is "13800138000")."""
    if kind == "email":
        return normalized_value
    digits = re.sub(r"[^0-9a-z]", "", normalized_value)
    if kind == "cn_mobile":
        return digits[-11:]
    if kind == "cn_landline":
        for prefix in ("0086", "86"):
            if digits.startswith(prefix):
                digits = digits.removeprefix(prefix)
                return digits if digits.startswith("0") else "0" + digits
    if kind == "us_phone" and len(digits) == 11:
        return digits[1:]
    return digits


@dataclass(frozen=True, slots=True, repr=False)
class RedactionMap:
    """Placeholder -> original value, for one request: what :func:`restore` needs.

    Immutable; :func:`pseudonymize` returns an extended copy, so several texts of one conversation
    can share a numbering (pass the previous map back in). It holds personal data: keep it in
    memory for the request only, never log, cache or send it on. ``repr`` shows only the count.
    """

    originals: Mapping[str, str] = field(default_factory=dict)
    """Placeholder (``[CN_MOBILE_1]``) -> the value as the caller wrote it (width folded)."""
    keys: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(type, canonical value) -> placeholder, so the same value gets the same placeholder."""

    def __post_init__(self) -> None:
        # Read-only copies: a caller's dict changed later must not change a map in use.
        object.__setattr__(self, "originals", MappingProxyType(dict(self.originals)))
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))

    def __repr__(self) -> str:
        return f"RedactionMap({len(self.originals)} placeholders)"

    def __len__(self) -> int:
        return len(self.originals)

    def __contains__(self, placeholder: object) -> bool:
        return placeholder in self.originals

    def get(self, placeholder: str) -> str | None:
        """The original value behind ``placeholder``, or ``None`` when it is not one of ours."""
        return self.originals.get(placeholder)

    @classmethod
    def from_entities(cls, text: str, entities: Iterable[PiiEntity]) -> RedactionMap:
        """Rebuilds the map from the original ``text`` and the entities a redaction reported
        (spans and placeholders), e.g. from a ``Redact`` or ``CheckInput`` response: the values
        themselves never have to travel between services."""
        originals: dict[str, str] = {}
        keys: dict[tuple[str, str], str] = {}
        for entity in entities:
            original = text[entity.span[0] : entity.span[1]]
            originals.setdefault(entity.placeholder, _clean(original))
            keys.setdefault(
                (entity.type, _canonical(entity.type, normalize(original).text)), entity.placeholder
            )
        return cls(originals, keys)


@dataclass(frozen=True, slots=True, repr=False)
class Redaction:
    """The result of :func:`pseudonymize` or :func:`mask`: redacted text, the entities in text
    order (``placeholder`` is the replacement: a placeholder or a mask) and, for placeholders, the
    map back. ``repr`` omits the map."""

    text: str
    entities: tuple[PiiEntity, ...]
    mapping: RedactionMap = field(default_factory=RedactionMap)

    def __repr__(self) -> str:
        return f"Redaction({len(self.entities)} entities, {self.mapping!r})"


def _replace(text: str, matches: Iterable[PiiMatch], replacement: Callable[[PiiMatch], str]) -> Redaction:
    entities: list[PiiEntity] = []
    parts: list[str] = []
    last = 0
    for match in matches:
        start, end = match.span
        new = replacement(match)
        parts.append(text[last:start])
        parts.append(new)
        last = end
        entities.append(PiiEntity(match.type, match.span, new))
    parts.append(text[last:])
    return Redaction("".join(parts), tuple(entities))


def pseudonymize(
    text: str,
    types: Sequence[str] | None = None,
    normalized: NormalizedText | None = None,
    mapping: RedactionMap | None = None,
) -> Redaction:
    """Replaces each entity with ``[TYPE_n]``; the same value gets the same placeholder.

    ``normalized`` is ``normalize(text)`` when the caller has it already. ``mapping`` continues a
    previous redaction of the same conversation: its values keep their placeholders and new ones
    are numbered after them. A placeholder that already occurs literally in ``text`` is skipped,
    so :func:`restore` never turns the caller's own ``[EMAIL_1]`` into somebody's address.
    """
    mapping = mapping or RedactionMap()
    originals = dict(mapping.originals)
    keys = dict(mapping.keys)
    # Numbers already used per type, by us or literally by the caller (in any case, as restore
    # reads them): found once, so numbering stays linear in the number of entities.
    taken = set(originals) | {f"[{m.group(1).upper()}]" for m in _PLACEHOLDER.finditer(text)}
    last: dict[str, int] = {}

    def placeholder(match: PiiMatch) -> str:
        key = (match.type, _canonical(match.type, match.value))
        known = keys.get(key)
        if known is not None:
            return known
        prefix = match.type.upper()
        n = last.get(prefix, 0) + 1
        while (new := f"[{prefix}_{n}]") in taken:
            n += 1
        last[prefix] = n
        taken.add(new)
        keys[key] = new
        originals[new] = _clean(text[match.span[0] : match.span[1]])
        return new

    result = _replace(text, find_pii(normalized or normalize(text), types), placeholder)
    return Redaction(result.text, result.entities, RedactionMap(originals, keys))


def mask(
    text: str,
    types: Sequence[str] | None = None,
    normalized: NormalizedText | None = None,
    styles: Mapping[str, MaskStyle] | None = None,
) -> Redaction:
    """Masks each entity in place (``138****8000``, ``j***@example.com``); irreversible, so the
    returned map is empty. ``styles`` overrides the detectors' :class:`MaskStyle` per type."""
    styles = styles or {}
    return _replace(
        text,
        find_pii(normalized or normalize(text), types),
        lambda m: mask_value(m.type, text[m.span[0] : m.span[1]], styles.get(m.type)),
    )


def redact(
    text: str, types: Sequence[str], normalized: NormalizedText | None = None
) -> tuple[str, tuple[PiiEntity, ...]]:
    """Replaces each entity with ``[TYPE_n]``; the same value gets the same placeholder.

    :func:`pseudonymize` without the map, for callers that only need the redacted text.
    """
    result = pseudonymize(text, types, normalized)
    return result.text, result.entities


def restore(text: str, mapping: RedactionMap) -> str:
    """Puts the original values back where ``text`` (typically the model's answer) contains
    placeholders of ``mapping``; a placeholder may appear any number of times, and bracketed
    tokens that are not in the map (the model invented ``[EMAIL_9]``) stay as they are."""
    if not mapping.originals or "[" not in text:
        return text

    def back(m: re.Match[str]) -> str:
        original = mapping.originals.get(f"[{m.group(1).upper()}]")
        return m.group() if original is None else original

    return _PLACEHOLDER.sub(back, text)


class PlaceholderRestorer:
    """:func:`restore` over a streamed answer: a placeholder split across deltas
    (``"[CN_MOB"`` + ``"ILE_1]"``) is held back until it is complete. Only a tail that can still
    become a placeholder is held (at most its length), so other text is never delayed."""

    def __init__(self, mapping: RedactionMap) -> None:
        self._mapping = mapping
        self._held = ""

    def feed(self, delta: str) -> str:
        """The next piece of the answer; returns the text that can be shown now (maybe empty)."""
        if not self._mapping.originals:
            return delta
        buffer = self._held + delta
        cut = len(buffer)
        opening = buffer.rfind("[")
        if opening >= 0 and _PLACEHOLDER_PREFIX.fullmatch(buffer, opening) is not None:
            cut = opening
        self._held = buffer[cut:]
        return restore(buffer[:cut], self._mapping)

    def finish(self) -> str:
        """The answer is complete: whatever is still held, restored."""
        held, self._held = self._held, ""
        return restore(held, self._mapping)
