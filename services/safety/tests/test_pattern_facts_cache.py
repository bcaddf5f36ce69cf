"""The on-disk cache of pattern facts: a second load parses no pattern it has seen and scans the
same; a file from other code, a broken one or an unwritable place costs only time."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from aigc_safety import rules
from aigc_safety.policy import PolicyStore, default_packs_dir, default_policies_dir

PACK = """\
name: shop
version: 1
fragments:
  ask: '(?:how (?:do|can) i|teach me to|ways to)'
rules:
  - id: en.fraud.fake_goods.010
    category: crimes_illegal
    severity: 3
    action: block
    language: en
    description: Passing off fakes as brand goods (trademark law art. 57).
    patterns:
      - '(?&ask) (?:sell|ship) (?:fake|counterfeit) (?:bags|watches)'
      - 'replica (?:rolex|gucci)(?= for sale)'
  - id: zh.fraud.fake_goods.010
    category: crimes_illegal
    severity: 3
    action: block
    language: zh
    description: 以假充真（商标法第五十七条）。
    patterns: ['(?:怎么|如何)(?:卖|出售).{0,6}(?:假货|高仿)']
"""
POLICY = "name: shop\nversion: 1\npacks: [shop]\nclassifier: {enabled: false}\n"
TEXTS = [
    "how do i sell fake bags online",
    "replica rolex for sale, cheap",
    "请问怎么卖这批高仿包",
    "how can i ship counterfeit watches and how do i sell fake bags",
    "we sell genuine bags only",
]


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with nothing in memory: no facts read from disk, none worked out."""
    monkeypatch.setattr(rules, "_FACTS_FROM_DISK", {})
    monkeypatch.setattr(rules, "_facts_on_disk", {})
    rules._facts.cache_clear()


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    packs, policies = tmp_path / "packs", tmp_path / "policies"
    packs.mkdir()
    policies.mkdir()
    (packs / "shop.yaml").write_text(PACK, encoding="utf-8")
    (policies / "shop.yaml").write_text(POLICY, encoding="utf-8")
    return packs, policies


def _scans(store: PolicyStore) -> list[list[tuple[str, list[tuple[int, int]]]]]:
    scanner = next(iter(store.snapshot.policies.values())).scanners
    return [[(r.rule_id, spans) for r, spans in s.scan(text)] for s in scanner.values() for text in TEXTS]


def test_a_second_load_parses_nothing_it_has_seen_and_scans_the_same(
    tmp_path: Path, fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache" / "facts.json"
    first = PolicyStore(*_dirs(tmp_path), facts_cache=cache)
    assert cache.exists(), "the first load writes what it worked out"
    expected = _scans(first)
    assert any(expected), "the texts hit the rules"

    rules._facts.cache_clear()
    monkeypatch.setattr(rules, "_FACTS_FROM_DISK", {})

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pattern was parsed again")

    monkeypatch.setattr(rules.sre_parse, "parse", no_parsing)
    second = PolicyStore(tmp_path / "packs", tmp_path / "policies", facts_cache=cache)
    assert _scans(second) == expected


def test_the_shipped_packs_facts_come_back_from_disk_unchanged(tmp_path: Path, fresh: None) -> None:
    cache = tmp_path / "facts.json"
    store = PolicyStore(default_packs_dir(), default_policies_dir(), facts_cache=cache)
    patterns = [p for pack in store.snapshot.packs.values() for rule in pack.rules for p in rule.patterns]
    worked_out = {p: rules._facts(p) for p in patterns}
    rules._FACTS_FROM_DISK.clear()
    assert rules.load_pattern_facts(cache) == len({rules._facts_key(p) for p in patterns})
    for pattern, facts in worked_out.items():
        assert rules._FACTS_FROM_DISK[rules._facts_key(pattern)] == facts, pattern.pattern


def test_a_file_from_other_code_is_ignored_and_replaced(tmp_path: Path, fresh: None) -> None:
    cache = tmp_path / "facts.json"
    PolicyStore(*_dirs(tmp_path), facts_cache=cache)
    document = json.loads(cache.read_text(encoding="utf-8"))
    wrong = [[["nothing"]], 3, 1]  # facts that would make the scanner miss every match
    stale = {**document, "code": "0" * 16, "facts": dict.fromkeys(document["facts"], wrong)}
    cache.write_text(json.dumps(stale), encoding="utf-8")
    rules._facts.cache_clear()
    rules._FACTS_FROM_DISK.clear()
    rules._facts_on_disk.clear()
    assert rules.load_pattern_facts(cache) == 0
    store = PolicyStore(tmp_path / "packs", tmp_path / "policies", facts_cache=cache)
    assert [
        r.rule_id for r, _ in store.snapshot.policies["shop"].scanners[rules.Stage.INPUT].scan(TEXTS[0])
    ] == ["en.fraud.fake_goods.010"]
    assert json.loads(cache.read_text(encoding="utf-8"))["code"] == document["code"], "rewritten"


@pytest.mark.parametrize("content", ["{not json", '{"format": 1, "code": "x"}', "[]", ""])
def test_a_broken_file_is_logged_and_the_load_goes_on(
    tmp_path: Path, fresh: None, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "facts.json"
    cache.write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="aigc_safety.rules"):
        store = PolicyStore(*_dirs(tmp_path), facts_cache=cache)
    assert store.snapshot.policies["shop"].scanners[rules.Stage.INPUT].scan(TEXTS[2])
    if content not in ('{"format": 1, "code": "x"}',):  # a readable file of other code is just stale
        assert "not used" in caplog.text and str(cache) in caplog.text
    assert json.loads(cache.read_text(encoding="utf-8"))["code"] == rules._FACTS_CODE


def test_an_unwritable_place_is_logged_and_the_load_goes_on(
    tmp_path: Path, fresh: None, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="aigc_safety.rules"):
        store = PolicyStore(*_dirs(tmp_path), facts_cache=blocker / "facts.json")
    assert store.snapshot.policies["shop"].scanners[rules.Stage.INPUT].scan(TEXTS[1])
    assert "not written" in caplog.text
