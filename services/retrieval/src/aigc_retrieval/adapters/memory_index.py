"""In-process inverted index with BM25: the single-machine default and what tests run against.

Everything lives in this process's memory and is lost on restart; one replica only.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aigc_retrieval.bm25 import Bm25
from aigc_retrieval.types import ChunkedDocument, KnowledgeBaseInfo, Passage

_ChunkKey = tuple[str, int]  # (document id, chunk index)


@dataclass(frozen=True, slots=True)
class _StoredChunk:
    text: str
    length: int  # terms, for BM25 length normalisation
    terms: frozenset[str]  # which postings to clean when the chunk goes
    title: str
    metadata: Mapping[str, str]


class _KnowledgeBase:
    """One tenant's knowledge base: chunks, postings (term -> chunk -> frequency) and totals."""

    def __init__(self) -> None:
        self.documents: dict[str, list[_ChunkKey]] = {}
        self.chunks: dict[_ChunkKey, _StoredChunk] = {}
        self.postings: dict[str, dict[_ChunkKey, int]] = {}
        self.total_length = 0

    def add(self, doc: ChunkedDocument) -> None:
        document = doc.document
        self.remove(document.document_id)
        keys = []
        for chunk in doc.chunks:
            key = (document.document_id, chunk.index)
            keys.append(key)
            frequencies = Counter(chunk.terms)
            self.chunks[key] = _StoredChunk(
                chunk.text, len(chunk.terms), frozenset(frequencies), document.title, document.metadata
            )
            self.total_length += len(chunk.terms)
            for term, tf in frequencies.items():
                self.postings.setdefault(term, {})[key] = tf
        self.documents[document.document_id] = keys

    def remove(self, document_id: str) -> bool:
        keys = self.documents.pop(document_id, None)
        if keys is None:
            return False
        for key in keys:
            chunk = self.chunks.pop(key)
            self.total_length -= chunk.length
            for term in chunk.terms:
                posting = self.postings[term]
                del posting[key]
                if not posting:
                    del self.postings[term]
        return True

    def search(self, terms: Sequence[str], top_k: int, bm25: Bm25) -> list[Passage]:
        n = len(self.chunks)
        if not n:
            return []
        average = self.total_length / n
        scores: dict[_ChunkKey, float] = {}
        for term in set(terms):
            posting = self.postings.get(term)
            if not posting:
                continue
            idf = bm25.idf(n, len(posting))
            for key, tf in posting.items():
                length = self.chunks[key].length
                scores[key] = scores.get(key, 0.0) + bm25.term_score(idf, tf, length, average)
        # Ties break by document id and chunk position, so equal scores come back in a stable order.
        best = heapq.nsmallest(top_k, scores.items(), key=lambda item: (-item[1], item[0]))
        out = []
        for (document_id, index), score in best:
            chunk = self.chunks[(document_id, index)]
            out.append(Passage(document_id, index, chunk.text, score, chunk.title, chunk.metadata))
        return out


class MemoryIndex:
    """A :class:`~aigc_retrieval.ports.DocumentIndex` in a dictionary keyed by (tenant, base)."""

    def __init__(self, bm25: Bm25 | None = None) -> None:
        self._bm25 = bm25 or Bm25()
        self._bases: dict[tuple[str, str], _KnowledgeBase] = {}

    async def replace_documents(
        self, tenant_id: str, knowledge_base: str, documents: Sequence[ChunkedDocument]
    ) -> None:
        # No await inside: the whole batch lands before any other coroutine can search.
        base = self._bases.setdefault((tenant_id, knowledge_base), _KnowledgeBase())
        for doc in documents:
            base.add(doc)

    async def delete_documents(self, tenant_id: str, knowledge_base: str, document_ids: Sequence[str]) -> int:
        base = self._bases.get((tenant_id, knowledge_base))
        if base is None:
            return 0
        return sum(base.remove(document_id) for document_id in set(document_ids))

    async def search(
        self, tenant_id: str, knowledge_base: str, terms: Sequence[str], top_k: int
    ) -> list[Passage]:
        base = self._bases.get((tenant_id, knowledge_base))
        return base.search(terms, top_k, self._bm25) if base else []

    async def has_knowledge_base(self, tenant_id: str, knowledge_base: str) -> bool:
        return (tenant_id, knowledge_base) in self._bases

    async def knowledge_bases(self, tenant_id: str) -> list[KnowledgeBaseInfo]:
        return sorted(
            (
                KnowledgeBaseInfo(name, len(base.documents), len(base.chunks))
                for (tenant, name), base in self._bases.items()
                if tenant == tenant_id
            ),
            key=lambda info: info.name,
        )

    async def close(self) -> None:
        self._bases.clear()
