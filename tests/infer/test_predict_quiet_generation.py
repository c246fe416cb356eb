"""bbuvl predict says nothing of the sampling and beam flags a greedy generation_config.json keeps (an export written
before `model export` left them out: `"do_sample": false` beside vLLM's `"temperature": 0`)."""

from __future__ import annotations

import json
import warnings

import pytest

from tests.infer.test_predict_one_beam import predicted_with, transformers_said

pytestmark = pytest.mark.usefixtures("one_thread")


def test_predict_on_a_greedy_config_with_sampling_flags_says_nothing_of_them(tiny, tiny_model_dir, tmp_path):
    with transformers_said() as said, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        r = predicted_with({"do_sample": False, "temperature": 0, "top_p": 0.8, "length_penalty": 2.0}, tiny,
                           tiny_model_dir, tmp_path, photos=1)
    assert r.exit_code == 0, r.output
    # Before: "The following generation flags are not valid and may be ignored: ['temperature', 'top_p',
    # 'length_penalty']" at every load
    assert not [m for m in said if "generation flags" in m or "temperature" in m], said
    assert not [str(w.message) for w in warned if "generation" in str(w.message)], [str(w.message) for w in warned]
    line = json.loads((tmp_path / "pred.jsonl").read_text(encoding="utf-8"))
    assert line["error"] in (None, "unparseable output"), line
