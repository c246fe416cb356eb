"""Choose the scale `tiles: auto` shows photos at, on validation photos (`bbuvl choose-tiles`, infer/tile_scale.py).

Each candidate is the checkpoint's own scale times a factor; a candidate whose grids on these photos are those of
one already scored is not predicted again. Of the candidates scoring within half a standard error of the best (the
jackknife's, over the validation photos, of the difference between the two scores), the cheapest wins (fewest
passes), then the factor nearest 1 (the training scale). On 8 whole cabinets a score moves by 0.1-0.17 between grids
by chance, and the best score alone picked 4x4 by 0.016 and 0.009 (0.10 and 0.07 errors) where 3x3 found more screws
and faults on every unseen seed; a whole error, the rule of model selection, let 2x2 in at 0.73 errors under 3x3 and
lost 0.3 of the screws' AP on unseen cabinets (docs/tiles.md, "Choosing the tile scale", "Where the rule chose
wrong").

The score is AP50 at the category level (every label of a category one class) over the categories the tiles answer
for that inspections judge (those with fault states, data/faults.py): with `inference.tile_whole_above`, a category
trained at a longest side of at least that share of a tile's frame is the whole pass's (infer/tiles.py,
`answering`), and its boxes do not depend on the grid. A mean over every label drowns the screws under the big parts
and the rare labels: on 8 whole cabinets of one seed the demo's checkpoint scored 2x2 highest per label (0.337
against 0.326) with its screws at 0.36 against 0.70 in 3x3 (docs/tiles.md, "Choosing the tile scale").
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from bbuvl.atomic import name_or_temporary, write_text_atomic
from bbuvl.data.faults import Faults
from bbuvl.data.jsonfile import jsonl_lines
from bbuvl.data.labels import label_at_level
from bbuvl.data.scale import SCALE_DECIMALS
from bbuvl.data.schema import resolve_image
from bbuvl.eval.left_out import per_category_left_out
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import read_ground_truth, read_predictions
from bbuvl.infer.options import PredictOptions
from bbuvl.infer.predictor import Detection, ImageResult, Predictor
from bbuvl.infer.tile_scale import REFINE_WITHIN, WITHIN, Candidate, ChosenTileScale, RefineScore
from bbuvl.infer.tiles import TilePlan, first_regions, grid_shape
from bbuvl.paths import real_path

# The per-category scores of one prediction file on all the photos, and with each left out in turn (`scores_of`)
Scores = tuple[dict[str, dict], list[dict[str, dict]]]
FACTORS = (0.5, 0.75, 1.0, 1.25)  # of the training scale: 2x2, 3x3, 4x4 and 5x5 for a photo 4x the frame's side
METRICS = ("AP50", "AP")


def tiled_categories(predictor: Predictor, size: tuple[int, int]) -> set[str] | None:
    """The categories (first label level) the tiles answer for in a photo of `size`, split as the checkpoint's plan
    splits them (infer/tiles.py, `TilePlan.whole_categories`) for a tile filling the photo's frame; None: every
    category (no split)."""
    plan = auto_plan(predictor, predictor.train_scale)
    if plan.whole_above is None or not plan.whole_sides:
        return None
    big = plan.whole_categories(plan.frame_side((0, 0, *size), size, predictor.contract))
    return {c for c, _ in plan.whole_sides} - big


def auto_plan(predictor: Predictor, scale: float | None) -> TilePlan:
    """The checkpoint's plan with `tiles: auto` at `scale` (tiles filling the frame: no tile_zoom)."""
    plan = predictor.options(tiles="auto", tile_zoom=None).plan(scale, predictor.part_sides, predictor.long_sides,
                                                                predictor.tile_refine)
    assert plan is not None  # tiles: auto always plans
    return plan


def judged_tiled(tiled: set[str] | None, judged: set[str]) -> set[str] | None:
    """The categories the score is read on: the tiles' categories that inspections judge (those with fault states),
    else all the tiles' categories."""
    if tiled is None:
        return judged or None
    return (tiled & judged) or tiled


def category_score(per_category: dict[str, dict], metric: str, categories: set[str] | None) -> float | None:
    """The mean `metric` over `categories` (first label level) that hold ground truth (over all with None)."""
    values = [m[metric] for c, m in per_category.items()
              if m.get(metric) is not None and m.get("gt") and (categories is None or c in categories)]
    return sum(values) / len(values) if values else None


