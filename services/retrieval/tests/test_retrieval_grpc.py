"""The real retrieval servicer behind the real server bootstrap, called over gRPC on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from aigc.retrieval.v1 import retrieval_pb2 as pb
from aigc.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from aigc_common.metrics import RpcMetrics
from aigc_common.server import GrpcServer
from aigc_common.settings import GrpcSettings
from aigc_retrieval.adapters.memory_index import MemoryIndex
from aigc_retrieval.core import Retriever
from aigc_retrieval.metrics import RetrievalMetrics
from aigc_retrieval.servicer import binding


@pytest.fixture
async def stub() -> AsyncIterator[pb_grpc.RetrievalServiceStub]:
    core = Retriever(MemoryIndex(), RetrievalMetrics(CollectorRegistry()))
    server = GrpcServer("retrieval", [binding(core)], GrpcSettings(port=0), RpcMetrics(CollectorRegistry()))
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield pb_grpc.RetrievalServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(0)


async def test_ingest_search_list_delete(stub: pb_grpc.RetrievalServiceStub) -> None:
    ingested = await stub.Ingest(
        pb.IngestRequest(
            tenant_id="t1",
            knowledge_base="help",
            documents=[
                pb.Document(
                    document_id="returns", title="退货政策", text="七天无理由退货。", metadata={"lang": "zh"}
                ),
                pb.Document(document_id="shipping", title="Shipping", text="Orders ship within 48 hours."),
            ],
        )
    )
    assert (ingested.documents, ingested.chunks) == (2, 2)

    found = await stub.Search(pb.SearchRequest(tenant_id="t1", knowledge_base="help", query="可以退货吗"))
    assert found.passages[0].document_id == "returns"
    assert found.passages[0].metadata["lang"] == "zh"
    assert found.passages[0].score > 0

    listed = await stub.ListKnowledgeBases(pb.ListKnowledgeBasesRequest(tenant_id="t1"))
    assert [(kb.name, kb.documents, kb.chunks) for kb in listed.knowledge_bases] == [("help", 2, 2)]

    deleted = await stub.DeleteDocuments(
        pb.DeleteDocumentsRequest(tenant_id="t1", knowledge_base="help", document_ids=["returns", "nope"])
    )
    assert deleted.deleted == 1


async def test_errors_map_to_status_codes_naming_the_field(stub: pb_grpc.RetrievalServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Search(pb.SearchRequest(tenant_id="t2", knowledge_base="help", query="退货"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "knowledge_base" in (info.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Ingest(
            pb.IngestRequest(tenant_id="t2", knowledge_base="kb", documents=[pb.Document(document_id="a")])
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "documents[0].text" in (info.value.details() or "")
