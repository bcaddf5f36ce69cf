"""The retriever over the in-memory index: ingest, search in Chinese and English, isolation."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from aigc_common.errors import InvalidArgument, NotFound
from aigc_retrieval.adapters.memory_index import MemoryIndex
from aigc_retrieval.core import Retriever
from aigc_retrieval.metrics import RetrievalMetrics
from aigc_retrieval.types import Document

DOCS = [
    Document(
        "returns",
        "自签收之日起七天内，商品未经使用可以无理由退货。退货运费由买家承担，质量问题除外。\n\n"
        "Returns: unused items can be returned within seven days of delivery for a full refund.",
        title="退货政策 Return policy",
        metadata={"source": "https://help.example.com/returns"},
    ),
    Document(
        "shipping",
        "订单在付款后48小时内发货，偏远地区需要额外三到五天。\n\n"
        "Orders ship within 48 hours of payment; remote regions take three to five extra days.",
        title="发货说明 Shipping",
    ),
    Document(
        "warranty",
        "电子产品享受一年质保，质保期内非人为损坏免费维修。\n\n"
        "Electronics carry a one-year warranty covering repairs of defects not caused by misuse.",
        title="质保 Warranty",
    ),
]


def make_retriever(registry: CollectorRegistry | None = None, **kwargs: int) -> Retriever:
    return Retriever(MemoryIndex(), RetrievalMetrics(registry or CollectorRegistry()), **kwargs)


@pytest.mark.parametrize(
    ("query", "document_id"),
    [
        ("七天无理由退货吗？", "returns"),
        ("多久发货", "shipping"),
        ("质保多久", "warranty"),
        ("how long does shipping take to remote regions", "shipping"),
        ("Can I RETURN an unused item?", "returns"),
        ("warranty repairs", "warranty"),
    ],
)
async def test_queries_find_the_right_passage(query: str, document_id: str) -> None:
    retriever = make_retriever()
    result = await retriever.ingest("t1", "help", DOCS)
    assert result.documents == 3 and result.chunks >= 3
    passages = await retriever.search("t1", "help", query, top_k=3)
    assert passages[0].document_id == document_id
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


async def test_passages_carry_title_metadata_and_position() -> None:
    retriever = make_retriever()
    await retriever.ingest("t1", "help", DOCS)
    (best,) = await retriever.search("t1", "help", "无理由退货", top_k=1)
    assert best.title == "退货政策 Return policy"
    assert best.metadata == {"source": "https://help.example.com/returns"}
    assert best.chunk_index == 0 and "七天" in best.text


async def test_long_documents_are_chunked_and_the_right_chunk_wins() -> None:
    retriever = make_retriever(chunk_chars=120, chunk_overlap=20)
    filler = "本店商品均为正品，欢迎选购。" * 20
    text = filler + "会员积分可以在结算时抵扣现金，一百积分抵一元。" + filler
    result = await retriever.ingest("t1", "kb", [Document("long", text)])
    assert result.chunks > 3
    (best,) = await retriever.search("t1", "kb", "积分抵扣", top_k=1)
    assert "积分" in best.text and best.chunk_index > 0


async def test_tenants_never_see_each_others_bases() -> None:
    retriever = make_retriever()
    await retriever.ingest("tenant-a", "secret", DOCS[:1])
    await retriever.ingest("tenant-b", "public", DOCS[1:])
    with pytest.raises(NotFound) as info:
        await retriever.search("tenant-b", "secret", "退货")
    assert info.value.field == "knowledge_base"
    assert [kb.name for kb in await retriever.list_knowledge_bases("tenant-b")] == ["public"]
    # Same base name, different tenants: separate contents.
    await retriever.ingest("tenant-b", "secret", [Document("other", "完全不同的内容")])
    passages = await retriever.search("tenant-b", "secret", "退货")
    assert passages == []


async def test_reingest_replaces_and_delete_removes() -> None:
    retriever = make_retriever()
    await retriever.ingest("t1", "help", DOCS)
    await retriever.ingest("t1", "help", [Document("returns", "Returns are no longer accepted.")])
    passages = await retriever.search("t1", "help", "七天无理由退货")
    assert all(p.document_id != "returns" for p in passages)
    assert await retriever.delete_documents("t1", "help", ["returns", "returns", "unknown"]) == 1
    assert await retriever.search("t1", "help", "returns accepted") == []
    (info,) = await retriever.list_knowledge_bases("t1")
    assert (info.name, info.documents) == ("help", 2)


@pytest.mark.parametrize(
    ("documents", "field"),
    [
        ([], "documents"),
        ([Document("", "text")], "documents[0].document_id"),
        ([Document("a", "ok"), Document("b", "   ")], "documents[1].text"),
        ([Document("a", "ok"), Document("a", "again")], "documents[1].document_id"),
    ],
)
async def test_bad_documents_name_the_field_and_write_nothing(documents: list[Document], field: str) -> None:
    retriever = make_retriever()
    with pytest.raises(InvalidArgument) as info:
        await retriever.ingest("t1", "kb", documents)
    assert info.value.field == field
    assert await retriever.list_knowledge_bases("t1") == []


async def test_bad_search_arguments_name_the_field() -> None:
    retriever = make_retriever()
    await retriever.ingest("t1", "kb", DOCS)
    for (tenant_id, knowledge_base, query, top_k), field in [
        (("t1", "kb", "  ", 0), "query"),
        (("t1", "", "x", 0), "knowledge_base"),
        (("t1", "kb", "x", 1000), "top_k"),
        (("", "kb", "x", 0), "tenant_id"),
    ]:
        with pytest.raises(InvalidArgument) as info:
            await retriever.search(tenant_id, knowledge_base, query, top_k)
        assert info.value.field == field
    with pytest.raises(NotFound):
        await retriever.search("t1", "nope", "退货")
    assert await retriever.search("t1", "kb", "？！。") == []


async def test_metrics_record_ingest_and_search() -> None:
    registry = CollectorRegistry()
    retriever = make_retriever(registry)
    result = await retriever.ingest("t1", "kb", DOCS)
    await retriever.search("t1", "kb", "退货")
    assert registry.get_sample_value("aigc_retrieval_chunks_ingested_total") == result.chunks
    assert registry.get_sample_value("aigc_retrieval_search_duration_seconds_count") == 1
