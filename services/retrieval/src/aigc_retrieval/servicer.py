"""gRPC servicer of the retrieval service: convert, delegate, nothing else."""

from __future__ import annotations

import grpc

from aigc.retrieval.v1 import retrieval_pb2 as pb
from aigc.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from aigc_common.server import ServiceBinding
from aigc_retrieval.convert import documents_from_pb, knowledge_base_to_pb, passage_to_pb
from aigc_retrieval.core import Retriever


class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    """Serves ``aigc.retrieval.v1.RetrievalService`` from a :class:`Retriever`."""

    def __init__(self, core: Retriever) -> None:
        self._core = core

    async def Ingest(self, request: pb.IngestRequest, context: grpc.aio.ServicerContext) -> pb.IngestResponse:
        result = await self._core.ingest(
            request.tenant_id, request.knowledge_base, documents_from_pb(request.documents)
        )
        return pb.IngestResponse(documents=result.documents, chunks=result.chunks)

    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        passages = await self._core.search(
            request.tenant_id, request.knowledge_base, request.query, request.top_k
        )
        return pb.SearchResponse(passages=[passage_to_pb(p) for p in passages])

    async def DeleteDocuments(
        self, request: pb.DeleteDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteDocumentsResponse:
        deleted = await self._core.delete_documents(
            request.tenant_id, request.knowledge_base, list(request.document_ids)
        )
        return pb.DeleteDocumentsResponse(deleted=deleted)

    async def ListKnowledgeBases(
        self, request: pb.ListKnowledgeBasesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListKnowledgeBasesResponse:
        bases = await self._core.list_knowledge_bases(request.tenant_id)
        return pb.ListKnowledgeBasesResponse(knowledge_bases=[knowledge_base_to_pb(b) for b in bases])


def binding(core: Retriever) -> ServiceBinding:
    servicer = RetrievalServicer(core)
    return ServiceBinding(
        pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name,
        lambda server: pb_grpc.add_RetrievalServiceServicer_to_server(servicer, server),
    )
