"""token_char_ends decodes each window of ids once per tokenizer: name mode and generate ask for the same few-token
windows (a label's tokens, `"bbox_2d": [`) on every box of every photo, and each decode through transformers is
tens of microseconds of Python (bench/predict_speed.py)."""

import gc
import weakref

from tests.infer.test_predictor import _CountingTokenizer  # the real tokenizer, counting the ids it decodes


ANSWER = '[{"bbox_2d": [12, 40, 98, 77], "label": "螺丝连接点/BBU安装螺丝/连接正确"}]'


def test_a_window_decoded_once_is_not_decoded_again_and_reads_the_same(tiny):
    from bbuvl.infer.predictor import token_char_ends

    tok = tiny[1].tokenizer
    ids = tok(ANSWER, add_special_tokens=False)["input_ids"]
    counting = _CountingTokenizer(tok)
    first = token_char_ends(counting, ids)
    once = counting.decoded
    assert once > 0 and first[-1] == len(ANSWER)
    assert token_char_ends(counting, ids) == first
    assert counting.decoded == once  # the same answer again: every window remembered
    other = tok(ANSWER.replace("12, 40", "13, 41"), add_special_tokens=False)["input_ids"]
    ends = token_char_ends(counting, other)
    assert ends[-1] == len(tok.decode(other, skip_special_tokens=True))
    assert counting.decoded - once < once // 2  # another box, the same label: only its new windows are decoded


def test_the_remembered_windows_do_not_keep_their_tokenizer(tiny):
    from bbuvl.infer.predictor import token_char_ends

    counting = _CountingTokenizer(tiny[1].tokenizer)
    token_char_ends(counting, tiny[1].tokenizer(ANSWER, add_special_tokens=False)["input_ids"])
    gone = weakref.ref(counting)
    del counting
    gc.collect()
    assert gone() is None  # a server loading checkpoint after checkpoint keeps none of their tokenizers