def prediction_file(out: str | Path, scale: float) -> Path:
    """Where `choose_tile_scale` writes a candidate scale's predictions."""
    return Path(out) / f"pred_scale_{scale:g}.jsonl"


def refined_file(out: str | Path, scale: float, every: bool = False) -> Path:
    """Where `choose_tile_scale` writes the chosen scale's predictions with the kept categories refined by the tiles
    (`every`: with every candidate category refined)."""
    return Path(out) / f"pred_scale_{scale:g}_{'refine_all' if every else 'refined'}.jsonl"


# The only names a run writes into --out (`prediction_file`, `refined_file`: a scale as `:g` prints it), and their
# temporaries'.
_OWN_NAME = re.compile(name_or_temporary(r"pred_scale_[0-9.e+-]+(?:_refined|_refine_all)?\.jsonl"))


def written_by_choose_tiles(name: str) -> bool:
    """Whether `name`, relative to --out, is one a run of `choose_tile_scale` writes there."""
    return _OWN_NAME.fullmatch(name) is not None


def chosen_predictions(out: str | Path, chosen: ChosenTileScale) -> Path:
    """The predictions of the validation photos as `auto` now predicts them: the chosen scale, the kept refinement."""
    return refined_file(out, chosen.scale) if chosen.refine else prediction_file(out, chosen.scale)


def whole_categories(predictor: Predictor, size: tuple[int, int], scale: float) -> list[str]:
    """The categories the whole pass alone answers for in a photo of `size` at `scale` (infer/tiles.py, `answering`):
    those the tiles could refine."""
    plan = auto_plan(predictor, scale)
    if plan.whole_above is None or not plan.whole_sides or not plan.tiles(size, predictor.contract):
        return []
    return sorted(plan.whole_categories(plan.frame_side((0, 0, *size), size, predictor.contract)))


def _write_lines(path: Path, lines: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))


def with_categories(predictor: Predictor, base: dict, refined: dict, categories: set[str],
                    options: PredictOptions) -> dict:
    """`base`'s line with the objects of `categories` (first label level) taken from `refined`, its verdict judged
    again under `options`. The merge groups boxes of one label and the refinement moves only its categories' whole-pass
    boxes, so this is the line a prediction refining just `categories` writes."""
    objects = ([o for o in base["objects"] if label_at_level(o["label"], 1) not in categories]
               + [o for o in refined["objects"] if label_at_level(o["label"], 1) in categories])
    objects.sort(key=lambda o: -o["score"])
    result = ImageResult([Detection(list(o["bbox_2d"]), o["label"], o["score"]) for o in objects], base.get("raw"),
                         base["width"] or 0, base["height"] or 0, base.get("error"), base.get("parse_ok"), 0,
                         bool(base.get("cut")), bool(base.get("tiled")))
    return {**base, "objects": objects, "verdict": predictor.verdict(result, options).to_dict()}


def _predict_at(predictor: Predictor, paths: list[str], mode: str, scale: float,
                refine: list[str]) -> list[dict]:
    """Predictions lines of `paths` with `tiles: auto` at `scale`, refining `refine`; the predictor is left as it
    was."""
    batch = predictor.cfg.inference.batch_size
    original = predictor.train_scale
    try:
        predictor.train_scale = scale
        lines: list[dict] = []
        for i in range(0, len(paths), batch):
            lines += predictor.predict_lines(paths[i:i + batch], mode, tiles="auto", tile_zoom=None,
                                             tile_refine=refine)
    finally:
        predictor.train_scale = original
    return lines


