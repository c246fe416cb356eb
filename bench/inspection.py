"""Inspection bench: close-ups and whole-cabinet photos from unseen seeds, scored the way an inspector reads them.

    .venv/bin/python bench/inspection.py --checkpoint demo_out/bbu/run/final --seeds 9001,9002
    .venv/bin/python bench/inspection.py --checkpoint demo_out/bbu/run/final --seeds 9001-9004 --closeups 48 --wide 12 \\
        --json runs/inspection.jsonl
    .venv/bin/python bench/inspection.py --recipe "bash scripts/demo.sh" --seeds 9001   # train the demo, then score it

Per seed it renders `--closeups` close-ups at `--size` and `--wide` whole-cabinet photos at `--wide-scale` times
that side (the issue's 1792x1344 for the demo's 448x336), both at a realistic fault rate (`--fault-rate`: the share
of photos holding any fault, 0.3 = seven in ten pass), and predicts them with the checkpoint's own defaults (its
`inference` section: the prediction plan a user gets without choosing a grid; `--wide-checkpoint` scores the wide
photos with another one). Printed, each beside what ignoring the photo scores:
- AP50 per label and per category (hierarchy level 1: BBUs, screws and connection points), beside the best
  constant box (eval/prior.py);
- faults found (same kind and state at IoU 0.5, eval/faults.py): recall and precision at the checkpoint's fail
  threshold, the best recall at precision >= 0.5 (>= 0.4 for wide photos), and fault AP, beside "always pass"
  (finds nothing) and "always fail" (calls every judged part faulty);
- the photo verdict: accuracy at the checkpoint's thresholds and ROC AUC of the photo's fault score, beside "always
  pass" and "always fail".
Then where the faults are lost: faulty parts that no box of their kind found (no score can find those: the recall
the scores could reach at best) and how often the state is right on the others. `--choose-on SEED` judges with
thresholds chosen on close-ups of another seed (`bbuvl eval --choose-thresholds`'s rule), for a checkpoint that
has none of its own; photos cut into tiles keep the checkpoint's own pair for them when it has one
(verdict_thresholds_tiled.json).
`--wide-tiles PLAN` predicts the wide photos with another plan than the checkpoint's (`3x3`, `off`): how the grids
compare on whole cabinets (docs/faults_learning.md, "Whole cabinets: the grid").
`--recipe CMD` first runs CMD (with BBUVL_DEMO_OUT set to a folder of its own) and scores the checkpoints it wrote
(`bbu/run/final`). `--json` appends one line per seed and framing. docs/faults_learning.md has the measured runs;
tests/test_inspection_bench.py runs a tiny one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCREWS, BBUS = "螺丝连接点", "bbu基带处理单元"


@dataclass(frozen=True)
class Framing:
    """One kind of photo the bench renders: its framing and size, and which checkpoint predicts it."""

    name: str
    framing: str
    size: tuple[int, int]
    photos: int
    checkpoint: Path
    min_precision: float  # the precision the fault recall is read at (the acceptance bars, docs/faults_learning.md)
    tiles: str | None = None  # a prediction plan other than the checkpoint's (`--wide-tiles`); None: its default


def seeds_of(text: str) -> list[int]:
    """`9001,9003` or `9001-9004` -> the seeds."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def render(folder: Path, framing: Framing, seed: int, fault_rate: float, part_rate: float) -> Path:
    """The framing's photos from `seed` at the fault rate, as a validation set; returns its val.jsonl."""
    from bbuvl.synthetic.dataset import synthesize
    from bbuvl.synthetic.scene import FaultRate

    synthesize(folder, 0, framing.photos, seed=seed, size=framing.size, framing=framing.framing, num_teachers=0,
               faults=FaultRate(fault_rate, part_rate))
    return folder / "val.jsonl"


