"""One key for labels, one for file names: what people type differently is equal, what differs stays different."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bbuvl.data.text import (clean_label, did_you_mean, file_name_key, label_key, names_apart, quote_name, same_label,
                             show_composition, show_text)

SCREW = "螺丝连接点/BBU安装螺丝/连接正确"


@pytest.mark.parametrize("typed", [
    "螺丝\u200b连接点/BBU安装螺丝/连接正确",  # zero-width space
    "螺丝连接点/BBU\u200c安装\u200d螺丝/连接正确\u2060",  # non-joiner, joiner, word joiner
    "\ufeff螺丝连接点/BBU安装螺丝/连接正确",  # a BOM pasted with the text
    "螺丝连接点／ＢＢＵ安装螺丝／连接正确",  # full-width slash and letters from a Chinese input method
    " 螺丝连接点 / BBU安装螺丝 / 连接正确\u3000",  # spaces around parts, ideographic space
    "螺丝连接点/BBU安\u00ad装螺丝/连接正确",  # soft hyphen
])
def test_labels_typed_differently_are_one_label(typed):
    assert label_key(typed) == label_key(SCREW) == SCREW and same_label(typed, SCREW)


def test_composed_and_decomposed_accents_are_one_label_and_one_file_name():
    nfc, nfd = unicodedata.normalize("NFC", "câble/é"), unicodedata.normalize("NFD", "câble/é")
    assert nfc != nfd
    assert label_key(nfd) == label_key(nfc) and clean_label(nfd) == nfc
    assert file_name_key(nfd) == file_name_key(nfc) == nfc
    assert clean_label("e\u200b\u0301") == label_key("e\u200b\u0301") == "\u00e9"  # joined once the space is gone


@pytest.mark.parametrize("a, b", [
    (SCREW, "螺丝连接点/BBU安装螺丝/连接错误"), ("BBU", "bbu"), ("a/b", "a/b/c"), ("线缆", "线缆 已绑扎"),
])
def test_different_labels_stay_different(a, b):
    assert label_key(a) != label_key(b) and not same_label(a, b)


def test_clean_label_drops_invisible_characters_but_keeps_full_width_punctuation():
    assert clean_label(" 线缆（已\u200b绑扎）／ＯＫ\u200b ") == "线缆（已绑扎）/ＯＫ"


def test_file_names_fold_nothing_but_composition():
    assert file_name_key("ＩＭＧ\u200b.jpg") == "ＩＭＧ\u200b.jpg"


def test_show_text_escapes_what_cannot_be_seen():
    assert show_text("螺丝\u200b连接点") == "'螺丝\\u200b连接点'"
    assert show_text("a\tb\x07\U000e0001") == "'a\\tb\\x07\\U000e0001'"
    assert show_text("线缆（已绑扎）") == "'线缆（已绑扎）'"


def test_did_you_mean_names_the_nearest_label_and_what_differs():
    hint = did_you_mean("螺丝连接点/BBU安装螺丝/连接正常\u200b", [SCREW, "线缆/已绑扎"])
    assert f"nearest known label: '{SCREW}'" in hint
    assert "'常\\u200b' where it has '确'" in hint
    assert did_you_mean("完全不同", [SCREW]) == ""


text = st.text(st.characters(codec="utf-8"), max_size=20)


@given(text)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_label_key_is_idempotent_and_ignores_cleaning(s):
    assert label_key(label_key(s)) == label_key(s)
    assert label_key(clean_label(s)) == label_key(s)
    assert clean_label(clean_label(s)) == clean_label(s)


def test_names_that_differ_only_in_composition_are_shown_apart_and_others_as_they_are():
    nfc, nfd = "images/caf\u00e9.jpg", "images/cafe\u0301.jpg"
    # Before: both printed as `images/café.jpg`, and a reader was told two names differ that look the same.
    assert names_apart(nfd, nfc) == ["'images/cafe\\u0301.jpg'", "'images/caf\\u00e9.jpg'"]
    assert names_apart("螺丝.jpg", nfc) == ["螺丝.jpg", nfc]  # all composed: nothing to tell apart, shown as they are
    assert show_composition("螺丝\u200b\U0001d15e.jpg") == "'螺丝\\u200b\\U0001d15e.jpg'"  # NFD takes 𝅗𝅥 apart
    assert quote_name("caf\u00e9") == "'caf\u00e9'" and quote_name("cafe\u0301") == "'cafe\\u0301'"


def test_a_joiner_that_joins_is_kept_in_the_written_label_and_a_stray_one_dropped():
    # Every zero-width joiner and non-joiner was dropped: `👩‍🔧` became two pictures, a Persian word lost the break
    # between its letters. The key still ignores them, so both spellings are one label.
    mechanic, persian = "\U0001f469\u200d\U0001f527", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    heart_on_fire = "\u2764\ufe0f\u200d\U0001f525"
    for joined in (mechanic, persian, heart_on_fire):
        assert clean_label(f"标签/{joined}") == f"标签/{joined}"
        assert label_key(joined) == label_key(joined.replace("\u200d", "").replace("\u200c", ""))
    for stray in ("螺丝\u200d连接点", "BBU\u200c安装", "\u200d螺丝", "螺丝\u200c", "a\u200db", "标签/\u200c\u0645"):
        assert "\u200c" not in clean_label(stray) and "\u200d" not in clean_label(stray), stray
