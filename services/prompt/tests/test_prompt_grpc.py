"""PromptService over the real server bootstrap on 127.0.0.1:0, with the SmolLM2 tokenizer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from aigc.prompt.v1 import prompt_pb2 as pb
from aigc.prompt.v1 import prompt_pb2_grpc as pb_grpc
from aigc_common.metrics import RpcMetrics
from aigc_common.server import GrpcServer
from aigc_common.settings import GrpcSettings
from aigc_prompt.app import build_core
from aigc_prompt.servicer import binding
from aigc_prompt.settings import PromptSettings

PRIVATE = "id: private\nversion: {v}\ntenants: [acme]\nmessages:\n  - role: user\n    content: 'v{v} {{{{ q }}}}'\nvariables: {{q: {{required: true}}}}\n"


@pytest.fixture
async def stub(tmp_path: Path, cpu_model_path: Path) -> AsyncIterator[pb_grpc.PromptServiceStub]:
    root = tmp_path / "templates"
    (root / "private").mkdir(parents=True)
    for v in (1, 2):
        (root / "private" / f"v{v}.yaml").write_text(PRIVATE.format(v=v))
    (root / "private" / "labels.yaml").write_text("production: 1\n")
    settings = PromptSettings(
        templates_dir=root,
        tokenizer_path=cpu_model_path,
        reload_interval_seconds=0,
        label_log_path=tmp_path / "state" / "labels.jsonl",
    )
    core = await build_core(settings)
    server = GrpcServer("prompt", [binding(core)], GrpcSettings(port=0), RpcMetrics(CollectorRegistry()))
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield pb_grpc.PromptServiceStub(channel)
    await server.stop(0)
    await core.close()


def _ref(label: str = "", version: int = 0) -> pb.TemplateRef:
    return pb.TemplateRef(template_id="private", label=label, version=version)


async def test_render_list_get_and_rollback(stub: pb_grpc.PromptServiceStub) -> None:
    rendered = await stub.Render(pb.RenderRequest(tenant_id="acme", template=_ref(), variables={"q": "hi"}))
    assert rendered.version == 1 and rendered.messages[0].content == "v1 hi"
    listed = await stub.ListTemplates(pb.ListTemplatesRequest(tenant_id="acme"))
    assert [t.template_id for t in listed.templates] == ["private"]
    assert listed.templates[0].latest_version == 2
    got = await stub.GetTemplate(pb.GetTemplateRequest(tenant_id="acme", template=_ref(version=2)))
    assert got.version == 2 and [v.name for v in got.variables] == ["q"]

    moved = await stub.SetLabel(
        pb.SetLabelRequest(
            tenant_id="acme", template_id="private", label="production", version=2, actor="ops"
        )
    )
    assert moved.previous_version == 1
    again = await stub.Render(pb.RenderRequest(tenant_id="acme", template=_ref(), variables={"q": "hi"}))
    assert again.version == 2 and again.bundle_id != rendered.bundle_id
    back = await stub.SetLabel(
        pb.SetLabelRequest(
            tenant_id="acme", template_id="private", label="production", version=1, actor="ops"
        )
    )
    assert back.previous_version == 2
    # Every move is on record, over the API: who, when, from, to.
    history = (await stub.GetTemplate(pb.GetTemplateRequest(tenant_id="acme", template=_ref()))).label_history
    assert [(m.label, m.from_version, m.to_version, m.actor) for m in history] == [
        ("production", 1, 2, "ops"),
        ("production", 2, 1, "ops"),
    ]
    assert history[0].at.seconds > 1_700_000_000


async def test_another_tenant_is_permission_denied(stub: pb_grpc.PromptServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Render(pb.RenderRequest(tenant_id="globex", template=_ref(), variables={"q": "hi"}))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "template_id" in (err.value.details() or "")


async def test_missing_variable_is_invalid_argument(stub: pb_grpc.PromptServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Render(pb.RenderRequest(tenant_id="acme", template=_ref()))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "variables.q" in (err.value.details() or "")


async def test_estimate_cost_counts_with_the_model_tokenizer(stub: pb_grpc.PromptServiceStub) -> None:
    one = await stub.EstimateCost(
        pb.EstimateCostRequest(tenant_id="acme", template=_ref(), variables={"q": "hello"}, item_count=1)
    )
    many = await stub.EstimateCost(
        pb.EstimateCostRequest(
            tenant_id="acme",
            template=_ref(),
            variables={"q": "hello"},
            item_count=10_000,
            completion_tokens_per_item=50,
        )
    )
    # SmolLM2's chat template adds its default system prompt: well over the 3 words of the message.
    assert one.prompt_tokens > 20
    assert many.prompt_tokens == one.prompt_tokens * 10_000
    assert many.completion_tokens == 500_000
    assert many.cost.currency == "CNY" and many.cost.amount_nanos > one.cost.amount_nanos > 0
