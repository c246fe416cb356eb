"""generate: greedy decoding of the JSON answer, by default constrained to the answer grammar and the checkpoint's
labels (infer/constrained.py), parsed robustly; score = mean probability of the object's tokens (box and label)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from bbuvl.infer.dropped_rows import GIVEN_UP
from bbuvl.infer.parse import UNREADABLE_ANSWER, answer_cut, parse_detections
from bbuvl.infer.predictor import Detection, ImageResult, token_char_ends

if TYPE_CHECKING:
    from bbuvl.infer.options import PredictOptions
    from bbuvl.infer.predictor import Predictor, Prepared


@torch.inference_mode()
def answers(predictor: "Predictor", prepared: Sequence["Prepared"], options: "PredictOptions",
            with_teachers: bool = False) -> list[ImageResult]:
    """Each photo's answer decoded, parsed and scored (after the checkpoint's teachers when `with_teachers`)."""
    batch = predictor.batch(prepared, with_teachers)
    constraint = predictor.answer_constraint(prepared, options.constrained, options.max_new_tokens)
    awaited = [p.awaited for p in prepared]
    new, logprobs = predictor.greedy(batch, constraint, options.max_new_tokens, awaited)
    read = batch.attention_mask.sum(1).tolist()  # each row's prompt, teachers' turns included, less the padding
    del batch
    results = read_answers(predictor, prepared, new, logprobs)
    budget_cut = getattr(constraint, "cut", None)  # the grammar closed the answer for the budget (infer/constrained.py)
    for row, r in enumerate(results):
        r.prompt_tokens, r.completion_tokens = int(read[row]), predictor.written(new[row])
        # Unconstrained, an answer that never wrote its end used every token: it was cut wherever it stood.
        r.cut = answer_cut(r.raw or "", bool(budget_cut[row]) if budget_cut is not None else (
            len(answer_ids(predictor, new[row])) >= options.max_new_tokens))
        if awaited[row] is not None and awaited[row].dropped:  # its answer was ended where no one read it any more
            r.error = GIVEN_UP
    return results


def answer_ids(predictor: "Predictor", row: torch.Tensor) -> list[int]:
    """A generated row's ids up to (not including) the first token that ends an answer."""
    return row.tolist()[:predictor.answer_end(row)]


def read_answers(predictor: "Predictor", prepared: Sequence["Prepared"], new: torch.Tensor,
                 logprobs: torch.Tensor, keep_repeats: bool = False) -> list[ImageResult]:
    """Generated rows `[B, T]` parsed, their boxes taken to each stored photo; score = mean probability of the
    object's tokens by `logprobs` `[B, T]`. An object written again exactly is dropped, unless `keep_repeats` (GRPO's
    rewards count it: infer/parse.py)."""
    results = []
    tok = predictor.tokenizer
    for row, p in enumerate(prepared):
        ids = answer_ids(predictor, new[row])
        lp = logprobs[row, :len(ids)]
        text = tok.decode(ids, skip_special_tokens=True)
        parsed = parse_detections(text, keep_repeats)
        ends = token_char_ends(tok, ids) if parsed.objects else []
        dets = []
        for obj in parsed.objects:
            start, end = obj["span"]
            toks = [i for i, e in enumerate(ends) if e > start and (i == 0 or ends[i - 1] < end)]
            score = float(lp[toks].exp().mean()) if toks else 0.0
            dets.append(Detection(predictor.contract.to_stored(obj["bbox_2d"], p.size), obj["label"], score))
        results.append(ImageResult(dets, text, p.size[0], p.size[1], None if parsed.ok else UNREADABLE_ANSWER))
    return results


def run(predictor: "Predictor", prepared: Sequence["Prepared"], options: "PredictOptions") -> list[ImageResult]:
    """The answer to each photo alone."""
    return answers(predictor, prepared, options)