def choose_refine(predictor: Predictor, gt: Path, out: Path, scale: float, mode: str, metric: str,
                  within: float = REFINE_WITHIN, base: Scores | None = None) -> list[RefineScore]:
    """Predict `gt`'s photos at `scale` once more with every category the whole pass answers for refined by the tiles,
    score each such category (`metric` at the category level) with and without, and keep those that gain more than
    `within` jackknife standard errors; the predictions with the kept ones refined go to `refined_file`. `base`: the
    scores of `prediction_file(out, scale)` (`scores_of`) where the caller has them, not computed again."""
    records = read_ground_truth(gt)
    held = {label_at_level(o.desc, 1) for r in records for o in r.objects}
    candidates = [c for c in whole_categories(predictor, records[0].size, scale) if c in held]
    if not candidates:
        return []
    paths = [str(resolve_image(gt, r.images[0])) for r in records]
    lines = _predict_at(predictor, paths, mode, scale, candidates)
    every = refined_file(out, scale, every=True)
    _write_lines(every, lines)
    base_file = prediction_file(out, scale)
    base_lines, refined_lines = read_predictions(base_file), read_predictions(every)

    def value(scores: dict, category: str) -> float | None:
        return (scores.get(category) or {}).get(metric)

    all_base, base_left_out = base if base is not None else scores_of(records, gt, base_file, base_lines, predictor.faults)
    all_refined, refined_left_out = scores_of(records, gt, every, refined_lines, predictor.faults)
    left_out = list(zip(base_left_out, refined_left_out))
    scores = []
    for c in candidates:
        without, refined = value(all_base, c), value(all_refined, c)
        spread = (jackknife_spread([value(r, c) for _, r in left_out], [value(b, c) for b, _ in left_out])
                  if len(records) > 1 else None)
        gain = None if without is None or refined is None else refined - without
        kept = gain is not None and gain > 0 and (spread is None or gain > within * spread)
        scores.append(RefineScore(c, without, refined, spread, kept))
    kept = {s.category for s in scores if s.kept}
    if kept:
        raw_base = [json.loads(t) for t in jsonl_lines(base_file.read_text(encoding="utf-8")) if t.strip()]
        options = predictor.options(mode, tiles="auto", tile_zoom=None, tile_refine=sorted(kept))
        _write_lines(refined_file(out, scale), [with_categories(predictor, b, r, kept, options)
                                                for b, r in zip(raw_base, lines)])
    return scores


def scores_of(records: list, gt: Path, pred: Path, lines: list, faults: Faults) -> Scores:
    """The per-category scores at the category level of predictions `lines` (read from `pred`) on all the photos, and
    with each left out in turn (none for one photo): what a candidate scale's score and spread, and the refinement's,
    are read from. The chosen scale's are scored once, for the choice and for its refinement."""
    per_category = evaluate_predictions(records, gt, lines, pred, level=1, faults=faults).metrics["per_category"] or {}
    # Each photo left out in turn, from one evaluation: n evaluations afresh were quadratic in the photos
    left_out = per_category_left_out(records, gt, lines, pred, 1, faults) if len(records) > 1 else []
    return per_category, left_out


def best_candidate(candidates: Sequence[Candidate], train_scale: float, within: float = WITHIN) -> Candidate:
    """Of the candidates scoring within `within` times their `spread` of the best score, the fewest passes, then the
    scale nearest `train_scale` (a spread not measured: equal scores only; none scored: the nearest)."""
    ranked = [c for c in candidates if c.score is not None]
    if not ranked:
        return min(candidates, key=lambda c: (abs(c.scale / train_scale - 1.0), c.passes, c.scale))
    top = max(c.score for c in ranked)
    pool = [c for c in ranked if c.score >= top - within * (c.spread or 0.0)]
    return min(pool, key=lambda c: (c.passes, abs(c.scale / train_scale - 1.0), c.scale))


def jackknife_spread(best: Sequence[float | None], other: Sequence[float | None]) -> float | None:
    """The jackknife standard error of (best - other) from their scores with each photo left out in turn; None when
    fewer than two photos, or a replicate could not be scored."""
    if len(best) < 2 or len(best) != len(other) or any(v is None for v in (*best, *other)):
        return None
    diffs = [b - o for b, o in zip(best, other)]
    mean = sum(diffs) / len(diffs)
    return math.sqrt((len(diffs) - 1) / len(diffs) * sum((d - mean) ** 2 for d in diffs))


def zoom_wins(tile_zoom: float | None, scale: float) -> list[str]:
    """A note when the checkpoint's `inference.tile_zoom` is set: `auto` then cuts at that zoom in predict and serve
    (infer/options.py, `PredictOptions.plan`), and the chosen `scale`, measured without it, is never used."""
    if tile_zoom is None:
        return []
    return [f"the checkpoint's inference.tile_zoom ({tile_zoom:g}) wins over the chosen scale: `tiles: auto` in predict "
            f"and serve shows every tile at {tile_zoom:g} frame pixels per stored pixel and cuts its grid for that, "
            f"never at {scale:g}, which was measured with tiles filling the frame, as tile_zoom null shows them "
            "(docs/tiles.md, \"Choosing the tile scale\")"]


