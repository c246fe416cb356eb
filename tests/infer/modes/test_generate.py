"""generate mode: an object's score is the mean probability of the tokens that write it, and of no other."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from bbuvl.config import Config
from bbuvl.data.coords import CoordinateContract
from bbuvl.infer.modes.generate import read_answers
from bbuvl.infer.predictor import Predictor, Prepared
from bbuvl.model.checkpoint import Prompt

CABLE, BAFFLE = "线缆", "挡风板/已安装"
# One object a line, as an answer written without the grammar may be: each object's last token ("}) ends exactly
# where the object does, and the line break after it is neither object's.
ANSWER = ('[\n{"bbox_2d": [12, 40, 98, 77], "label": "线缆"}\n,\n'
          '{"bbox_2d": [5, 6, 7, 8], "label": "挡风板/已安装"}\n]')


def _token_ranges(tokenizer, ids: list[int]) -> list[tuple[int, int]]:
    """Each token's characters in the decoded answer, read from its prefixes (every token here is whole characters)."""
    ends = [len(tokenizer.decode(ids[:k + 1], skip_special_tokens=True)) for k in range(len(ids))]
    return list(zip([0, *ends[:-1]], ends))


def test_an_objects_score_is_the_mean_probability_of_its_own_tokens_only(tiny, tiny_family):
    predictor = Predictor(tiny[0], tiny[1], CoordinateContract(family=tiny_family),
                          Prompt("找出每个部件。", [CABLE, BAFFLE], "zh"), Config())
    ids = predictor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    first, second = ANSWER.index("{"), ANSWER.rindex("{")
    spans = [(first, ANSWER.index("}") + 1), (second, ANSWER.rindex("}") + 1)]
    ranges = _token_ranges(predictor.tokenizer, ids)
    assert ranges[-1][1] == len(ANSWER) and any(end == spans[0][1] for _, end in ranges)  # a token ends at the "}"
    # The tokens holding a character of the first object are sure at 0.5, of the second at 0.25, the rest at 0.01.
    probs = [0.5 if s < spans[0][1] and e > spans[0][0] else 0.25 if s < spans[1][1] and e > spans[1][0] else 0.01
             for s, e in ranges]
    assert probs.count(0.01) >= 3  # the brackets, the line breaks and the comma between the objects
    [result] = read_answers(predictor, [Prepared(Image.new("RGB", (112, 112)), (112, 112))],
                            torch.tensor([ids]), torch.tensor([probs]).log())
    assert [(d.label, d.score) for d in result.objects] == [(CABLE, pytest.approx(0.5, abs=1e-6)),
                                                            (BAFFLE, pytest.approx(0.25, abs=1e-6))]
