"""The demo's stage B (BBU close-ups) with a recipe's levers, over seeds: head AP50, the screws, and their state.

    .venv/bin/python bench/stage_b.py --seeds 1 --steps 600 --train 1200 --out runs/stage_b.jsonl
    .venv/bin/python bench/stage_b.py --seeds 1 --steps 600 --train 1200 --out runs/stage_b.jsonl \\
        detection.fine_features=false
    .venv/bin/python bench/stage_b.py --seeds 0 --steps 700 model.path=demo_out/shapes/run/final   # the demo's start
    .venv/bin/python bench/stage_b.py --checkpoint demo_out/bbu/run/final      # score the demo's checkpoint only
    .venv/bin/python bench/stage_b.py --checkpoint demo_out/bbu/run/final --val-seeds 7919-7922 --state-ranking

Each run renders `--train` close-ups (448x336, the demo's framing) from its seed, builds the tiny Qwen2.5-VL from
the same seed, trains `configs/demo.yaml` with the overrides for `--steps` steps (the run's own teachers file is
set: `data.teacher_ratio=0.5` trains with it; `model.path=` starts from another checkpoint, as the demo starts
from stage A's), and scores head mode at every `--eval-every` steps on `--val` close-ups rendered
from a seed no demo, test or guard uses. Per checkpoint: AP50 per label and class-agnostic, AP50 of the
screw-and-connection-point category at hierarchy level 1, and the full-label accuracy of the matched screws (is a
correct screw called correct), beside the best constant box. The state is then read apart from the kind: among
matched screws whose kind (hierarchy level 2) is right, the share whose state is right too, beside the share a
model that always said "correct" would get. `--checkpoint` scores a trained checkpoint (the demo's) on the same
unseen photos instead of training, or on close-ups from each of `--val-seeds`; `--state-ranking` adds how well
the head's own caption probabilities rank wrong screws above correct ones (ROC AUC), whatever its greedy labels
say. One subprocess per run with its thread count fixed before torch starts; each appends a JSON line to `--out`,
so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from child_runs import already_run, finished_rows, head_predictions, run_child, seed_list

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


def state_ranking(checkpoint: Path, val: Path) -> dict:
    """How well the head's own caption probabilities rank wrong screws above correct ones, for every true screw or
    connection point some query's box covers at IoU >= 0.5 (the best-overlapping query, before NMS).

    Per screw: log P(kind/连接错误) - log P(kind/连接正确), teacher-forced from that query, with the true kind. Returns
    the ROC AUC of that margin for the true state, the share its sign gets right (what greedy captions decide), and
    the share the best threshold would get on these same screws (in-sample, an upper bound).
    """
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from bbuvl.data.boxes import box_iou
    from bbuvl.data.schema import read_records, resolve_image
    from bbuvl.infer.predictor import Predictor
    from bbuvl.model.box_ops import to_xyxy

    predictor = Predictor.load(checkpoint, device="cpu")
    head, tokenizer = predictor.model.detection_head, predictor.tokenizer
    wrong, margin = [], []
    for record in read_records(val):
        prepared = predictor.prepare(resolve_image(val, record.image))
        with torch.inference_mode():
            det = predictor.model.detect(predictor.batch([prepared], with_teachers=False))
            boxes = to_xyxy(det.boxes.float(), head.box_format).clamp(0, 1)[0].tolist()
            for o in record.objects:
                kind, _, state = o.desc.rpartition("/")
                if not kind.startswith(SCREWS) or state not in (CORRECT, WRONG):
                    continue
                truth = [o.bbox_2d[0] / record.width, o.bbox_2d[1] / record.height,
                         o.bbox_2d[2] / record.width, o.bbox_2d[3] / record.height]
                ious = [box_iou(b, truth) for b in boxes]
                q = max(range(len(ious)), key=ious.__getitem__)
                if ious[q] < 0.5:
                    continue
                logp = []
                for s in (CORRECT, WRONG):
                    ids = torch.tensor([tokenizer.encode(f"{kind}/{s}", add_special_tokens=False) + [head.eos_token_id]])
                    logits = head.caption_logits(det.query_hidden[0, q][None], ids).float().log_softmax(-1)  # [1, T, V]
                    logp.append(float(logits[0].gather(1, ids[0][:, None]).sum()))
                wrong.append(state == WRONG)
                margin.append(logp[1] - logp[0])
    y, m = np.array(wrong), np.array(margin)
    both = 0 < y.sum() < len(y)
    return {"screws": len(y), "wrong_share": float(y.mean()) if len(y) else None,
            "auc": float(roc_auc_score(y, m)) if both else None,
            "sign_right": float(((m > 0) == y).mean()) if len(y) else None,
            "best_threshold_right": float(max(((m > t) == y).mean() for t in np.concatenate([[-np.inf], m])))
            if len(y) else None}


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
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="config overrides (key=value) for the recipe")
    args = ap.parse_args()
    if args.checkpoint is not None:
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


if __name__ == "__main__":
    main()
