"""Okapi BM25, the lexical relevance score: rare terms count more, repeated terms saturate, and
long chunks do not win just by being long."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bm25:
    """BM25 with the usual parameters: ``k1`` (term-frequency saturation), ``b`` (length norm)."""

    k1: float = 1.2
    b: float = 0.75

    @staticmethod
    def idf(chunks: int, containing: int) -> float:
        """Inverse document frequency; the +1 keeps it positive for terms in most chunks."""
        return math.log(1.0 + (chunks - containing + 0.5) / (containing + 0.5))

    def term_score(self, idf: float, tf: int, length: int, average_length: float) -> float:
        """Contribution of one query term occurring ``tf`` times in a chunk of ``length`` terms."""
        norm = self.k1 * (1.0 - self.b + self.b * length / average_length) if average_length else self.k1
        return idf * tf * (self.k1 + 1.0) / (tf + norm)
