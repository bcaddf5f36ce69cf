"""PII detection and redaction: every format in Chinese and English sentences, checksums, near
misses that must stay, evasion by width and invisible characters, masking, placeholders and
restoring them in an answer, and the measured quality on the shared dev file.

The examples here are written for these tests (identity and card numbers computed to pass or fail
their check digits); none is taken from the evaluation file.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from aigc_safety.normalize import normalize
from aigc_safety.pii import (
    PII_DETECTORS,
    PII_TYPES,
    MaskStyle,
    PlaceholderRestorer,
    RedactionMap,
    find_pii,
    luhn_ok,
    mask,
    mask_value,
    pseudonymize,
    redact,
    restore,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
PII_DEV = REPO_ROOT.parent / "shared" / "eval" / "pii_dev.jsonl"
EVAL_SCRIPT = REPO_ROOT / "services" / "safety" / "training" / "eval_pii.py"


def found(text: str) -> list[tuple[str, str]]:
    """(type, the original text of the span) of each entity."""
    return [(m.type, text[m.span[0] : m.span[1]]) for m in find_pii(normalize(text))]


# (sentence, type, the exact text the span must cover)
FORMATS = [
    # resident identity numbers: GB 11643 checksum, X / x check character, grouped, old format
    ("我的身份证号是440306198509173127，请核对。", "cn_resident_id", "440306198509173127"),
    ("Her resident ID is 32010219880612108X.", "cn_resident_id", "32010219880612108X"),
    ("身份证：32010219880612108x", "cn_resident_id", "32010219880612108x"),
    ("ID card number: 440306 19850917 3127, thanks", "cn_resident_id", "440306 19850917 3127"),
    ("旧版身份证号码110101900307123已停用", "cn_resident_id", "110101900307123"),
    # mainland mobile numbers
    ("有事请拨打13912345678联系我", "cn_mobile", "13912345678"),
    ("Call me at +86 186-1234-5678 tomorrow.", "cn_mobile", "+86 186-1234-5678"),
    ("国际拨号 0086 15012345678 也行", "cn_mobile", "0086 15012345678"),
    ("手机 139 1234 5678", "cn_mobile", "139 1234 5678"),
    ("WhatsApp (+86) 139 1234 5678", "cn_mobile", "(+86) 139 1234 5678"),
    ("联系方式：手机号码（13912345678）", "cn_mobile", "13912345678"),
    # landlines
    ("办公室电话010-65529988，工作日有人", "cn_landline", "010-65529988"),
    ("The office line is (0571) 8765-4321.", "cn_landline", "(0571) 8765-4321"),
    ("总机 +86 21 6123 4567", "cn_landline", "+86 21 6123 4567"),
    ("传真0755 2345678", "cn_landline", "0755 2345678"),
    # bank cards: UnionPay 62, domestic 60 and 95 prefixes, 16-19 digits, Luhn
    ("工资卡6222021001123456789，谢谢", "bank_card", "6222021001123456789"),
    ("UnionPay card 6217 0012 3456 7893 expires soon", "bank_card", "6217 0012 3456 7893"),
    ("卡号955880123456789015", "bank_card", "955880123456789015"),
    ("中行长城卡 6013820012345677", "bank_card", "6013820012345677"),
    # international payment cards
    ("Visa 4539 1488 0343 6467 exp 09/27", "credit_card", "4539 1488 0343 6467"),
    ("万事达卡 5123-4567-8901-2346", "credit_card", "5123-4567-8901-2346"),
    ("Mastercard 2223601234567891 on file", "credit_card", "2223601234567891"),
    ("Amex 3427 182818 28453 is mine", "credit_card", "3427 182818 28453"),
    ("JCB卡3528123456789012", "credit_card", "3528123456789012"),
    ("Discover 6011 9876 5432 1019", "credit_card", "6011 9876 5432 1019"),
    # a card number followed by more digits is still found
    ("card 4539 1488 0343 6467 12 27", "credit_card", "4539 1488 0343 6467"),
    # US social security numbers
    ("My SSN is 536-22-8174.", "us_ssn", "536-22-8174"),
    ("社会安全号 536 22 8174", "us_ssn", "536 22 8174"),
    ("social security number 536228174", "us_ssn", "536228174"),
    # North American phone numbers
    ("Call (212) 555-0187 today", "us_phone", "(212) 555-0187"),
    ("美国电话 +1 646-555-0123", "us_phone", "+1 646-555-0123"),
    ("fax 415.555.0199 please", "us_phone", "415.555.0199"),
    # other countries
    ("London office: +44 20 7946 0958.", "intl_phone", "+44 20 7946 0958"),
    ("德国号码 +49 30 9018 2000", "intl_phone", "+49 30 9018 2000"),
    ("Her mobile is 0412 345 678", "intl_phone", "0412 345 678"),
    # e-mail addresses
    ("邮箱：zhang.wei+news@example.com.cn", "email", "zhang.wei+news@example.com.cn"),
    ("Write to o'brien@mail.example.org.", "email", "o'brien@mail.example.org"),
    ("IDN: user@xn--fiqs8s.xn--55qx5d", "email", "user@xn--fiqs8s.xn--55qx5d"),
    # IP addresses
    ("服务器IP是203.0.113.45。", "ipv4", "203.0.113.45"),
    ("request from 198.51.100.7, then retried", "ipv4", "198.51.100.7"),
    ("DNS 1.1.1.1", "ipv4", "1.1.1.1"),
    ("地址 2001:db8:85a3::8a2e:370:7334 不通", "ipv6", "2001:db8:85a3::8a2e:370:7334"),
    ("client fe80:0:0:0:202:b3ff:fe1e:8329 connected", "ipv6", "fe80:0:0:0:202:b3ff:fe1e:8329"),
    ("IPv6地址：2001:db8::42:1", "ipv6", "2001:db8::42:1"),
    ("mapped ::ffff:192.0.2.128 here", "ipv6", "::ffff:192.0.2.128"),
    # passports, only after a context word
    ("护照号码：E23456789", "passport", "E23456789"),
    ("passport no. G12345678 issued 2019", "passport", "G12345678"),
    ("Passport number: 503123456", "passport", "503123456"),
]


@pytest.mark.parametrize(("text", "kind", "value"), FORMATS)
def test_each_format_is_found_with_its_type_and_span(text: str, kind: str, value: str) -> None:
    assert found(text) == [(kind, value)]


def test_every_detector_has_an_example_and_names_its_legal_basis() -> None:
    assert {kind for _, kind, _ in FORMATS} == set(PII_TYPES)
    for detector in PII_DETECTORS.values():
        assert "PIPL" in detector.description or "NIST" in detector.description


@pytest.mark.parametrize(
    "text",
    [
        # check digits that fail
        "身份证 440306198509173128",  # GB 11643 checksum off by one
        "ID 32010219880612108Y",
        "银行卡6222021001123456788",  # Luhn fails
        "Visa 4539 1488 0343 6468",
        "卡号 6217-0012-3456-7894",
        # order, tracking and other long numbers
        "订单号 20231001123456789012",
        "物流单号 773012345678901",
        "编号 110105194912310021",  # shaped like an identity number, checksum fails
        "发票号码 440306198513173127",  # month 13
        # version strings, dates, times, timestamps
        "升级到版本 1.2.3 即可",
        "Chrome 120.0.6099.109 crashed",
        "please use version 10.4.2.1",
        "v2.3.4.5 released",
        "2023-10-01 12:30:45 下单",
        "日期 2023.10.01",
        "时间戳 1700000000123",
        # eleven digits that are not mobile numbers
        "流水号 12800138000",
        "编码 10086123456",
        "数量 13800138000123",
        # prices
        "总价 ¥13,800,138.00 元",
        "It costs $1,234,567.89 in total.",
        "单价 13800.00 元",
        # addresses and codes that look a little like IPs or phones
        "netmask 255.255.255.0 and 0.0.0.0",
        "localhost ::1 and MAC 00:1a:2b:3c:4d:5e at 12:30:45",
        "型号 E12345678，库存 123456789",  # no passport or SSN context
        "SSN 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567, 123-45-0000",
        "my email is info@example. today",
        "比分 3:2，房间号 1203",
    ],
)
def test_near_misses_are_not_personal_data(text: str) -> None:
    assert found(text) == []


def test_full_width_digits_and_zero_width_characters_are_found_with_original_spans() -> None:
    text = "手机：１３９１２３４５６７８，备用139\u200b1234\u200b5678，身份证４４０３０６１９８５０９１７３１２７"
    assert found(text) == [
        ("cn_mobile", "１３９１２３４５６７８"),
        ("cn_mobile", "139\u200b1234\u200b5678"),
        ("cn_resident_id", "４４０３０６１９８５０９１７３１２７"),
    ]
    assert found("邮箱 ＺＨＡＮＧ＠ＥＸＡＭＰＬＥ．ＣＯＭ") == [
        ("email", "ＺＨＡＮＧ＠ＥＸＡＭＰＬＥ．ＣＯＭ")
    ]
    assert found("卡号 6222\u200c0210\u200c0112\u200c3456789") == [
        ("bank_card", "6222\u200c0210\u200c0112\u200c3456789")
    ]


def test_one_type_per_span_by_precedence() -> None:
    # This Gansu identity number (area 62) also passes the Luhn check of a UnionPay card.
    assert luhn_ok("620102199001011057")
    assert found("身份证620102199001011057") == [("cn_resident_id", "620102199001011057")]
    # Cards are split by issuer prefix: 6011 is Discover, other 60 numbers are domestic cards.
    assert found("6011987654321019 / 6013820012345677") == [
        ("credit_card", "6011987654321019"),
        ("bank_card", "6013820012345677"),
    ]


def test_types_limit_the_detectors_that_run() -> None:
    text = "电话13912345678，邮箱a@example.com"
    assert [m.type for m in find_pii(normalize(text), ["email"])] == ["email"]
    assert [m.type for m in find_pii(normalize(text))] == ["cn_mobile", "email"]


def test_detection_stays_linear_on_hostile_input() -> None:
    # Shapes that make a careless pattern backtrack: long digit runs with separators, local parts
    # without a domain, colons, brackets and dots. Quadratic time would take minutes here.
    texts = [
        "1-" * 25_000,
        "a'" * 25_000 + "@",
        "@" * 50_000,
        "1:" * 25_000,
        "1." * 25_000,
        "身份证" + "1" * 50_000,
        "passport " * 5_000,
    ]
    start = time.process_time()
    for text in texts:
        find_pii(normalize(text))
        restore("[" * 50_000, RedactionMap({"[EMAIL_1]": "a@example.com"}))
    assert time.process_time() - start < 20


# ---------------------------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------------------------


def test_mask_keeps_a_few_characters() -> None:
    result = mask("手机13800138000，身份证440306198509173127，卡 6222 0210 0112 3456 789")
    assert result.text == "手机138****8000，身份证440***********3127，卡 6222 **** **** ***6 789"
    assert [e.type for e in result.entities] == ["cn_mobile", "cn_resident_id", "bank_card"]
    assert result.entities[0].placeholder == "138****8000"
    assert len(result.mapping) == 0  # masking cannot be undone


@pytest.mark.parametrize(
    ("kind", "value", "masked"),
    [
        ("cn_mobile", "+86 138 0013 8000", "+86 138 **** 8000"),
        ("cn_mobile", "(+86) 139-1234-5678", "(+86) 139-****-5678"),
        ("cn_mobile", "１３８００１３８０００", "138****8000"),
        ("email", "Zhang.Wei@Example.com", "Z****.***@Example.com"),
        ("email", "a@example.com", "*@example.com"),
        ("us_ssn", "536-22-8174", "***-**-8174"),
        ("us_phone", "+1 (212) 555-0187", "+1 (212) ***-0187"),
        ("ipv4", "203.0.113.45", "203.*.***.**"),
    ],
)
def test_mask_value_keeps_country_codes_domains_and_separators(kind: str, value: str, masked: str) -> None:
    assert mask_value(kind, value) == masked


def test_mask_style_is_configurable_per_type() -> None:
    result = mask("电话 13800138000", styles={"cn_mobile": MaskStyle(keep_start=0, keep_end=4, char="#")})
    assert result.text == "电话 #######8000"
    with pytest.raises(ValueError):
        MaskStyle(keep_start=-1)
    with pytest.raises(ValueError):
        MaskStyle(char="**")


# ---------------------------------------------------------------------------------------------
# Placeholders and restore
# ---------------------------------------------------------------------------------------------


def test_placeholders_round_trip_through_restore() -> None:
    text = "我叫李雷，手机13912345678，邮箱 lilei@example.com，身份证440306198509173127。"
    result = pseudonymize(text)
    assert result.text == "我叫李雷，手机[CN_MOBILE_1]，邮箱 [EMAIL_1]，身份证[CN_RESIDENT_ID_1]。"
    assert restore(result.text, result.mapping) == text
    # The model repeats a placeholder, changes its case and invents one we never issued.
    answer = "已记录 [CN_MOBILE_1]；再次确认 [CN_MOBILE_1] 和 [email_1]。[EMAIL_7] 与 [PHONE_1] 不是我们的。"
    assert restore(answer, result.mapping) == (
        "已记录 13912345678；再次确认 13912345678 和 lilei@example.com。[EMAIL_7] 与 [PHONE_1] 不是我们的。"
    )


def test_same_value_gets_the_same_placeholder_whatever_its_spelling() -> None:
    text = "主号13800138000，同一个号 +86 138 0013 8000，另一个 13912345678；A@Example.com 和 a@example.com"
    result = pseudonymize(text)
    assert (
        result.text
        == "主号[CN_MOBILE_1]，同一个号 [CN_MOBILE_1]，另一个 [CN_MOBILE_2]；[EMAIL_1] 和 [EMAIL_1]"
    )
    assert [e.placeholder for e in result.entities] == [
        "[CN_MOBILE_1]",
        "[CN_MOBILE_1]",
        "[CN_MOBILE_2]",
        "[EMAIL_1]",
        "[EMAIL_1]",
    ]
    assert result.mapping.get("[CN_MOBILE_1]") == "13800138000"  # the first spelling


def test_a_conversation_shares_one_numbering() -> None:
    first = pseudonymize("我的手机13800138000")
    second = pseudonymize("还是13800138000，或者13912345678", mapping=first.mapping)
    assert second.text == "还是[CN_MOBILE_1]，或者[CN_MOBILE_2]"
    assert len(first.mapping) == 1  # the earlier map is not changed
    assert restore("[CN_MOBILE_2] / [CN_MOBILE_1]", second.mapping) == "13912345678 / 13800138000"


def test_a_placeholder_the_caller_wrote_is_not_reused() -> None:
    result = pseudonymize("模板里写着 [EMAIL_1] 和 [email_2]，我的邮箱是 a@example.com")
    assert result.text == "模板里写着 [EMAIL_1] 和 [email_2]，我的邮箱是 [EMAIL_3]"
    assert (
        restore(result.text, result.mapping) == "模板里写着 [EMAIL_1] 和 [email_2]，我的邮箱是 a@example.com"
    )


def test_the_map_is_a_read_only_copy() -> None:
    values = {"[EMAIL_1]": "a@example.com"}
    mapping = RedactionMap(values)
    values["[EMAIL_1]"] = "b@example.com"
    assert restore("[EMAIL_1]", mapping) == "a@example.com"
    with pytest.raises(TypeError):
        mapping.originals["[EMAIL_2]"] = "c@example.com"  # type: ignore[index]


def test_restored_values_carry_no_invisible_characters() -> None:
    result = pseudonymize("电话 139\u200b1234\u200b5678")
    assert restore(result.text, result.mapping) == "电话 13912345678"


def test_the_map_never_prints_its_values() -> None:
    result = pseudonymize("电话13800138000 邮箱 a@example.com")
    assert "13800138000" not in repr(result) + repr(result.mapping) + str(result.mapping)
    assert "a@example.com" not in repr(result) + repr(result.mapping)
    assert repr(result.mapping) == "RedactionMap(2 placeholders)"


def test_the_map_can_be_rebuilt_from_text_and_entities() -> None:
    text = "手机 +86 139 1234 5678，邮箱 a@example.com"
    result = pseudonymize(text)
    rebuilt = RedactionMap.from_entities(text, result.entities)
    assert rebuilt == result.mapping
    assert pseudonymize("再说一次 13912345678", mapping=rebuilt).text == "再说一次 [CN_MOBILE_1]"


def test_streamed_answers_restore_placeholders_split_across_deltas() -> None:
    mapping = pseudonymize("电话13800138000").mapping
    restorer = PlaceholderRestorer(mapping)
    released = [restorer.feed(delta) for delta in ("您好，号码是 [CN_MO", "BILE_1", "]，", "请记 [", "好")]
    released.append(restorer.finish())
    assert released == ["您好，号码是 ", "", "13800138000，", "请记 ", "[好", ""]
    assert "".join(released) == "您好，号码是 13800138000，请记 [好"
    # Without placeholders to restore nothing is held back.
    assert PlaceholderRestorer(RedactionMap()).feed("[CN_MO") == "[CN_MO"


def test_redact_keeps_its_original_signature() -> None:
    text = "电话 13800138000"
    redacted, entities = redact(text, ["cn_mobile"])
    assert redacted == "电话 [CN_MOBILE_1]"
    assert entities[0].type == "cn_mobile" and text[slice(*entities[0].span)] == "13800138000"


# ---------------------------------------------------------------------------------------------
# Quality on the shared dev file
# ---------------------------------------------------------------------------------------------


def _load_eval_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_pii", EVAL_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_dev_file_recall_and_precision_per_covered_type() -> None:
    if not PII_DEV.is_file():
        pytest.skip(f"the shared PII dev file is not here: {PII_DEV}")
    eval_pii = _load_eval_script()
    lines = eval_pii.predict(eval_pii.read_lines(PII_DEV))
    for kind in eval_pii.COVERED:
        # Identity and card numbers failing their check digit are not gold (see eval_pii.py).
        s = eval_pii.score(lines, kind, "valid", "exact")
        assert s.recall >= 0.9, f"{kind}: recall {s.recall:.3f} ({s.fn} missed)"
        assert s.precision >= 0.9, f"{kind}: precision {s.precision:.3f} ({s.fp} false positives)"