def predict(framing: Framing, val: Path, mode: str, predictors: dict) -> tuple[list, Path, float, object]:
    """Predict `val` with the framing's checkpoint at its defaults (its tiles replaced by the framing's, when it has
    its own): the records, the predictions file, the seconds a photo, and the checkpoint's verdict thresholds (for
    each framing: a whole cabinet cut into tiles may have its own)."""
    from bbuvl.data.schema import read_records
    from bbuvl.infer.predictor import Predictor

    if framing.checkpoint not in predictors:
        predictors[framing.checkpoint] = Predictor.load(framing.checkpoint, device="cpu")
    predictor = predictors[framing.checkpoint]
    records = read_records(val)
    paths = [str(val.parent / r.images[0]) for r in records]
    start = time.perf_counter()
    lines = []
    plan = {} if framing.tiles is None else {"tiles": framing.tiles}
    for i in range(0, len(paths), predictor.cfg.inference.batch_size):
        lines += predictor.predict_lines(paths[i:i + predictor.cfg.inference.batch_size], mode, **plan)
    seconds = (time.perf_counter() - start) / len(paths)
    pred = val.parent / f"pred_{mode}.jsonl"
    pred.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return records, pred, seconds, predictor.options(**plan).framed()


def choose(framing: Framing, val: Path, mode: str, predictors: dict, target_recall: float, target_precision: float):
    """Verdict thresholds chosen on `val`'s photos as `bbuvl eval --choose-thresholds` chooses them (photos other
    than the scored ones: what the demo does on its own seed)."""
    from bbuvl.eval.faults import CannotChoose, choose_thresholds
    from bbuvl.eval.metrics import evaluate_predictions
    from bbuvl.eval.predictions import read_predictions

    records, pred, _, _ = predict(framing, val, mode, predictors)
    f = evaluate_predictions(records, val, read_predictions(pred), pred).faults
    try:
        return choose_thresholds(f.photo_faulty, f.photo_scores, target_recall, target_precision)[0]
    except CannotChoose as e:  # as `bbuvl eval --choose-thresholds` refuses to write them: the checkpoint's judge
        print(f"verdict thresholds cannot be chosen on these close-ups ({e}); the checkpoint's judge", flush=True)
        return None


def score(framing: Framing, val: Path, mode: str, predictors: dict, chosen=None) -> dict:
    """Predict `val` with the framing's checkpoint at its defaults, then every number the bench prints; `chosen`:
    verdict thresholds to judge the photos predicted in one pass with instead of the checkpoint's."""
    from bbuvl.eval.metrics import evaluate_predictions
    from bbuvl.eval.predictions import read_predictions
    from bbuvl.infer.verdict import FramedThresholds

    records, pred, seconds, thresholds = predict(framing, val, mode, predictors)
    thresholds = FramedThresholds(chosen, thresholds.tiled) if chosen else thresholds
    full = evaluate_predictions(records, val, read_predictions(pred), pred, thresholds=thresholds)
    by_category = evaluate_predictions(records, val, read_predictions(pred), pred, level=1, thresholds=thresholds)
    f = full.faults
    judged = f.one_pair() or f.thresholds  # the pair that judged every photo (each framing's own: the one-pass one)
    cats = by_category.metrics["per_category"] or {}
    prior_cats = by_category.metrics["prior"] or {}
    # Where the faults are lost: a faulty part no box of its kind found at IoU 0.5 cannot be found whatever the
    # scores (the recall the scores could reach at best), and among those found, how often the state is right.
    unboxed = sum(m for s in f.states for state, m in zip(s.states, s.missed) if state in s.faults)
    found = [(s.counts[i][i], sum(s.counts[i])) for s in f.states for i, state in enumerate(s.states) if state in s.faults]
    boxed = sum(n for _, n in found)
    return {
        "photos": len(records), "faulty_photos": sum(f.photo_faulty), "faults": f.objects.gt,
        "faults_unboxed": unboxed, "fault_recall_ceiling": None if not f.objects.gt else 1 - unboxed / f.objects.gt,
        "fault_state_right": None if not boxed else sum(r for r, _ in found) / boxed,
        "s_per_photo": round(seconds, 2),
        "AP50": full.metrics["AP50"], "AP50_constant": (full.metrics["prior"] or {}).get("AP50"),
        "AP50_level1": by_category.metrics["AP50"], "AP50_level1_constant": prior_cats.get("AP50"),
        "AP50_bbu": (cats.get(BBUS) or {}).get("AP50"), "AP50_screws": (cats.get(SCREWS) or {}).get("AP50"),
        "constant_per_category": prior_cats.get("per_label"),
        "fault_recall": f.objects.at_fail.recall, "fault_precision": f.objects.at_fail.precision,
        "fault_AP": f.objects.at_fail.AP, "min_precision": framing.min_precision,
        "fault_recall_at_min_precision": f.objects.recall_at_precision(framing.min_precision),
        "always_fail_fault_precision": f.objects.always_fail.precision,
        "verdict_accuracy": f.photos.model.failed.accuracy, "verdict_flagged_accuracy": f.photos.model.flagged.accuracy,
        "verdict_auc": f.photos.model.roc_auc, "always_pass_accuracy": f.photos.always_pass.failed.accuracy,
        "always_fail_accuracy": f.photos.always_fail.failed.accuracy,
        "thresholds": {"review": judged.review, "fail": judged.fail}, "photos_tiled": f.photos_tiled,
    }


