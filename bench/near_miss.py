"""Training that values a near miss, measured: generate-mode AP50 and mean held-out detection reward against steps.

    .venv/bin/python bench/near_miss.py                       # every arm: 3 SFT runs of 1000 steps, 2 GRPO runs of 40 (estimated 45-50 min)
    .venv/bin/python bench/near_miss.py --sft-steps 300 --grpo-steps 40 --every 20
    .venv/bin/python bench/near_miss.py --arms sft --sft-steps 4000 --sft-every 1000 --train 8000 --model wide
    .venv/bin/python bench/near_miss.py --arms 'sft+ground,sft+ground>grpo' --sft-steps 2000 --seed 101 --heldout-seed 8

Arms on the shapes scene (one shape per photo, configs/demo_shapes.yaml), scored on photos of an unseen seed:
  sft              SFT alone (cross-entropy on the answer's digits)
  sft+ntl          SFT with the number-token loss (`loss.number_token`)
  sft+ground       SFT with coordinate regression and grounding attention (`loss.coordinate_regression`,
                   `loss.grounding_attention`: model/coordinate_loss.py, model/grounding_attention.py)
  sft>grpo         the SFT arm's last checkpoint, then GRPO (configs/demo_grpo.yaml, rewards in rl/rewards.py)
  sft+ground>grpo  the same GRPO from the sft+ground arm's last checkpoint
Each row: AP50 per label / class-agnostic of generate mode, the mean detection reward of its greedy answers
(rl/evaluate.py), and the best constant box beside them. Numbers and what limits them: docs/grpo.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from learning_curve import MODEL_SHAPES

from bbuvl.config import load_config
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.prior import best_constant_box
from bbuvl.infer.predictor import Predictor
from bbuvl.rl.evaluate import heldout_reward
from bbuvl.rl.trainer import train_grpo
from bbuvl.synthetic.shapes import synthesize_shapes
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ARMS = ("sft", "sft+ntl", "sft+ground", "sft>grpo", "sft+ground>grpo")


def score(ckpt: Path, heldout: Path) -> tuple[float, float, float]:
    """(AP50 per label, AP50 class-agnostic, mean detection reward) of a checkpoint's generate mode on `heldout`."""
    predictor = Predictor.load(ckpt, device="cpu")
    records = read_records(heldout)
    preds = [[d.to_dict() for d in objs]
             for objs in predictor.predict_detection([resolve_image(heldout, r.image) for r in records], mode="generate")]
    result = coco_evaluate(records, preds)
    reward = heldout_reward(predictor, heldout)
    return result.summary["AP50"] or 0.0, result.agnostic["AP50"] or 0.0, reward.get("detection", 0.0)


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """A run's numbered checkpoints, oldest first."""
    found = [(int(p.name.split("-")[-1]), p) for p in run_dir.glob("checkpoint-*")]
    return sorted(found)


