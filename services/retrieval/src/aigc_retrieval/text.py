"""Chunking and tokenisation: how documents become passages and passages become terms.

Tokens are lower-case words for Latin text and overlapping character bigrams for CJK text,
which has no spaces between words; bigrams find Chinese phrases without a segmenter (a later
issue adds jieba for BM25 and keeps bigrams as the fallback).
"""

from __future__ import annotations

import re
import unicodedata

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ebef"
# CJK runs first; words are letters and digits of any other script.
_TOKEN = re.compile(rf"(?P<cjk>[{_CJK}]+)|[^\W_{_CJK}]+")
# Where a piece of text may end: after sentence punctuation (with closing quotes), after a
# period followed by whitespace (not inside "3.5" or "e.g"), or at a line break.
_PIECE_END = re.compile(r"[。！？!?；;]+[”’\"'）)】」』]*|\.+(?=\s)|\n+")
# Where an overlap may start, so a chunk does not open in the middle of a word.
_SOFT_BREAK = re.compile(r"[\s。！？!?；;，,、：:]")


def tokenize(text: str) -> list[str]:
    """Index terms of ``text``: lower-case words, and bigrams of CJK runs (a lone CJK character
    is kept as a unigram, so one-character queries still find it)."""
    terms: list[str] = []
    for m in _TOKEN.finditer(unicodedata.normalize("NFKC", text).lower()):
        run = m.group("cjk")
        if run is None:
            terms.append(m.group())
        elif len(run) == 1:
            terms.append(run)
        else:
            terms.extend(run[i : i + 2] for i in range(len(run) - 1))
    return terms


def _pieces(text: str, limit: int) -> list[str]:
    """Sentences and lines of ``text``, each at most ``limit`` characters, covering all of it."""
    pieces: list[str] = []
    start = 0
    for m in _PIECE_END.finditer(text):
        pieces.append(text[start : m.end()])
        start = m.end()
    pieces.append(text[start:])
    out: list[str] = []
    for piece in pieces:
        # A sentence longer than a chunk is cut hard; the overlap keeps its parts connected.
        out.extend(piece[i : i + limit] for i in range(0, len(piece), limit))
    return out


def _overlap_tail(chunk: str, overlap: int) -> str:
    if overlap <= 0:
        return ""
    tail = chunk[-overlap:]
    m = _SOFT_BREAK.search(tail)
    if m and m.end() < len(tail):
        tail = tail[m.end() :]
    return tail


def chunk_text(text: str, max_chars: int, overlap: int) -> list[str]:
    """Splits text into chunks of at most ``max_chars`` characters along sentence and paragraph
    ends; each chunk after the first repeats up to ``overlap`` characters of the one before, so a
    fact cut at a boundary is still whole in one of them. Requires ``0 <= overlap < max_chars``."""
    if not 0 <= overlap < max_chars:
        raise ValueError(f"need 0 <= overlap < max_chars, got overlap={overlap}, max_chars={max_chars}")
    chunks: list[str] = []
    current = ""
    # Pieces leave room for the carried overlap, so a chunk never exceeds max_chars.
    for piece in _pieces(text, max_chars - overlap):
        if current.strip() and len(current) + len(piece) > max_chars:
            chunks.append(current)
            current = _overlap_tail(current, overlap)
        current += piece
    chunks.append(current)
    return [c.strip() for c in chunks if c.strip()]
