"""What the retrieval core needs from an index.

A later issue adds a vector index and an embedder beside this lexical one; the core combines
their results, so each port stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aigc_retrieval.types import ChunkedDocument, KnowledgeBaseInfo, Passage


class DocumentIndex(Protocol):
    """Chunks indexed by term per (tenant, knowledge base), searched with a lexical score.

    Knowledge bases are keyed by tenant: an index never returns one tenant's chunks or names to
    another, whatever the knowledge base is called.
    """

    async def replace_documents(
        self, tenant_id: str, knowledge_base: str, documents: Sequence[ChunkedDocument]
    ) -> None:
        """Adds the documents, replacing any with the same id, all or nothing; creates the base."""
        ...

    async def delete_documents(self, tenant_id: str, knowledge_base: str, document_ids: Sequence[str]) -> int:
        """Removes documents and their chunks; returns how many existed."""
        ...

    async def search(
        self, tenant_id: str, knowledge_base: str, terms: Sequence[str], top_k: int
    ) -> list[Passage]:
        """The ``top_k`` best chunks for the query terms, best first; empty when nothing matches."""
        ...

    async def has_knowledge_base(self, tenant_id: str, knowledge_base: str) -> bool: ...

    async def knowledge_bases(self, tenant_id: str) -> list[KnowledgeBaseInfo]:
        """The tenant's knowledge bases, sorted by name."""
        ...

    async def close(self) -> None: ...