def main() -> None:
    """Train the three arms, score every checkpoint, print one table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft-steps", type=int, default=1000)
    ap.add_argument("--sft-every", type=int, default=500)
    ap.add_argument("--grpo-steps", type=int, default=40)
    ap.add_argument("--every", type=int, default=20, help="GRPO steps between scored checkpoints.")
    ap.add_argument("--heldout", type=int, default=40, help="Held-out photos (seed 7, never trained on).")
    ap.add_argument("--train", type=int, default=1000, help="Training photos (seed 100): synthetic photos cost nothing, "
                    "so a longer run need not repeat them.")
    ap.add_argument("--model", default="default", choices=sorted(MODEL_SHAPES),
                    help="The tiny model's size (bench/learning_curve.py: default 0.94M parameters, wide 4.3M).")
    ap.add_argument("--ntl-weight", type=float, default=1.0,
                    help="loss.number_token of the sft+ntl arm (1.0: the weight docs/number_token_loss.md recommends).")
    ap.add_argument("--ground-weight", type=float, default=4.0,
                    help="loss.coordinate_regression and loss.grounding_attention of the sft+ground arm.")
    ap.add_argument("--seed", type=int, default=100, help="Seed of the training photos (the tiny model's is seed - 100, "
                    "training's seed - 58: the defaults are those of the runs in docs/grpo.md).")
    ap.add_argument("--heldout-seed", type=int, default=7, help="Seed of the held-out photos; never a training seed.")
    ap.add_argument("--work", type=Path, help="Keep the runs here (default: a temporary folder); a finished run found "
                    "there (its final checkpoint) is scored again, not retrained.")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"Comma-separated subset of {', '.join(ARMS)}.")
    args = ap.parse_args()
    wanted = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not wanted or any(a not in ARMS for a in wanted):
        ap.error(f"--arms: choose among {', '.join(ARMS)}, got {args.arms!r}")
    for steps, every, names in ((args.sft_steps, args.sft_every, "--sft-every / --sft-steps"),
                                (args.grpo_steps, args.every, "--every / --grpo-steps")):
        if every <= 0 or steps < every:
            ap.error(f"{names}: the interval must be positive and at most the steps, got {every} / {steps}")
    if args.heldout <= 0 or args.train <= 0:
        ap.error("--heldout and --train must be positive")
    if args.heldout_seed == args.seed:
        ap.error("--heldout-seed must differ from --seed: held-out photos are never trained on")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        # Folders named by their seeds (the defaults keep the names of earlier runs), so a kept folder is never
        # another seed's.
        data = work / ("data" if args.seed == 100 else f"data-seed{args.seed}")
        held = work / ("heldout" if args.heldout_seed == 7 else f"heldout-seed{args.heldout_seed}")
        if (data / "train.jsonl").exists():  # kept from an earlier run in --work: the same seed, the same photos
            if (kept := len(read_records(data / "train.jsonl"))) != args.train:
                ap.error(f"--work {work} holds {kept} training photos, not --train {args.train}: use another folder")
        else:
            synthesize_shapes(data, args.train, 10, seed=args.seed, size=(224, 224), min_objects=1, max_objects=1)
        if not (held / "val.jsonl").exists():
            synthesize_shapes(held, 10, args.heldout, seed=args.heldout_seed, size=(224, 224), min_objects=1, max_objects=1)
        heldout = held / "val.jsonl"
        prior = best_constant_box(read_records(heldout))
        # A kept run of one size or seed is never another's.
        suffix = ("" if args.model == "default" else f"-{args.model}") + ("" if args.seed == 100 else f"-seed{args.seed}")
        model = work / f"tiny-model{suffix}"
        if not (model / "config.json").exists():
            build_tiny_model(model, seed=args.seed - 100, **MODEL_SHAPES[args.model])
        rows: list[tuple[str, int, tuple[float, float, float]]] = []
        no_ground = ["loss.coordinate_regression=0", "loss.grounding_attention=0"]  # the stage-A config has them on
        sft_arms = {
            "sft": no_ground,
            "sft+ntl": [f"loss.number_token={args.ntl_weight}", *no_ground],
            "sft+ground": [f"loss.coordinate_regression={args.ground_weight}",
                           f"loss.grounding_attention={args.ground_weight}"],
        }
        # A GRPO arm needs its SFT arm's checkpoint.
        needed = {a.split(">")[0] for a in wanted}
        arms = [(name, extra) for name, extra in sft_arms.items() if name in needed]
        for name, extra in arms:
            run = work / f"{name}{suffix}"
            start = time.perf_counter()
            if (run / "final").exists():
                print(f"  [{name}] reusing the finished run in {run}", flush=True)
            else:
                train(load_config(CONFIGS / "demo_shapes.yaml", [
                    f"model.path={model}", f"data.train={data / 'train.jsonl'}", "data.val=null", f"training.output_dir={run}",
                    f"training.max_steps={args.sft_steps}", f"training.save_steps={args.sft_every}",
                    "training.save_total_limit=1000", "monitor.enabled=false", f"training.seed={args.seed - 58}", *extra]),
                    progress=False)
                print(f"  [{name}] {args.sft_steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
            if name in wanted:
                rows += [(name, step, score(ckpt, heldout)) for step, ckpt in checkpoints(run)]
        for arm in (a for a in ARMS if ">" in a and a in wanted):
            source = arm.split(">")[0]
            start = time.perf_counter()
            grpo = work / (f"grpo{suffix}" if source == "sft" else f"{source}-grpo{suffix}")  # sft's: earlier runs' name
            if (grpo / "final").exists():
                print(f"  [{arm}] reusing the finished run in {grpo}", flush=True)
            else:
                train_grpo(load_config(CONFIGS / "demo_grpo.yaml", [
                    f"model.path={work / f'{source}{suffix}' / 'final'}", f"data.train={data / 'train.jsonl'}",
                    f"training.output_dir={grpo}", f"training.max_steps={args.grpo_steps}",
                    f"training.save_steps={args.every}", "training.save_total_limit=1000"]), progress=False)
                print(f"  [{arm}] {args.grpo_steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
            rows += [(arm, args.sft_steps + step, score(ckpt, heldout)) for step, ckpt in checkpoints(grpo)]
        print(f"\nshapes, generate mode, {len(read_records(heldout))} held-out photos of an unseen seed; "
              f"best constant box AP50 {prior.ap50 or 0:.3f} / {prior.ap50_agnostic:.3f}")
        print(f"  {'arm':<15} {'step':>5}  {'AP50 label / agnostic':>22}  {'detection reward':>16}")
        for name, step, (ap50, agnostic, reward) in rows:
            print(f"  {name:<15} {step:>5}  {ap50:>12.3f} / {agnostic:.3f}  {reward:>16.3f}")


if __name__ == "__main__":
    main()
