"""head: the detection head on one forward pass, its captions (by default) constrained to the checkpoint's labels;
score = objectness x caption likelihood."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Sequence

import torch

from bbuvl.data.faults import Faults
from bbuvl.infer.predictor import Detection, ImageResult
from bbuvl.model.box_ops import nms, to_xyxy

if TYPE_CHECKING:
    from bbuvl.infer.options import PredictOptions
    from bbuvl.infer.predictor import Predictor, Prepared

logger = logging.getLogger(__name__)


def caption_vocabulary(predictor: "Predictor", constrained: bool) -> dict[tuple[int, ...], str] | None:
    """The checkpoint's labels by their caption token ids (tokenised as training tokenises captions), when the
    head's captions are to be constrained to them; None when not (off, or the checkpoint lists no labels)."""
    if not constrained:
        return None
    if not predictor.prompt.labels:
        logger.warning("constrained captions are off: the checkpoint's prompt.json lists no labels")
        return None
    return {tuple(predictor.tokenizer.encode(label, add_special_tokens=False)): label for label in predictor.prompt.labels}


def names_nothing(cfg: Any) -> bool:
    """Whether the checkpoint's captions were taught to name nothing (a caption refit with `background`, or training
    with `loss.caption_nothing_weight`): then each label is scored against the empty caption too, and a box whose
    likeliest caption is empty is no detection."""
    refit = cfg.detection.caption_refit
    return (refit.steps > 0 and refit.background > 0) or cfg.loss.caption_nothing_weight > 0


Queries = list[list[tuple[Detection, float]]]  # per kept query, its labels likeliest first, with its objectness


def non_finite(boxes: torch.Tensor, objectness: torch.Tensor) -> ValueError | None:
    """The error of one photo whose head boxes `[Q, 4]` are not all finite or whose objectness `[Q]` holds NaN (a head
    whose weights diverged or overflow), else None."""
    # clamp keeps NaN: a head whose box regression diverged wrote NaN into the predictions, and the server's JSON
    # answer failed as a bare 500; the photo's error names it instead. NaN objectness kept no query, a silent "pass".
    what = [name for name, bad in (("boxes", not bool(torch.isfinite(boxes).all())),
                                   ("objectness", bool(torch.isnan(objectness).any()))) if bad]
    if not what:
        return None
    return ValueError(f"the detection head gave non-finite {' and '.join(what)} (NaN or infinity): its weights "
                      "diverged or overflow; use an earlier checkpoint")


@torch.inference_mode()
def head_queries(predictor: "Predictor", prepared: Sequence["Prepared"],
                 options: "PredictOptions") -> list[Queries | ValueError]:
    """Per image, the head's kept queries, each its labels likeliest first (`labels_per_box` of them, one box) as
    detections (score = objectness x caption likelihood) with the query's objectness; or, for a photo the head gave
    non-finite boxes, that photo's error (`non_finite`), while the batch's other photos get their queries.

    Constrained, every caption is one of the checkpoint's labels; unconstrained, a caption may come out
    empty (the head's first token its end): such a box keeps an empty label, for the caller to decide.
    """
    det = predictor.model.detect(predictor.batch(prepared, with_teachers=False, for_generation=False), options.queries)
    head = predictor.model.detection_head
    vocabulary = caption_vocabulary(predictor, options.constrained)
    nothing = vocabulary is not None and names_nothing(predictor.cfg)
    boxes = to_xyxy(det.boxes.float(), head.box_format).clamp(0, 1).cpu()
    objectness = det.objectness_logits.float().sigmoid().cpu()
    out: list[Queries | ValueError] = []
    for b, p in enumerate(prepared):
        # One photo's NaN failed its whole batch, each photo then predicted again alone (a pass each)
        if (failed := non_finite(boxes[b], objectness[b])) is not None:
            out.append(failed)
            continue
        keep = torch.nonzero(objectness[b] >= options.objectness_threshold).flatten()
        queries: Queries = []
        if keep.numel() and vocabulary is not None and options.labels_per_box > 1:
            queries = _ranked_labels(predictor, det.query_hidden[b, keep.to(det.query_hidden.device)], vocabulary,
                                     [(boxes[b, q].tolist(), float(objectness[b, q])) for q in keep.tolist()], p.size,
                                     options.labels_per_box, nothing)
        elif keep.numel():
            allowed = None if vocabulary is None else list(vocabulary) + ([()] if nothing else [])
            ids, logp = head.generate_captions(det.query_hidden[b, keep.to(det.query_hidden.device)], captions=allowed)
            ids, logp = ids.cpu(), logp.cpu()
            for j, q in enumerate(keep.tolist()):
                toks = [t for t in ids[j].tolist() if t not in (head.eos_token_id, head.pad_token_id)]
                if nothing and not toks:
                    continue  # the head says nothing is there
                n = int((ids[j] != head.pad_token_id).sum())
                caption_p = math.exp(float(logp[j, :n].mean())) if n else 0.0
                obj = float(objectness[b, q])
                label = vocabulary[tuple(toks)] if vocabulary is not None else predictor.tokenizer.decode(toks).strip()
                queries.append([(Detection(predictor.contract.from_unit(boxes[b, q].tolist(), p.size), label,
                                           obj * caption_p), obj)])
        if options.part_nms is not None and queries:
            queries = one_box_per_part(queries, predictor.faults, options.part_nms)
        if options.nms_iou and queries:
            queries = _label_nms(queries, options.nms_iou)
        queries.sort(key=lambda labels: (labels[0][0].bbox_2d[1], labels[0][0].bbox_2d[0]))
        out.append(queries)
    return out


