"""The demo's stage B (BBU close-ups) with a recipe's levers, over seeds: head AP50, the screws, and their state.

    .venv/bin/python bench/stage_b.py --seeds 1 --steps 600 --train 1200 --out runs/stage_b.jsonl
    .venv/bin/python bench/stage_b.py --seeds 1 --steps 600 --train 1200 --out runs/stage_b.jsonl \\
        detection.fine_features=false
    .venv/bin/python bench/stage_b.py --seeds 0 --steps 700 model.path=demo_out/shapes/run/final   # the demo's start
    .venv/bin/python bench/stage_b.py --checkpoint demo_out/bbu/run/final      # score the demo's checkpoint only
    .venv/bin/python bench/stage_b.py --checkpoint demo_out/bbu/run/final --val-seeds 7919-7922 --state-ranking
    .venv/bin/python bench/stage_b.py --checkpoint demo_out/bbu/run/final --state-probe 300

Each run renders `--train` close-ups (448x336, the demo's framing) from its seed, builds the tiny Qwen2.5-VL from
the same seed, trains `configs/demo.yaml` with the overrides for `--steps` steps (the run's own teachers file is
set: `data.teacher_ratio=0.5 data.max_length=1536` trains with it, with room for the teachers; `model.path=` starts
from another checkpoint, as the demo starts from stage A's), and scores head mode at every `--eval-every` steps on
`--val` close-ups rendered from a seed no demo, test or guard uses. Per checkpoint: AP50 per label and
class-agnostic, AP50 of the screw-and-connection-point category at hierarchy level 1, and the full-label accuracy of
the matched screws (is a correct screw called correct), beside the best constant box. The state is then read apart
from the kind: among matched screws whose kind (hierarchy level 2) is right, the share whose state is right too,
beside the share a model that always said "correct" would get. `--checkpoint` scores a trained checkpoint (the
demo's) on the same unseen photos instead of training, or on close-ups from each of `--val-seeds`; `--state-ranking`
adds how well the head's own caption probabilities rank wrong screws above correct ones (ROC AUC), whatever its
greedy labels say; `--state-probe N` fits a linear probe of the state on N close-ups of another seed, from the
head's query vector and from thumbnails of the photo in the true and in the query's box, to show where the state is
lost. One subprocess per run with its thread count fixed before torch starts; each appends a JSON line to `--out`,
so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from bench_files import check_inputs
from child_runs import already_run, end_sweep, finished_rows, head_predictions, run_child, seed_list

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
UNSEEN_SEED = 7919  # no demo, test or guard renders from this seed
SCREWS = "螺丝连接点"
CORRECT = "连接正确"  # the state a mounted part is in when nothing is wrong
WRONG = "连接错误"


def unseen_closeups(folder: Path, n_val: int, seed: int = UNSEEN_SEED) -> Path:
    """`n_val` validation close-ups rendered from `seed` into `folder`; returns their val.jsonl."""
    from bbuvl.synthetic.dataset import synthesize

    synthesize(folder, 0, n_val, seed=seed, size=(448, 336), framing="closeup", num_teachers=0)
    return folder / "val.jsonl"


def score(checkpoint: Path, val: Path) -> dict:
    """Head-mode AP50s, the screw category's AP50 and the matched screws' full-label accuracy of a checkpoint."""
    from bbuvl.data.labels import label_at_level
    from bbuvl.eval.coco_metrics import coco_evaluate
    from bbuvl.eval.matching import match_image

    records, results, seconds = head_predictions(checkpoint, val)
    preds = [[d.to_dict() for d in r.objects] for r in results]
    aware = coco_evaluate(records, preds)
    level1 = coco_evaluate(records, preds, level=1)
    right = matched = kind_right = state_right = said_correct = 0
    for record, objects in zip(records, preds):
        gt_labels = [o.desc for o in record.objects]
        match = match_image([o.bbox_2d for o in record.objects], gt_labels, [o["bbox_2d"] for o in objects],
                            [o["label"] for o in objects], [o.get("score", 1.0) for o in objects])
        for p, g, _ in match.matched:
            if label_at_level(gt_labels[g], 1) == SCREWS:
                matched += 1
                right += objects[p]["label"] == gt_labels[g]
                if label_at_level(objects[p]["label"], 2) == label_at_level(gt_labels[g], 2):
                    kind_right += 1
                    state_right += objects[p]["label"] == gt_labels[g]
                    said_correct += gt_labels[g].endswith(CORRECT)
    return {"AP50": aware.summary["AP50"], "AP50_agnostic": aware.agnostic["AP50"],
            "screws_AP50": level1.per_category.get(SCREWS, {}).get("AP50"), "level1_AP50": level1.summary["AP50"],
            "screws_matched": matched, "screws_full_label": right / matched if matched else None,
            "screws_kind_right": kind_right, "screws_state_right": state_right / kind_right if kind_right else None,
            "screws_always_correct": said_correct / kind_right if kind_right else None,
            "s_per_photo": round(seconds, 3)}


def covered_screws(predictor: Any, val: Path) -> Iterator[dict]:
    """Every true screw or connection point in a known state that some query's box covers at IoU >= 0.5 (the
    best-overlapping query, before NMS): the head's pass, that query, the truth and the photo. `predictor`: a
    loaded `bbuvl.infer.predictor.Predictor`."""
    import torch
    from PIL import Image

    from bbuvl.data.boxes import box_iou
    from bbuvl.data.schema import read_records, resolve_image
    from bbuvl.model.box_ops import to_xyxy

    head = predictor.model.detection_head
    for record in read_records(val):
        path = resolve_image(val, record.image)
        prepared = predictor.prepare(path)
        with torch.inference_mode():
            det = predictor.model.detect(predictor.batch([prepared], with_teachers=False))
        boxes = to_xyxy(det.boxes.float(), head.box_format).clamp(0, 1)[0].tolist()
        photo = Image.open(path).convert("RGB")
        for o in record.objects:
            kind, _, state = o.desc.rpartition("/")
            if not kind.startswith(SCREWS) or state not in (CORRECT, WRONG):
                continue
            w, h = record.width, record.height
            truth = [o.bbox_2d[0] / w, o.bbox_2d[1] / h, o.bbox_2d[2] / w, o.bbox_2d[3] / h]
            ious = [box_iou(b, truth) for b in boxes]
            q = max(range(len(ious)), key=ious.__getitem__)
            if ious[q] >= 0.5:
                yield {"det": det, "query": q, "kind": kind, "wrong": state == WRONG,
                       "photo": photo, "truth": truth, "box": boxes[q]}


def state_ranking(checkpoint: Path, val: Path) -> dict:
    """How well the head's own caption probabilities rank wrong screws above correct ones, over `covered_screws`.

    Per screw: log P(kind/连接错误) - log P(kind/连接正确), teacher-forced from its query, with the true kind. Returns
    the ROC AUC of that margin for the true state, the share its sign gets right (what greedy captions decide), and
    the share the best threshold would get on these same screws (in-sample, an upper bound).
    """
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from bbuvl.infer.predictor import Predictor

    predictor = Predictor.load(checkpoint, device="cpu")
    head, tokenizer = predictor.model.detection_head, predictor.tokenizer
    wrong, margin = [], []
    for screw in covered_screws(predictor, val):
        logp = []
        for s in (CORRECT, WRONG):
            ids = torch.tensor([tokenizer.encode(f"{screw['kind']}/{s}", add_special_tokens=False) + [head.eos_token_id]])
            with torch.inference_mode():
                hidden = screw["det"].query_hidden[0, screw["query"]][None]
                logits = head.caption_logits(hidden, ids).float().log_softmax(-1)  # [1, T, V]
            logp.append(float(logits[0].gather(1, ids[0][:, None]).sum()))
        wrong.append(screw["wrong"])
        margin.append(logp[1] - logp[0])
    y, m = np.array(wrong), np.array(margin)
    both = 0 < y.sum() < len(y)
    return {"screws": len(y), "wrong_share": float(y.mean()) if len(y) else None,
            "auc": float(roc_auc_score(y, m)) if both else None,
            "sign_right": float(((m > 0) == y).mean()) if len(y) else None,
            "best_threshold_right": float(max(((m > t) == y).mean() for t in np.concatenate([[-np.inf], m])))
            if len(y) else None}


PROBE_SEED = 7930  # the probe's own training close-ups: no demo, test, guard or validation seed renders it
PROBE_PIXELS = 8  # an 8 x 8 thumbnail of a box, RGB


def state_probe(checkpoint: Path, val: Path, n_fit: int) -> dict:
    """Where the state is lost: a linear probe (logistic regression) for wrong vs correct, fitted on `covered_screws`
    of `n_fit` close-ups from `PROBE_SEED` and scored on `val`'s, from three inputs: the head's query vector, an
    8 x 8 thumbnail of the photo inside the true box, and one inside the query's own box. Accuracy and AUC of each,
    beside always answering "correct"."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bbuvl.infer.predictor import Predictor

    predictor = Predictor.load(checkpoint, device="cpu")

    def thumbnail(photo, box) -> np.ndarray:
        w, h = photo.size
        crop = photo.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))
        return np.asarray(crop.resize((PROBE_PIXELS, PROBE_PIXELS)), dtype=np.float32).ravel() / 255

    def inputs(folder: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
        rows = {"query vector": [], "pixels in the true box": [], "pixels in the query's box": []}
        wrong = []
        for screw in covered_screws(predictor, folder):
            rows["query vector"].append(screw["det"].query_hidden[0, screw["query"]].float().numpy())
            rows["pixels in the true box"].append(thumbnail(screw["photo"], screw["truth"]))
            rows["pixels in the query's box"].append(thumbnail(screw["photo"], screw["box"]))
            wrong.append(screw["wrong"])
        return {k: np.stack(v) for k, v in rows.items()}, np.array(wrong)

    with tempfile.TemporaryDirectory() as tmp:
        fit_x, fit_y = inputs(unseen_closeups(Path(tmp), n_fit, PROBE_SEED))
    val_x, val_y = inputs(val)
    out: dict = {"fit_screws": len(fit_y), "val_screws": len(val_y), "always_correct": float(1 - val_y.mean())}
    for name in fit_x:
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(fit_x[name], fit_y)
        p = probe.predict_proba(val_x[name])[:, 1]
        out[name] = {"accuracy": float(((p > 0.5) == val_y).mean()), "auc": float(roc_auc_score(val_y, p))}
    return out


def one_run(seed: int, threads: int, steps: int, n_train: int, n_val: int, every: int, overrides: list[str]) -> dict:
    """Render, build, train once and score every saved checkpoint (runs in the child)."""
    import torch

    torch.set_num_threads(threads)
    from bbuvl.config import load_config
    from bbuvl.data.schema import read_records
    from bbuvl.eval.prior import best_constant_box
    from bbuvl.synthetic.dataset import synthesize
    from bbuvl.tiny.model import build_tiny_model
    from bbuvl.train.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "data", n_train, 0, seed=seed, size=(448, 336), framing="closeup")
        val = unseen_closeups(root / "val", n_val)
        model_dir = build_tiny_model(root / "tiny", seed=seed)
        teachers = root / "data" / "teachers.jsonl"
        cfg = load_config(CONFIG, [
            f"model.path={model_dir}", f"data.train={root / 'data' / 'train.jsonl'}", "data.val=null",
            f"data.teachers={teachers}", f"training.output_dir={root / 'run'}", f"training.max_steps={steps}",
            f"training.seed={seed}", "training.logging_steps=50", f"training.save_steps={every or 100000}",
            "training.save_total_limit=100", "training.eval_steps=100000", "monitor.enabled=false", *overrides])
        start = time.perf_counter()
        final = train(cfg, progress=False)["final"]
        trained = time.perf_counter() - start
        row: dict = {"seed": seed, "threads": threads, "steps": steps, "train": n_train, "val": n_val,
                     "overrides": overrides, "train_s": round(trained, 1)}
        curve = {}
        for ckpt in sorted((root / "run").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
            curve[int(ckpt.name.split("-")[1])] = score(ckpt, val)
        curve[steps] = score(final, val)
        row["curve"] = curve
        prior = best_constant_box(read_records(val))
        row["prior_ap50"], row["prior_ap50_agnostic"] = prior.ap50, prior.ap50_agnostic
    return row


def fmt(v: float | None) -> str:
    """Three decimals, or a dash for undefined."""
    return "  -  " if v is None else f"{v:.3f}"


def main() -> None:
    """Run every seed not yet in `--out` for these overrides, one subprocess each, and print each curve."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--train", type=int, default=1200)
    ap.add_argument("--val", type=int, default=40)
    ap.add_argument("--eval-every", type=int, default=200, help="also score checkpoints every N steps (0: final only)")
    ap.add_argument("--out", type=Path, default=Path("runs/stage_b.jsonl"))
    ap.add_argument("--checkpoint", type=Path, help="score this checkpoint on the unseen close-ups; no training")
    ap.add_argument("--val-seeds", default=str(UNSEEN_SEED), help="with --checkpoint: render the close-ups from each")
    ap.add_argument("--state-ranking", action="store_true",
                    help="with --checkpoint: also rank wrong above correct screws by the head's caption probabilities")
    ap.add_argument("--state-probe", type=int, default=0, metavar="N",
                    help="with --checkpoint: fit a linear probe of the state on N close-ups of another seed and score "
                         "it from the query vector and from the pixels in the true and the query's box")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="config overrides (key=value) for the recipe")
    args = ap.parse_args()
    if args.checkpoint is not None:
        try:
            check_inputs([args.checkpoint], ())
        except (OSError, ValueError) as e:
            ap.error(str(e))
        from bbuvl.data.schema import read_records
        from bbuvl.eval.prior import best_constant_box

        for seed in seed_list(args.val_seeds):
            with tempfile.TemporaryDirectory() as tmp:
                val = unseen_closeups(Path(tmp), args.val, seed)
                s, prior = score(args.checkpoint, val), best_constant_box(read_records(val))
                print(f"{args.checkpoint} on {args.val} close-ups from seed {seed}: AP50 {fmt(s['AP50'])} / "
                      f"{fmt(s['AP50_agnostic'])}, screws {fmt(s['screws_AP50'])}, matched screws {s['screws_matched']} "
                      f"full label {fmt(s['screws_full_label'])}, state among {s['screws_kind_right']} of the right "
                      f"kind {fmt(s['screws_state_right'])} (always 'correct': {fmt(s['screws_always_correct'])}); "
                      f"constant box {fmt(prior.ap50)} / {fmt(prior.ap50_agnostic)}", flush=True)
                if args.state_ranking:
                    r = state_ranking(args.checkpoint, val)
                    print(f"  state ranking over {r['screws']} covered screws ({fmt(r['wrong_share'])} wrong): AUC "
                          f"{fmt(r['auc'])}, sign right {fmt(r['sign_right'])}, best threshold right (in-sample) "
                          f"{fmt(r['best_threshold_right'])}", flush=True)
                if args.state_probe:
                    r = state_probe(args.checkpoint, val, args.state_probe)
                    probes = "; ".join(f"{k} {fmt(r[k]['accuracy'])} (AUC {fmt(r[k]['auc'])})"
                                       for k in ("query vector", "pixels in the true box", "pixels in the query's box"))
                    print(f"  state probe fitted on {r['fit_screws']} screws, scored on {r['val_screws']}: {probes}; "
                          f"always 'correct' {fmt(r['always_correct'])}", flush=True)
        return
    if args.child is not None:
        print(json.dumps(one_run(args.child, args.threads, args.steps, args.train, args.val, args.eval_every,
                                 args.overrides)))
        return
    done = finished_rows(args.out)
    for seed in seed_list(args.seeds):
        if already_run(done, seed=seed, threads=args.threads, steps=args.steps, train=args.train, overrides=args.overrides):
            continue
        cmd = [sys.executable, __file__, "--child", str(seed), "--threads", str(args.threads), "--steps", str(args.steps),
               "--train", str(args.train), "--val", str(args.val), "--eval-every", str(args.eval_every), *args.overrides]
        row = run_child(cmd, args.threads, args.out, f"seed {seed}")
        if row is None:
            continue
        print(f"seed {seed} {' '.join(args.overrides) or '(recipe)'}: trained {row['steps']} steps in {row['train_s']:.0f} s; "
              f"constant box {fmt(row['prior_ap50'])} / {fmt(row['prior_ap50_agnostic'])}")
        for step, s in row["curve"].items():
            print(f"  {step:>5}: AP50 {fmt(s['AP50'])} / {fmt(s['AP50_agnostic'])}, screws {fmt(s['screws_AP50'])}, "
                  f"matched screws {s['screws_matched']} full label {fmt(s['screws_full_label'])}, state "
                  f"{fmt(s.get('screws_state_right'))} (always 'correct' {fmt(s.get('screws_always_correct'))})",
                  flush=True)
    end_sweep()


if __name__ == "__main__":
    main()
