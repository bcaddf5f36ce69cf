"""Domain types of the retrieval service (no protobuf here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Document:
    """A document to index; ``document_id`` is unique within its knowledge base."""

    document_id: str
    text: str
    title: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One passage of a document and the terms it is indexed under (title terms included)."""

    index: int
    text: str
    terms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChunkedDocument:
    """A document with its chunks, ready for an index."""

    document: Document
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True, slots=True)
class Passage:
    """A chunk found by a search; callers also show it as a citation."""

    document_id: str
    chunk_index: int
    text: str
    score: float
    title: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KnowledgeBaseInfo:
    """A tenant's knowledge base and what it holds."""

    name: str
    documents: int
    chunks: int


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What an ingest indexed."""

    documents: int
    chunks: int
