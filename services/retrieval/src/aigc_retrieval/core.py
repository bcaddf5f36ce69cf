"""Retrieval product logic: validate, chunk, tokenise, index and search per tenant knowledge base.
No gRPC here.

A knowledge base belongs to one tenant. Naming a base the tenant does not have is NOT_FOUND
whether or not another tenant has one of that name, so names never leak across tenants.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from aigc_common.errors import InvalidArgument, NotFound
from aigc_retrieval.metrics import RetrievalMetrics
from aigc_retrieval.ports import DocumentIndex
from aigc_retrieval.text import chunk_text, tokenize
from aigc_retrieval.types import (
    Chunk,
    ChunkedDocument,
    Document,
    IngestResult,
    KnowledgeBaseInfo,
    Passage,
)

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 128


def _require_name(value: str, field: str) -> str:
    if not value.strip():
        raise InvalidArgument("must not be empty", field=field)
    if len(value) > MAX_NAME_CHARS:
        raise InvalidArgument(f"at most {MAX_NAME_CHARS} characters", field=field)
    if not value.isprintable():
        raise InvalidArgument("must not contain control characters", field=field)
    return value


class Retriever:
    """Knowledge bases of chunked documents per tenant, searched by relevance."""

    def __init__(
        self,
        index: DocumentIndex,
        metrics: RetrievalMetrics,
        *,
        chunk_chars: int = 400,
        chunk_overlap: int = 80,
        default_top_k: int = 5,
        max_top_k: int = 50,
        max_document_chars: int = 1_000_000,
    ) -> None:
        if not 0 <= chunk_overlap < chunk_chars:
            raise ValueError(f"need 0 <= chunk_overlap < chunk_chars, got {chunk_overlap} and {chunk_chars}")
        self._index = index
        self._metrics = metrics
        self._chunk_chars = chunk_chars
        self._chunk_overlap = chunk_overlap
        self._default_top_k = default_top_k
        self._max_top_k = max_top_k
        self._max_document_chars = max_document_chars

    def _chunk(self, document: Document) -> ChunkedDocument:
        chunks = []
        title_terms = tuple(tokenize(document.title))
        for i, text in enumerate(chunk_text(document.text, self._chunk_chars, self._chunk_overlap)):
            # The title is indexed with every chunk: "退货政策" should find the policy's third paragraph.
            chunks.append(Chunk(i, text, title_terms + tuple(tokenize(text))))
        return ChunkedDocument(document, tuple(chunks))

    async def ingest(
        self, tenant_id: str, knowledge_base: str, documents: Sequence[Document]
    ) -> IngestResult:
        """Chunks and indexes documents, replacing ones with the same id; creates the base.

        Every document is validated before any is indexed, so a bad one leaves nothing half-written.
        """
        _require_name(tenant_id, "tenant_id")
        _require_name(knowledge_base, "knowledge_base")
        if not documents:
            raise InvalidArgument("at least one document is required", field="documents")
        seen: set[str] = set()
        for i, doc in enumerate(documents):
            _require_name(doc.document_id, f"documents[{i}].document_id")
            if doc.document_id in seen:
                raise InvalidArgument("appears twice in this request", field=f"documents[{i}].document_id")
            seen.add(doc.document_id)
            if not doc.text.strip():
                raise InvalidArgument("must not be empty", field=f"documents[{i}].text")
            if len(doc.text) > self._max_document_chars:
                raise InvalidArgument(
                    f"is {len(doc.text)} characters; at most {self._max_document_chars}",
                    field=f"documents[{i}].text",
                )
        chunked = [self._chunk(doc) for doc in documents]
        await self._index.replace_documents(tenant_id, knowledge_base, chunked)
        chunks = sum(len(doc.chunks) for doc in chunked)
        self._metrics.chunks_ingested.inc(chunks)
        log.info(
            "ingested",
            extra={
                "fields": {
                    "tenant_id": tenant_id,
                    "knowledge_base": knowledge_base,
                    "documents": len(chunked),
                    "chunks": chunks,
                }
            },
        )
        return IngestResult(documents=len(chunked), chunks=chunks)

    async def _require_base(self, tenant_id: str, knowledge_base: str) -> None:
        _require_name(tenant_id, "tenant_id")
        _require_name(knowledge_base, "knowledge_base")
        if not await self._index.has_knowledge_base(tenant_id, knowledge_base):
            raise NotFound(f"no knowledge base {knowledge_base!r} for this tenant", field="knowledge_base")

    async def search(self, tenant_id: str, knowledge_base: str, query: str, top_k: int = 0) -> list[Passage]:
        """The passages most relevant to ``query``, best first; ``top_k`` 0 means the default."""
        if not query.strip():
            raise InvalidArgument("must not be empty", field="query")
        if top_k < 0 or top_k > self._max_top_k:
            raise InvalidArgument(f"must be between 0 and {self._max_top_k}, got {top_k}", field="top_k")
        await self._require_base(tenant_id, knowledge_base)
        start = time.perf_counter()
        terms = tokenize(query)
        passages = (
            await self._index.search(tenant_id, knowledge_base, terms, top_k or self._default_top_k)
            if terms
            else []  # a query of punctuation only matches nothing
        )
        self._metrics.search_duration.observe(time.perf_counter() - start)
        return passages

    async def delete_documents(self, tenant_id: str, knowledge_base: str, document_ids: Sequence[str]) -> int:
        """Removes documents and their chunks; unknown ids are ignored. Returns how many existed."""
        await self._require_base(tenant_id, knowledge_base)
        return await self._index.delete_documents(tenant_id, knowledge_base, document_ids)

    async def list_knowledge_bases(self, tenant_id: str) -> list[KnowledgeBaseInfo]:
        """The tenant's knowledge bases, sorted by name."""
        _require_name(tenant_id, "tenant_id")
        return await self._index.knowledge_bases(tenant_id)

    async def close(self) -> None:
        await self._index.close()
