"""Rule packs load, compile and refuse to load when broken, naming the file and the rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aigc_common.errors import ConfigError
from aigc_safety.rules import RulePackError, default_pack_path, load_pack
from aigc_safety.types import Action, Stage

GOOD_RULE = """
  - id: en.test.one
    category: testing
    severity: 3
    action: block
    language: en
    description: a test rule
    keywords: [forbidden phrase]
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_default_pack_loads_with_bilingual_rules() -> None:
    pack = load_pack(default_pack_path())
    assert pack.name == "default"
    assert pack.policy_version == f"default@{pack.version}"
    categories = {r.category for r in pack.rules}
    assert {
        "prompt_injection",
        "prompt_leaking",
        "crimes_illegal",
        "insult",
    } <= categories
    assert {r.language for r in pack.rules} >= {"zh", "en"}
    assert all(r.description for r in pack.rules)
    # Injection phrases in answers are harmless quotes; only inputs are checked for them.
    assert all(Stage.OUTPUT not in r.stages for r in pack.rules if r.category == "prompt_injection")


def test_latin_keywords_match_whole_words_only(tmp_path: Path) -> None:
    pack = load_pack(
        _write(tmp_path, "name: t\nversion: 1\nrules:\n" + GOOD_RULE.replace("forbidden phrase", "ass"))
    )
    rule = pack.rules[0]
    assert rule.find("first class service") == []
    assert rule.find("you ass!") == [(4, 7)]


def test_a_valid_small_pack(tmp_path: Path) -> None:
    pack = load_pack(_write(tmp_path, "name: tiny\nversion: '2024-06'\nrules:\n" + GOOD_RULE))
    assert pack.policy_version == "tiny@2024-06"
    assert pack.rules[0].action == Action.BLOCK


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("severity: 3", "severity: 9"), "severity must be an integer from 1 to 5"),
        (("action: block", "action: shout"), "action must be one of"),
        (("language: en", "language: fr"), "language must be one of"),
        (
            ("keywords: [forbidden phrase]", "patterns: ['(unclosed']"),
            "patterns[0] is not a valid regular expression",
        ),
        (("keywords: [forbidden phrase]", "patterns: ['a*']"), "patterns[0] matches the empty string"),
        (("keywords: [forbidden phrase]", "keywords: []"), "needs at least one keyword or pattern"),
        (("description: a test rule", "descripton: typo"), "unknown keys ['descripton']"),
    ],
)
def test_broken_rule_names_file_and_rule(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    path = _write(tmp_path, "name: t\nversion: 1\nrules:\n" + GOOD_RULE.replace(*change))
    with pytest.raises(RulePackError) as info:
        load_pack(path)
    message = str(info.value)
    assert str(path) in message
    assert "rule 'en.test.one'" in message
    assert expected in message
    assert isinstance(info.value, ConfigError)  # start-up treats it as bad configuration


def test_duplicate_rule_id_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: t\nversion: 1\nrules:\n" + GOOD_RULE + GOOD_RULE)
    with pytest.raises(RulePackError, match=re.escape("rule 'en.test.one': duplicate id")):
        load_pack(path)


def test_unreadable_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(RulePackError, match=re.escape("missing.yaml: cannot read")):
        load_pack(tmp_path / "missing.yaml")
    with pytest.raises(RulePackError, match=re.escape("pack.yaml: not valid YAML")):
        load_pack(_write(tmp_path, "name: [unclosed"))
    with pytest.raises(RulePackError, match="rules: must be a non-empty list"):
        load_pack(_write(tmp_path, "name: t\nversion: 1\nrules: []"))


FRAGMENT_PACK = r"""name: t
version: 1
fragments:
  ask: 'how (?:do|can) i|ways to'
  ask_evade: '(?&ask) (?:secretly )?'
rules:
  - id: en.test.frag
    category: testing
    severity: 3
    action: block
    language: en
    description: a rule built from fragments
    patterns: ['(?&ask_evade)(?:poison|drug) (?:my|a) (?:neighbou?r|dog)\b']
"""


def test_fragments_are_shared_pattern_pieces(tmp_path: Path) -> None:
    pack = load_pack(_write(tmp_path, FRAGMENT_PACK))
    rule = pack.rules[0]
    assert rule.find("how can i secretly poison my neighbour?") == [(0, 38)]
    assert rule.find("ways to drug a dog") == [(0, 18)]
    assert rule.find("how can i protect my dog from poison") == []
    # The prefilter sees the expanded pattern, so the rule still only runs on its trigger words.
    assert pack.scanner(Stage.INPUT).always_run == 0
    assert [r.rule_id for r, _ in pack.scanner(Stage.INPUT).scan("ways to poison a dog")] == ["en.test.frag"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("(?&ask_evade)(?:poison", "(?&askk)(?:poison"),
            "rule 'en.test.frag': patterns[0]: (?&askk) names no fragment",
        ),
        (
            ("ask_evade: '(?&ask)", "ask_evade: '(?&ask_evade)"),
            "fragments.ask_evade: (?&ask_evade) names no fragment",
        ),
        (("ask: 'how (?:do", "ask: 'how (?:do("), "fragments.ask: not a valid regular expression"),
        (("  ask: ", "  Ask: "), "fragments.Ask: name must be lower-case"),
    ],
)
def test_broken_fragments_are_named(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    with pytest.raises(RulePackError, match=re.escape(expected)):
        load_pack(_write(tmp_path, FRAGMENT_PACK.replace(*change)))
