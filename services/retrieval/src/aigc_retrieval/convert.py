"""Retrieval protos <-> domain objects; pure functions."""

from __future__ import annotations

from collections.abc import Iterable

from aigc.retrieval.v1 import retrieval_pb2 as pb
from aigc_retrieval.types import Document, KnowledgeBaseInfo, Passage


def documents_from_pb(documents: Iterable[pb.Document]) -> tuple[Document, ...]:
    return tuple(
        Document(document_id=d.document_id, text=d.text, title=d.title, metadata=dict(d.metadata))
        for d in documents
    )


def passage_to_pb(passage: Passage) -> pb.Passage:
    return pb.Passage(
        document_id=passage.document_id,
        chunk_index=passage.chunk_index,
        text=passage.text,
        score=passage.score,
        title=passage.title,
        metadata=dict(passage.metadata),
    )


def knowledge_base_to_pb(info: KnowledgeBaseInfo) -> pb.KnowledgeBase:
    return pb.KnowledgeBase(name=info.name, documents=info.documents, chunks=info.chunks)