def num(v: float | None) -> str:
    """A number for the table; '-' when undefined."""
    return "  -  " if v is None else f"{v:.3f}"


def print_row(name: str, seed: int, row: dict) -> None:
    """Two lines per seed and framing: the detection numbers, then the fault and verdict numbers."""
    print(f"{name:<8} seed {seed}: {row['photos']} photos, {row['faulty_photos']} with a fault, {row['faults']} faults; "
          f"AP50 per label {num(row['AP50'])} (constant {num(row['AP50_constant'])}), by category "
          f"{num(row['AP50_level1'])} (constant {num(row['AP50_level1_constant'])}), BBUs {num(row['AP50_bbu'])}, "
          f"screws and connection points {num(row['AP50_screws'])}; {row['s_per_photo']} s a photo", flush=True)
    print(f"{'':<8}   faults: recall {num(row['fault_recall'])} at precision {num(row['fault_precision'])} "
          f"(fail >= {row['thresholds']['fail']:.2f}; always pass: 0.000, always fail: 1.000 at "
          f"{num(row['always_fail_fault_precision'])}), best recall at precision >= {row['min_precision']}: "
          f"{num(row['fault_recall_at_min_precision'])}, AP {num(row['fault_AP'])}; verdict accuracy "
          f"{num(row['verdict_accuracy'])} (always pass {num(row['always_pass_accuracy'])}, always fail "
          f"{num(row['always_fail_accuracy'])}), ROC AUC {num(row['verdict_auc'])}", flush=True)
    print(f"{'':<8}   faulty parts no box of their kind found: {row['faults_unboxed']} of {row['faults']} (recall at "
          f"best {num(row['fault_recall_ceiling'])}); state right for {num(row['fault_state_right'])} of the boxed "
          "ones", flush=True)


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse the arguments, render and score every seed and framing; returns the rows."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, help="the checkpoint to score (the demo's: demo_out/bbu/run/final)")
    ap.add_argument("--wide-checkpoint", type=Path, help="another checkpoint for the wide photos (default: --checkpoint)")
    ap.add_argument("--recipe", help="a command that trains the checkpoints first, e.g. 'bash scripts/demo.sh'")
    ap.add_argument("--seeds", default="9001", help="render seeds, e.g. 9001,9002 or 9001-9004 (never a demo's or test's)")
    ap.add_argument("--closeups", type=int, default=48, help="close-ups per seed (0: none)")
    ap.add_argument("--wide", type=int, default=12, help="whole-cabinet photos per seed (0: none)")
    ap.add_argument("--size", default="448x336", help="the close-ups' size, the demo's")
    ap.add_argument("--wide-scale", type=int, default=4, help="the wide photos' side as a multiple of --size's")
    ap.add_argument("--wide-tiles", help="predict the wide photos with this plan (auto, off, COLSxROWS) instead of "
                    "the checkpoint's default")
    ap.add_argument("--fault-rate", type=float, default=0.3, help="share of photos holding any fault")
    ap.add_argument("--part-fault-rate", type=float, default=0.3, help="share of wrong parts in a faulty photo")
    ap.add_argument("--mode", default="head", help="prediction mode")
    ap.add_argument("--choose-on", type=int, help="choose the verdict's thresholds on close-ups of this seed (as many "
                    "as --closeups), as the demo does, instead of judging with the checkpoint's")
    ap.add_argument("--target-recall", type=float, default=0.8, help="--choose-on: faulty photos flagged (the demo's)")
    ap.add_argument("--target-precision", type=float, default=0.8, help="--choose-on: failed photos faulty (the demo's)")
    ap.add_argument("--workdir", type=Path, help="where photos and predictions go (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="append one JSON line per seed and framing")
    args = ap.parse_args(argv)
    if (args.checkpoint is None) == (args.recipe is None):
        ap.error("give --checkpoint or --recipe")
    from bench_files import check_before_work

    # Before any photo is rendered: a dataset's JSONL given as --json is not appended to, a missing checkpoint named
    check_before_work(ap, args.json, {"framing", "seed", "checkpoint", "mode"}, "inspection rows",
                      [args.checkpoint, args.wide_checkpoint])
    if args.wide_tiles is not None:  # refused before any photo is rendered or model trained, as predict would refuse it
        from bbuvl.config import InferenceConfig
        from bbuvl.infer.options import PredictOptions

        try:
            PredictOptions.of(InferenceConfig(), tiles=args.wide_tiles)
        except ValueError as e:
            ap.error(f"--wide-tiles: {e}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="inspection-"))
    try:
        checkpoint = args.checkpoint
        if args.recipe:
            out = work / "recipe"
            print(f"recipe: {args.recipe} -> {out}", flush=True)
            subprocess.run(args.recipe, shell=True, check=True, cwd=REPO, env={**os.environ, "BBUVL_DEMO_OUT": str(out)})
            checkpoint = out / "bbu" / "run" / "final"
        w, h = (int(v) for v in args.size.lower().split("x"))
        framings = [f for f in (
            Framing("closeup", "closeup", (w, h), args.closeups, checkpoint, 0.5),
            Framing("wide", "wide", (w * args.wide_scale, h * args.wide_scale), args.wide, args.wide_checkpoint or checkpoint, 0.4,
                    args.wide_tiles),
        ) if f.photos > 0]
        predictors: dict = {}
        rows = []
        chosen = None
        if args.choose_on is not None:
            closeup = Framing("closeup", "closeup", (w, h), args.closeups or 48, checkpoint, 0.5)
            val = render(work / f"choose_{args.choose_on}", closeup, args.choose_on, args.fault_rate, args.part_fault_rate)
            chosen = choose(closeup, val, args.mode, predictors, args.target_recall, args.target_precision)
            if chosen is not None:
                print(f"verdict thresholds chosen on close-ups of seed {args.choose_on}: review {chosen.review:.3f}, fail "
                      f"{chosen.fail:.3f}", flush=True)
        for seed in seeds_of(args.seeds):
            for framing in framings:
                val = render(work / f"{framing.name}_{seed}", framing, seed, args.fault_rate, args.part_fault_rate)
                row = {"framing": framing.name, "seed": seed, "size": list(framing.size), "checkpoint": str(framing.checkpoint),
                       "mode": args.mode, "tiles": framing.tiles, "fault_rate": args.fault_rate, "chosen_on": args.choose_on,
                       **score(framing, val, args.mode, predictors, chosen),
                       # the scale `tiles: auto` cut at: the checkpoint's chosen one (tile_scale.json), else its training scale
                       "auto_scale": predictors[framing.checkpoint].train_scale}
                print_row(framing.name, seed, row)
                rows.append(row)
                if args.json:
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    with args.json.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return rows
    finally:
        # The rendered photos and predictions of a temporary folder go with it; a recipe's checkpoints stay there
        # (it printed where), as --workdir keeps everything.
        if args.workdir is None and args.recipe is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
