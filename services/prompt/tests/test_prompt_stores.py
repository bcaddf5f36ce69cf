"""Per-tenant example stores, the durable label log, and hourly (self-hosted) prices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from aigc_common.errors import ConfigError
from aigc_common.pricing import Price, PriceSetting, default_prices
from aigc_common.types import ChatMessage, Role
from aigc_prompt.core import PromptCore
from aigc_prompt.labels import LabelLog
from aigc_prompt.templates import TemplateStore

TEMPLATE = """\
id: faq
version: 1
strategy: {name: few_shot, selection: similar, k: 1, token_budget: 500}
examples:
  - {input: "How do I reset my password?", output: "Use the 'Forgot password' link."}
variables: {question: {required: true}}
messages:
  - role: user
    content: "{{ question }}"
"""


def _core(root: Path, log: LabelLog | None = None, clock: float = 1000.0) -> PromptCore:
    return PromptCore(
        TemplateStore(root),
        count_tokens=lambda ms: sum(len(m.content) for m in ms),
        count_text_tokens=len,
        prices={},
        default_model="m",
        label_log=log,
        clock=lambda: clock,
    )


def _write(root: Path, tenant_lines: dict[str, list[dict[str, str]]]) -> None:
    folder = root / "faq"
    (folder / "examples").mkdir(parents=True, exist_ok=True)
    (folder / "v1.yaml").write_text(TEMPLATE)
    for tenant, lines in tenant_lines.items():
        (folder / "examples" / f"{tenant}.jsonl").write_text(
            "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        )


def _shown(messages: tuple[ChatMessage, ...]) -> list[str]:
    return [m.content for m in messages[:-1] if m.role == Role.ASSISTANT]


def test_similar_selection_reads_the_tenants_own_example_store(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "acme": [
                {"input": "退货运费谁承担？", "output": "质量问题由我们承担运费。"},
                {"input": "发票怎么开？", "output": "在订单页申请电子发票。"},
            ],
            "globex": [{"input": "退货运费谁承担？", "output": "GLOBEX 的答案"}],
        },
    )
    core = _core(tmp_path)
    acme = core.render("acme", "faq", {"question": "退货的运费由谁出？"})
    assert _shown(acme.messages) == ["质量问题由我们承担运费。"]
    assert _shown(core.render("acme", "faq", {"question": "怎么开发票？"}).messages) == [
        "在订单页申请电子发票。"
    ]
    # Another tenant sees its own store, never acme's; a tenant without one gets the template's.
    assert _shown(core.render("globex", "faq", {"question": "退货的运费由谁出？"}).messages) == [
        "GLOBEX 的答案"
    ]
    other = core.render("initech", "faq", {"question": "退货的运费由谁出？"})
    assert _shown(other.messages) == ["Use the 'Forgot password' link."]
    # The examples are part of the bundle: a different store is a different bundle (and cache partition).
    assert (
        len({acme.bundle_id, other.bundle_id, core.render("globex", "faq", {"question": "x"}).bundle_id}) == 3
    )


def test_an_edited_example_store_is_picked_up_and_changes_the_bundle(tmp_path: Path) -> None:
    _write(tmp_path, {"acme": [{"input": "发票怎么开？", "output": "旧答案"}]})
    store = TemplateStore(tmp_path)
    core = PromptCore(store, count_tokens=lambda ms: 0, count_text_tokens=len, prices={}, default_model="m")
    before = core.render("acme", "faq", {"question": "发票怎么开？"})
    _write(tmp_path, {"acme": [{"input": "发票怎么开？", "output": "新答案，内容更长一些"}]})
    assert store.reload() == ["faq"]
    after = core.render("acme", "faq", {"question": "发票怎么开？"})
    assert _shown(after.messages) == ["新答案，内容更长一些"]
    assert after.bundle_id != before.bundle_id


def test_a_broken_example_store_names_file_and_line_and_keeps_the_good_one(tmp_path: Path) -> None:
    _write(tmp_path, {"acme": [{"input": "发票怎么开？", "output": "好的答案"}]})
    store = TemplateStore(tmp_path)
    core = PromptCore(store, count_tokens=lambda ms: 0, count_text_tokens=len, prices={}, default_model="m")
    broken = tmp_path / "faq" / "examples" / "acme.jsonl"
    broken.write_text('{"input": "ok", "output": "fine"}\n{"input": "no output"}\n')
    assert store.reload() == []
    assert "acme.jsonl line 2: field output" in store.errors["faq"]
    assert _shown(core.render("acme", "faq", {"question": "发票怎么开？"}).messages) == ["好的答案"]
    with pytest.raises(ConfigError, match="line 2"):
        TemplateStore(tmp_path)


def test_label_moves_are_logged_replayed_after_a_restart_and_shared_between_replicas(
    tmp_path: Path,
) -> None:
    templates = tmp_path / "templates"
    _write(templates, {})
    (templates / "faq" / "v2.yaml").write_text(TEMPLATE.replace("version: 1", "version: 2"))
    (templates / "faq" / "labels.yaml").write_text("production: 1\n")
    log_path = tmp_path / "state" / "labels.jsonl"

    first = _core(templates, LabelLog(log_path), clock=1000.0)
    replica = _core(templates, LabelLog(log_path), clock=2000.0)
    assert first.set_label("t", "faq", "production", 2, actor="ops@example") == 1
    # The other replica sees the move on its next sync (the hot-reload loop runs it).
    assert replica.labels("faq")["production"] == 1
    assert replica.sync_labels() == 1
    assert replica.labels("faq")["production"] == 2
    # A rollback from the replica starts from what the label really points at.
    assert replica.set_label("t", "faq", "production", 1, actor="oncall") == 2

    restarted = _core(templates, LabelLog(log_path))
    assert restarted.labels("faq")["production"] == 1
    history = [(m.label, m.from_version, m.to_version, m.actor, m.at) for m in restarted.history("faq")]
    assert history == [("production", 1, 2, "ops@example", 1000.0), ("production", 2, 1, "oncall", 2000.0)]


def test_a_damaged_label_log_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    _write(templates, {})
    (templates / "faq" / "v2.yaml").write_text(TEMPLATE.replace("version: 1", "version: 2"))
    log_path = tmp_path / "labels.jsonl"
    good = {
        "template_id": "faq",
        "label": "canary",
        "from_version": 0,
        "to_version": 2,
        "actor": "a",
        "at": 1.0,
    }
    log_path.write_text("not json\n" + json.dumps(good) + "\n" + '{"half": ')
    core = _core(templates, LabelLog(log_path))
    assert core.labels("faq")["canary"] == 2
    assert len(core.history("faq")) == 1


def test_hourly_price_spreads_the_hardware_hour_over_measured_throughput() -> None:
    # 3.60 per hour = 0.001 per second; at 1,000 prompt tokens/s a 1k-prompt costs 0.001, at
    # 10 completion tokens/s a 1k-completion costs 0.1.
    price = Price.from_setting(
        PriceSetting(
            currency="USD", hour_price=3.6, prompt_tokens_per_second=1000, completion_tokens_per_second=10
        )
    )
    assert price.prompt_per_1k == pytest.approx(0.001)
    assert price.completion_per_1k == pytest.approx(0.1)
    assert price.cost_nanos(2000, 100) == 12_000_000  # 0.002 + 0.01
    smollm = Price.from_setting(default_prices()["smollm2-135m-instruct"])
    assert 0 < smollm.prompt_per_1k < smollm.completion_per_1k


@pytest.mark.parametrize(
    "fields",
    [
        {"hour_price": 1.0},
        {"hour_price": 1.0, "prompt_tokens_per_second": 10.0},
        {"hour_price": 1.0, "prompt_tokens_per_second": 10.0, "completion_tokens_per_second": 0.0},
        {
            "hour_price": 1.0,
            "prompt_tokens_per_second": 1.0,
            "completion_tokens_per_second": 1.0,
            "prompt_per_1k": 1.0,
        },
    ],
)
def test_incomplete_or_mixed_hourly_prices_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        PriceSetting(**fields)