def _label_nms(queries: list[list[tuple[Detection, float]]], iou: float) -> list[list[tuple[Detection, float]]]:
    """The queries' labels left by per-label NMS (each label against the other boxes of that label), each query
    keeping those of its labels that are left; a query with none left is dropped. Queries come best score first, so
    the position sort after it leaves two boxes on one corner in score order."""
    rows = [(j, f) for j, labels in enumerate(queries) for f in labels]
    t_boxes = torch.tensor([d.bbox_2d for _, (d, _) in rows])
    t_scores = torch.tensor([d.score for _, (d, _) in rows])
    classes = torch.tensor([hash(d.label) % (1 << 31) for _, (d, _) in rows])
    kept = nms(t_boxes, t_scores, iou, classes).tolist()  # best score first
    left: list[list[tuple[Detection, float]]] = [[] for _ in queries]
    for i in sorted(kept):  # in the order the query listed its labels
        left[rows[i][0]].append(rows[i][1])
    return [left[j] for j in dict.fromkeys(rows[i][0] for i in kept)]


@torch.inference_mode()
def head_objects(predictor: "Predictor", prepared: Sequence["Prepared"],
                 options: "PredictOptions") -> list[list[tuple[Detection, float]] | ValueError]:
    """Per image, the head's detections (score = objectness x caption likelihood) with their objectness: each kept
    query's labels (`head_queries`), one row each, so a box comes `labels_per_box` times; or that photo's error."""
    return [queries if isinstance(queries, ValueError) else [f for labels in queries for f in labels]
            for queries in head_queries(predictor, prepared, options)]


def _ranked_labels(predictor: "Predictor", query_hidden: torch.Tensor, vocabulary: dict[tuple[int, ...], str],
                   queries: list[tuple[list[float], float]], size: tuple[int, int],
                   k: int, nothing: bool = False) -> list[list[tuple[Detection, float]]]:
    """Each query's `k` likeliest labels, likeliest first, each a detection of score objectness x P(label | query).

    P(label | query) is the caption decoder's probability of the whole label renormalised over the checkpoint's
    labels: a screw the head finds 70 % seated and 30 % loose is reported as both, so a fault it is unsure of is
    still found at a score that says how unsure (docs/faults_learning.md, "Labels per box"). With `nothing`, the
    empty caption is among them: what it takes is the head's belief that no part is there, and no label gets it.
    """
    head = predictor.model.detection_head
    ids = list(vocabulary)
    names = [vocabulary[i] for i in ids]
    scored = ids + [()] if nothing else ids
    probs = head.caption_logprobs(query_hidden, scored).softmax(-1)[:, :len(ids)].cpu()  # [M, L]
    top = probs.topk(min(k, len(ids)), dim=-1)
    found = []
    for j, (box, obj) in enumerate(queries):
        bbox = predictor.contract.from_unit(box, size)
        found.append([(Detection(list(bbox), names[i], obj * p_label), obj)
                      for p_label, i in zip(top.values[j].tolist(), top.indices[j].tolist())])
    return found


def one_box_per_part(queries: Sequence[list[tuple[Detection, float]]], faults: Faults,
                     iou: float) -> list[list[tuple[Detection, float]]]:
    """The queries left when, of two whose boxes overlap above `iou` and name the same part, the less sure is dropped
    with all its labels.

    Each query is its labels, likeliest first, with the query's objectness. The part a query names is its likeliest
    label's judged kind (data/faults.py: a screw whatever its state), or that label itself for a label no inspection
    judges; the surer query is the one of higher objectness x P(that part), its labels naming it summed. Without it, a
    second box on a correct screw, offset from it, reads its pixels as a screw out of place and fails the photo
    (docs/faults_learning.md, "One box a part").
    """
    kept = [q for q in queries if q]
    if len(kept) < 2:
        return kept

    def part(label: str) -> str:
        judged = faults.kind_state(label)
        return judged[0] if judged else label

    parts: dict[str, int] = {}
    classes, sure = [], []
    for labels in kept:
        named = part(labels[0][0].label)
        classes.append(parts.setdefault(named, len(parts)))
        sure.append(sum(d.score for d, _ in labels if part(d.label) == named))
    order = nms(torch.tensor([labels[0][0].bbox_2d for labels in kept], dtype=torch.float32),
                torch.tensor(sure, dtype=torch.float32), iou, torch.tensor(classes))
    return [kept[i] for i in sorted(order.tolist())]


def run(predictor: "Predictor", prepared: Sequence["Prepared"],
        options: "PredictOptions") -> list[ImageResult | Exception]:
    """The head's boxes with their captions as labels; a box whose caption came out empty names nothing a
    score could count (eval needs a label), so it is left out, and said. A photo the head gave non-finite boxes gets
    its error as its result."""
    found = head_objects(predictor, prepared, options)
    unnamed = sum(not d.label for f in found if not isinstance(f, Exception) for d, _ in f)
    if unnamed:
        logger.warning("head mode: %d box(es) whose caption came out empty were left out (constrained decoding, "
                       "the default, names every box with one of the checkpoint's labels)", unnamed)
    return [f if isinstance(f, Exception) else
            ImageResult([d for d, _ in f if d.label], None, p.size[0], p.size[1], prompt_tokens=predictor.prompt_tokens(p))
            for f, p in zip(found, prepared)]
