"""Template loading, sandboxed rendering, labels and cost estimates, on the shipped templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigc_common.errors import ConfigError, InvalidArgument, NotFound, PermissionDenied
from aigc_common.pricing import Price
from aigc_common.types import ChatMessage, Role
from aigc_prompt.core import PromptCore
from aigc_prompt.settings import PromptSettings
from aigc_prompt.templates import TemplateStore, load_template_dir

TEMPLATES = PromptSettings().templates_dir


def _count(messages: tuple[ChatMessage, ...]) -> int:
    # A stand-in tokenizer: one token per character is enough to check the arithmetic.
    return sum(len(m.content) for m in messages)


def _core(root: Path = TEMPLATES) -> PromptCore:
    return PromptCore(
        TemplateStore(root),
        count_tokens=_count,
        count_text_tokens=len,
        prices={"smollm2-135m-instruct": Price("CNY", 1.0, 2.0)},
        default_model="smollm2-135m-instruct",
        clock=lambda: 1000.0,
    )


def test_renders_the_chat_template_with_the_production_label() -> None:
    rendered = _core().render("acme", "chat", {"prompt": "长城有多长？"})
    assert rendered.version == 2
    assert rendered.semantic_threshold == 0.85 and rendered.cache_sampled
    assert _core().render("acme", "chat", {"prompt": "x"}, label="previous").version == 1
    assert rendered.messages[-1] == ChatMessage(Role.USER, "长城有多长？")
    assert rendered.messages[0].role == Role.SYSTEM
    assert rendered.bundle_id.startswith("chat@2-")
    assert rendered.sampling.max_tokens == 256


def test_variable_values_cannot_inject_template_syntax() -> None:
    rendered = _core().render("acme", "product_copy", {"product": "{{ 7*7 }}{% raw %}", "language": "en"})
    assert '"{{ 7*7 }}{% raw %}"' in rendered.messages[-1].content
    assert "49" not in rendered.messages[-1].content


@pytest.mark.parametrize(
    ("template", "variables", "field"),
    [
        ("no_such_template", {}, "template_id"),
        ("product_copy", {}, "variables.product"),
        ("product_copy", {"product": "x", "language": "fr"}, "variables.language"),
        ("product_copy", {"product": "x", "colour": "red"}, "variables.colour"),
        ("product_copy", {"product": "x" * 201}, "variables.product"),
    ],
)
def test_bad_requests_name_the_field(template: str, variables: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        _core().render("acme", template, variables)
    assert err.value.field == field


def test_bundle_id_is_stable_and_changes_with_the_version(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    (root / "greet").mkdir(parents=True)
    body = (
        "id: greet\nversion: {v}\nparameters: {{max_tokens: {m}}}\n"
        "variables: {{name: {{required: true}}}}\nmessages:\n  - role: user\n    content: 'Hi {{{{ name }}}}'\n"
    )
    (root / "greet" / "v1.yaml").write_text(body.format(v=1, m=10))
    (root / "greet" / "v2.yaml").write_text(body.format(v=2, m=20))
    (root / "greet" / "labels.yaml").write_text("production: 1\ncanary: 2\n")
    core = _core(root)
    a = core.render("t", "greet", {"name": "Li"})
    assert a.bundle_id == core.render("t", "greet", {"name": "Wang"}).bundle_id
    b = core.render("t", "greet", {"name": "Li"}, label="canary")
    assert b.version == 2 and b.bundle_id != a.bundle_id

    assert core.set_label("t", "greet", "production", 2, actor="ops@example") == 1
    assert core.render("t", "greet", {"name": "Li"}).version == 2
    assert core.set_label("t", "greet", "production", 1, actor="ops@example") == 2  # rollback
    assert [(m.from_version, m.to_version) for m in core.label_history] == [(1, 2), (2, 1)]
    with pytest.raises(NotFound):
        core.set_label("t", "greet", "production", 9, actor="ops")


def test_another_tenants_template_is_permission_denied(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    (root / "private").mkdir(parents=True)
    (root / "private" / "v1.yaml").write_text(
        "id: private\nversion: 1\ntenants: [acme]\nmessages:\n  - role: user\n    content: hello\n"
    )
    core = _core(root)
    assert core.render("acme", "private", {}).messages[0].content == "hello"
    with pytest.raises(PermissionDenied):
        core.render("globex", "private", {})
    assert [e.template_id for e in core.list_templates("globex")] == []


def test_broken_file_names_file_and_field(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    (root / "bad").mkdir(parents=True)
    (root / "bad" / "v1.yaml").write_text("id: bad\nversion: 1\nmessages:\n  - role: robot\n    content: x\n")
    with pytest.raises(ConfigError) as err:
        load_template_dir(root)
    assert "v1.yaml" in str(err.value) and "messages.0.role" in str(err.value)


def test_cost_estimate_for_a_batch_is_worst_case_by_default() -> None:
    core = _core()
    one = core.estimate_cost("acme", "chat", {"prompt": "hello"})
    many = core.estimate_cost("acme", "chat", {"prompt": "hello"}, item_count=1000)
    assert many.prompt_tokens == one.prompt_tokens * 1000
    assert many.completion_tokens == 256 * 1000
    # 1.0 per 1k prompt tokens, 2.0 per 1k completion tokens, in nanos.
    assert many.amount_nanos == round((many.prompt_tokens * 1.0 + many.completion_tokens * 2.0) * 1e6)
    assert many.currency == "CNY"


def _write_version(root: Path, version: int, text: str) -> None:
    folder = root / "greet"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"v{version}.yaml").write_text(
        f"id: greet\nversion: {version}\nmessages:\n  - role: user\n    content: '{text}'\n"
    )


def test_hot_reload_picks_up_a_new_version_and_new_template(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    _write_version(root, 1, "hello one")
    (root / "greet" / "labels.yaml").write_text("production: 1\n")
    store = TemplateStore(root)
    core = _core_over(store)
    assert core.render("t", "greet", {}).messages[0].content == "hello one"

    _write_version(root, 2, "hello two")
    (root / "greet" / "labels.yaml").write_text("production: 2\n")
    (root / "other").mkdir()
    (root / "other" / "v1.yaml").write_text(
        "id: other\nversion: 1\nmessages:\n  - role: user\n    content: x\n"
    )
    assert sorted(store.reload()) == ["greet", "other"]
    assert core.render("t", "greet", {}).messages[0].content == "hello two"
    assert core.render("t", "other", {}).version == 1
    assert store.reload() == [], "nothing changed, nothing reloaded"


def test_a_broken_file_never_replaces_the_good_version(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    _write_version(root, 1, "hello one")
    store = TemplateStore(root)
    core = _core_over(store)
    (root / "greet" / "v2.yaml").write_text("id: greet\nversion: 2\nmessages: [{role: robot, content: x}]\n")
    assert store.reload() == []
    assert "v2.yaml" in store.errors["greet"] and "role" in store.errors["greet"]
    assert core.render("t", "greet", {}).messages[0].content == "hello one"
    # Editing an existing version is refused too: versions are immutable.
    (root / "greet" / "v2.yaml").unlink()
    _write_version(root, 1, "sneaky edit")
    assert store.reload() == []
    assert "immutable" in store.errors["greet"]
    assert core.render("t", "greet", {}).messages[0].content == "hello one"
    # Fixing the folder clears the error.
    _write_version(root, 1, "hello one")
    store.reload()
    assert "greet" not in store.errors


def test_label_moves_survive_a_reload(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    _write_version(root, 1, "one")
    _write_version(root, 2, "two")
    (root / "greet" / "labels.yaml").write_text("production: 1\n")
    store = TemplateStore(root)
    core = _core_over(store)
    core.set_label("t", "greet", "production", 2, actor="ops")
    _write_version(root, 3, "three")
    store.reload()
    assert core.render("t", "greet", {}).version == 2
    assert core.labels("greet")["production"] == 2


async def test_the_watcher_reloads_in_the_background(tmp_path: Path) -> None:
    import asyncio

    root = tmp_path / "templates"
    _write_version(root, 1, "one")
    store = TemplateStore(root)
    core = _core_over(store)
    core.watch(0.05)
    try:
        _write_version(root, 2, "two")
        (root / "greet" / "labels.yaml").write_text("production: 2\n")
        for _ in range(100):
            if core.labels("greet").get("production") == 2:
                break
            await asyncio.sleep(0.05)
        assert core.render("t", "greet", {}).messages[0].content == "two"
    finally:
        await core.close()


def _core_over(store: TemplateStore) -> PromptCore:
    return PromptCore(
        store,
        count_tokens=_count,
        count_text_tokens=len,
        prices={},
        default_model="m",
    )


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ self._TemplateReference__context }}",
        "{% set x = [].append(1) %}{{ x }}",
    ],
)
def test_sandbox_escapes_fail(tmp_path: Path, escape: str) -> None:
    root = tmp_path / "templates"
    (root / "evil").mkdir(parents=True)
    (root / "evil" / "v1.yaml").write_text(
        "id: evil\nversion: 1\nmessages:\n  - role: user\n    content: " + json.dumps(escape) + "\n"
    )
    core = _core_over(TemplateStore(root))
    with pytest.raises(InvalidArgument) as err:
        core.render("t", "evil", {})
    assert err.value.field.startswith("messages")


def test_rendered_output_is_bounded(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    (root / "big").mkdir(parents=True)
    (root / "big" / "v1.yaml").write_text(
        'id: big\nversion: 1\nmessages:\n  - role: user\n    content: "{% for i in range(70000) %}x{% endfor %}"\n'
    )
    with pytest.raises(InvalidArgument) as err:
        _core_over(TemplateStore(root)).render("t", "big", {})
    assert "exceeds" in err.value.message