def choose_tile_scale(predictor: Predictor, gt: str | Path, out: str | Path, train_scale: float | None,
                      mode: str = "head", factors: Sequence[float] = FACTORS, metric: str = "AP50",
                      on_candidate: Callable[[Candidate], None] | None = None, within: float = WITHIN,
                      refine: bool = True, refine_within: float = REFINE_WITHIN) -> ChosenTileScale:
    """Predict `gt`'s photos with `tiles: auto` at each candidate scale (`factors` x `train_scale`, the checkpoint's
    training scale, 1.0 when it has none), score each with `metric`, return the best
    (`best_candidate`, `within` standard errors); with `refine`, also the categories the tiles refine at it
    (`choose_refine`, `refine_within` standard errors).

    Each candidate's predictions are written to `out/pred_scale_<scale>.jsonl`, none refined by the tiles. The
    predictor is left as it was.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got '{metric}'")
    if not factors or any(f <= 0 for f in factors):
        raise ValueError(f"the scale factors must be positive numbers, got {list(factors)}")
    gt, out = Path(gt), Path(out)
    records = read_ground_truth(gt)
    if not records:
        raise ValueError(f"{gt}: no photos to choose the tile scale on")
    paths = [str(resolve_image(gt, r.images[0])) for r in records]
    original_refine = predictor.tile_refine  # a refinement chosen before is replaced, never a base
    own = train_scale or 1.0
    judged = {label_at_level(kind, 1) for kind in predictor.faults.kinds}
    scored_on = judged_tiled(tiled_categories(predictor, records[0].size), judged)
    out.mkdir(parents=True, exist_ok=True)
    scored: dict[tuple, tuple[float | None, int, list[float | None]]] = {}
    found_at: dict[float, Scores] = {}  # the scores of each scale predicted, for the chosen one's refinement
    replicates: dict[float, list[float | None]] = {}  # each scale's score with each photo left out in turn
    candidates: list[Candidate] = []
    try:
        predictor.tile_refine = ()
        for factor in sorted(set(factors), key=lambda f: (abs(f - 1.0), f)):
            scale = round(own * factor, SCALE_DECIMALS)  # as training_scale.json writes a scale
            plan = auto_plan(predictor, scale)
            grids = [grid_shape(plan.tiles(r.size, predictor.contract)) for r in records]
            key = tuple(grids)
            if key not in scored:
                lines = _predict_at(predictor, paths, mode, scale, [])
                pred = prediction_file(out, scale)
                _write_lines(pred, lines)
                found = scores_of(records, gt, pred, read_predictions(pred), predictor.faults)
                passes = sum(len(first_regions(r.size, plan, predictor.contract)) for r in records)
                scored[key] = (category_score(found[0], metric, scored_on), passes,
                               [category_score(f, metric, scored_on) for f in found[1]])
                found_at[scale] = found
            value, passes, left_out = scored[key]
            replicates[scale] = left_out
            counts = Counter(f"{c}x{r}" for c, r in grids)
            candidate = Candidate(scale, dict(sorted(counts.items())), value, passes)
            candidates.append(candidate)
            if on_candidate is not None:
                on_candidate(candidate)
        top = max((c for c in candidates if c.score is not None), key=lambda c: c.score, default=None)
        if top is not None:
            candidates = [replace(c, spread=jackknife_spread(replicates[top.scale], replicates[c.scale]))
                          for c in candidates]
        # The best is the first scale tried among those cutting the same grids (both prefer the factor nearest 1), so
        # its predictions are on file.
        best = best_candidate(candidates, own, within)
        refined = (choose_refine(predictor, gt, out, best.scale, mode, metric, refine_within, found_at.get(best.scale))
                   if refine else [])
    finally:
        predictor.tile_refine = original_refine
    notes = [] if best.score is not None else [
        f"no candidate could be scored ({metric} undefined on these photos): the one nearest the training scale is "
        "kept"]
    notes += zoom_wins(predictor.cfg.inference.tile_zoom, best.scale)
    what = f"{metric} by category" + ("" if scored_on is None else f" ({', '.join(sorted(scored_on))})")
    return ChosenTileScale(best.scale, what, own, sorted(candidates, key=lambda c: c.scale), len(records),
                           str(real_path(gt)), notes, [r.category for r in refined if r.kept], refined, mode=mode)
