"""name: the head's boxes, each named by the VLM: its answer is begun with the box and the VLM writes the label,
constrained to the checkpoint's labels; score = objectness x label likelihood (docs/localisation.md,
"Box-prompted naming")."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence

import torch

from bbuvl.infer.continuations import PromptRead
from bbuvl.infer.dropped_rows import GIVEN_UP, gone
from bbuvl.infer.modes.head import head_queries
from bbuvl.infer.parse import parse_detections
from bbuvl.infer.predictor import Detection, ImageResult, token_char_ends

if TYPE_CHECKING:
    from transformers import LogitsProcessor

    from bbuvl.infer.options import PredictOptions
    from bbuvl.infer.predictor import Predictor, Prepared


def answer_prefix(predictor: "Predictor", model_box: list[int]) -> tuple[list[int], str]:
    """Token ids (and their text) of a one-object answer up to the label, cut where the answer's own tokens break.

    The ids are those of the full answer `format_answer` writes, so the model sees the tokenisation it was
    trained on; the cut is the last token boundary before the label's first character.
    """
    probe = predictor.prompt.labels[0] if predictor.prompt.labels else "x"
    full = json.dumps([{"bbox_2d": model_box, "label": probe}], ensure_ascii=False)
    label_start = full.index('"label": ') + len('"label": ')
    ids = predictor.tokenizer.encode(full, add_special_tokens=False)
    ends = token_char_ends(predictor.tokenizer, ids)
    k = max((i + 1 for i, e in enumerate(ends) if e <= label_start), default=0)
    return ids[:k], full[: ends[k - 1]] if k else ""


def read_labels(predictor: "Predictor", new: torch.Tensor, logprobs: torch.Tensor) -> tuple[list[str], list[float]]:
    """Each decoded row's text and the mean probability of its tokens up to the label's closing quote."""
    texts, probs = [], []
    for row in range(new.shape[0]):
        ids = new[row].tolist()
        text = predictor.tokenizer.decode(ids, skip_special_tokens=True)
        ends = token_char_ends(predictor.tokenizer, ids)
        # The label ends at its closing quote: the first '"' after the opening one.
        close = text.find('"', text.find('"') + 1)
        n = next((i + 1 for i, e in enumerate(ends) if e > close), len(ids)) if close >= 0 else len(ids)
        texts.append(text)
        probs.append(float(logprobs[row, :n].exp().mean()) if n else 0.0)
    return texts, probs


@torch.inference_mode()
def run(predictor: "Predictor", prepared: Sequence["Prepared"],
        options: "PredictOptions") -> list[ImageResult | Exception]:
    """Head boxes, each named by the VLM: one row per box, the photo's prompt followed by
    `[{"bbox_2d": [box], "label": ` in answer coordinates, then decoding constrained to the checkpoint's labels. A
    photo the head gave non-finite boxes gets its error as its result, its boxes not named."""
    queried = head_queries(predictor, prepared, options)
    # One row a query: its labels (`labels_per_box` of them) share its box and objectness, and the VLM names the box
    # itself; a row for each of them wrote each box twice under labels_per_box 2, the same label and score.
    found = [[] if isinstance(queries, Exception) else [labels[0] for labels in queries] for queries in queried]
    constraint = predictor.labels_constraint()
    named: list[list[Detection]] = [[] for _ in prepared]
    # The head's pass read each prompt; naming reads it again (counted once) with each box's prefix, and writes labels.
    read = [predictor.prompt_tokens(p) for p in prepared]
    wrote = [0] * len(prepared)
    for i, (p, objs, out) in enumerate(zip(prepared, found, named)):
        if not objs or gone(p.awaited):  # a photo given up on names none of its boxes (infer/dropped_rows.py)
            continue
        # One row per box; the photo's prompt is read once for all of them (infer/continuations.py).
        rows = [(d, obj, *answer_prefix(predictor, predictor.contract.to_model(d.bbox_2d, p.size))) for d, obj in objs]
        prompt = PromptRead(predictor.student_sample(p))  # read by the LLM once for all its chunks of rows
        frame = predictor.contract.answer_extent(p.size)
        grammar = constraint.grammar(frame)
        budget = grammar.label_budget()
        for start in range(0, len(rows), options.batch_rows):
            if start and gone(p.awaited):
                break
            chunk = rows[start : start + options.batch_rows]
            states = []
            for *_, text in chunk:
                state = grammar.run(text.encode("utf-8"))
                if state is None:
                    raise ValueError(f"the answer prefix {text!r} is outside the answer grammar")
                states.append(state)
            new, logprobs = predictor.greedy_continued(prompt, [ids for _, _, ids, _ in chunk],
                                                       constraint.processor([frame] * len(chunk), budget, states), budget)
            texts, probs = read_labels(predictor, new, logprobs)
            read[i] += sum(len(ids) for _, _, ids, _ in chunk)
            wrote[i] += sum(predictor.written(row) for row in new)
            for (d, obj, _, prefix), text, prob in zip(chunk, texts, probs):
                parsed = parse_detections(prefix + text)
                if parsed.objects:
                    out.append(Detection(d.bbox_2d, parsed.objects[0]["label"], obj * prob))
    return [q if isinstance(q, Exception) else
            ImageResult(n, None, p.size[0], p.size[1], GIVEN_UP if p.awaited and p.awaited.dropped else None,
                        prompt_tokens=r, completion_tokens=w)
            for q, n, p, r, w in zip(queried, named, prepared, read, wrote)]
