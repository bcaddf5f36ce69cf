"""Tasks about quoted text: "is this comment abusive: “……”", "translate this complaint: "……"".

Moderation, labelling, translation and polite rewriting of what someone else wrote are everyday
business work, and the quoted text is often exactly what the rule packs look for. A policy may
treat hits that lie wholly inside the quotes of such a task more leniently
(:class:`aigc_safety.policy.QuotedSpec`). This module only finds the quotes and decides whether
the words around them ask for an analysis; the policy decides what that changes.

A request to produce more of the quoted thing ("续写", "write more like", "make it meaner") is not
an analysis, nor is asking whether it is true ("is it true that “……”": an inquiry with an unsafe
opinion), nor a text without a task word outside its quotes, nor one with more than
:data:`MAX_FRAME_CHARS` around them.
"""

from __future__ import annotations

import re

MAX_FRAME_CHARS = 300
"""Longest text around the quotes that is read as a task about them: a moderation or translation
request is short, and a long text with quotes in it (a role-play script, a jailbreak) is judged
whole. It also bounds the cost of the checks below, which run on every flagged text with quotes."""

# Opening and closing quote pairs: Chinese and English curly quotes, corner brackets, straight
# double quotes (and their full-width form, which NFKC would turn into one anyway).
_QUOTE = re.compile(r"“([^“”]{2,})”|「([^「」]{2,})」|『([^『』]{2,})』|\"([^\"]{2,})\"|＂([^＂]{2,})＂")

# Words of the text around the quotes that ask about the quoted text as material: moderate,
# label or classify it, translate, summarise or politely rewrite it, or answer its writer.
_ANALYSIS = re.compile(
    r"判断|审核|审查|检测|识别|鉴定|分类|归类|标注|打标|标签|违规|违反|不当|冒犯|辱骂|骂人|脏话|攻击性|"
    r"人身攻击|歧视|侮辱|有害|翻译|译成|译为|礼貌|委婉|文明|润色|总结|概括|摘要|"
    r"怎么回复|如何回复|怎么回应|如何回应|"
    r"\b(?:classif(?:y|ies|ication)|label|moderat(?:e|ion|or)|flag|detect|rate|score|toxic(?:ity)?|"
    r"hateful|offensive|abusive|insulting|harassment|translat(?:e|ion)|rewrite|rephrase|reword|"
    r"polite(?:ly)?|summari[sz]e|summary|respond to|reply to|violat(?:e|es|ion))\b",
    re.IGNORECASE,
)
# Words that ask for more of it, or for worse.
_GENERATION = re.compile(
    r"续写|扩写|仿写|模仿|照着|多写|再写|写几|生成|类似|更多|更狠|更难听|更恶毒|更刻薄|加强|升级|"
    r"\b(?:continue|more like|similar|generate|write (?:more|another|some|a few)|in the style|imitate|"
    r"mimic|meaner|harsher|nastier|more (?:insulting|offensive|hateful|brutal|vicious|aggressive)|"
    r"expand|amplify|elaborate)\b",
    re.IGNORECASE,
)
# Words that ask whether it is true or for agreement with it: an inquiry with an unsafe opinion
# ("is it true that “……”?"), not moderation.
_ENDORSE = re.compile(
    r"对不对|对吗|正确|是真的|真的吗|有道理|合理|认同|同意|赞同|事实|为什么|证明|支持|"
    r"\b(?:true|truth|correct|agree|right|accurate|fair|valid|justified|reasonable|why|prove|"
    r"support|evidence|explain)\b",
    re.IGNORECASE,
)


def quoted_task_spans(text: str) -> tuple[tuple[int, int], ...]:
    """The spans (in ``text``) of the quoted passages when the text around them asks for an
    analysis of them; ``()`` otherwise (no quotes, no task word, or a request for more)."""
    spans = tuple(
        (match.start(group), match.end(group))
        for match in _QUOTE.finditer(text)
        for group in range(1, 6)
        if match.start(group) >= 0
    )
    if not spans:
        return ()
    frame = frame_text(text, spans)
    if len(frame) > MAX_FRAME_CHARS:
        return ()
    if _GENERATION.search(frame) or _ENDORSE.search(frame) or not _ANALYSIS.search(frame):
        return ()
    return spans


def frame_text(text: str, spans: tuple[tuple[int, int], ...]) -> str:
    """``text`` with the quoted passages emptied: what the writer asks, without what they quote."""
    parts, pos = [], 0
    for start, end in spans:
        parts.append(text[pos:start])
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def inside(span: tuple[int, int], spans: tuple[tuple[int, int], ...]) -> bool:
    """Whether ``span`` lies wholly inside one of ``spans``."""
    return any(start <= span[0] and span[1] <= end for start, end in spans)
