"""AP50 against training steps, for the head, name and generate modes, on shapes and on BBU close-ups, in one run.

    .venv/bin/python bench/learning_curve.py                              # both scenes, default tiny model
    .venv/bin/python bench/learning_curve.py --scenes shapes --steps 1000 --every 250 --shapes default,wide

Each (scene, model shape) trains the demo's recipe once (`configs/demo_shapes.yaml` for shapes,
`configs/demo.yaml` for BBU close-ups), saving a checkpoint every `--every` steps; every checkpoint then
predicts the same validation photos in every mode (name = the head's boxes named by the VLM), and `coco_evaluate` scores them. The best constant
box of the same photos is printed beside them: any AP has to clear it to mean something. `--shapes`
sweeps the tiny model's size (docs/localisation.md explains what the sweep settled).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bbuvl.config import load_config
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.prior import best_constant_box
from bbuvl.infer.predictor import Predictor
from bbuvl.synthetic.dataset import synthesize
from bbuvl.synthetic.shapes import synthesize_shapes
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODES = ("head", "name", "generate")
MODEL_SHAPES = {
    "default": {},
    "wide": {"hidden": 256, "layers": 4, "heads": 8, "kv_heads": 4, "vision_depth": 4, "vision_hidden": 128},
}


def make_scene(scene: str, folder: Path, n_train: int | None, n_val: int | None) -> Path:
    """Synthesise the scene's dataset (the demo's settings unless counts are given) and return its folder."""
    if scene == "shapes":
        synthesize_shapes(folder, n_train or 1000, n_val or 40, seed=100, size=(224, 224), min_objects=1, max_objects=1)
    else:
        synthesize(folder, n_train or 240, n_val or 16, seed=100, size=(448, 336), framing="closeup")
    return folder


def curve(scene: str, data: Path, shape: str, steps: int, every: int, work: Path) -> list[tuple[int, dict[str, tuple[float, float]]]]:
    """Train one model shape on one scene; `[(step, {mode: (AP50 per label, AP50 class-agnostic)})]`."""
    model_dir = build_tiny_model(work / f"{scene}-{shape}-model", **MODEL_SHAPES[shape])
    config = CONFIGS / ("demo_shapes.yaml" if scene == "shapes" else "demo.yaml")
    run_dir = work / f"{scene}-{shape}-run"
    overrides = [f"model.path={model_dir}", f"data.train={data / 'train.jsonl'}", "data.val=null",
                 f"training.output_dir={run_dir}", f"training.max_steps={steps}", f"training.save_steps={every}",
                 "training.save_total_limit=1000", "monitor.enabled=false"]
    if scene == "bbu":
        overrides.append(f"data.teachers={data / 'teachers.jsonl'}")
    start = time.perf_counter()
    train(load_config(config, overrides), progress=False)
    print(f"  [{scene}, {shape}] trained {steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    val = data / "val.jsonl"
    records = read_records(val)
    paths = [resolve_image(val, r.image) for r in records]
    rows = []
    for ckpt in sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])):
        predictor = Predictor.load(ckpt, device="cpu")
        scores = {}
        for mode in MODES:
            preds = [[d.to_dict() for d in objs] for objs in predictor.predict_detection(paths, mode=mode)]
            result = coco_evaluate(records, preds)
            scores[mode] = (result.summary["AP50"] or 0.0, result.agnostic["AP50"] or 0.0)
        rows.append((int(ckpt.name.split("-")[-1]), scores))
    return rows


def main() -> None:
    """Train, evaluate every checkpoint, print one table per scene."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default="shapes,bbu", help="Comma-separated: shapes, bbu.")
    ap.add_argument("--shapes", default="default", help=f"Comma-separated tiny model shapes: {', '.join(MODEL_SHAPES)}.")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--train", type=int, help="Training photos (default: the demo's, 1,000 shapes or 240 BBU).")
    ap.add_argument("--val", type=int, help="Validation photos (default: 40 shapes or 16 BBU).")
    args = ap.parse_args()
    scenes = [s for s in args.scenes.split(",") if s]
    shapes = [s for s in args.shapes.split(",") if s]
    for name, allowed in ((scenes, ("shapes", "bbu")), (shapes, tuple(MODEL_SHAPES))):
        bad = [s for s in name if s not in allowed]
        if bad:
            ap.error(f"unknown {', '.join(bad)}: choose from {', '.join(allowed)}")
    if args.every <= 0 or args.steps < args.every:
        ap.error("--every must be positive and at most --steps")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for scene in scenes:
            data = make_scene(scene, work / f"{scene}-data", args.train, args.val)
            prior = best_constant_box(read_records(data / "val.jsonl"))
            print(f"\n{scene}: AP50 per label / class-agnostic on {len(read_records(data / 'val.jsonl'))} validation photos; "
                  f"best constant box {prior.ap50 or 0:.3f} / {prior.ap50_agnostic:.3f}")
            print(f"  {'model':<8} {'step':>5}" + "".join(f"  {m:>15}" for m in MODES))
            for shape in shapes:
                for step, s in curve(scene, data, shape, args.steps, args.every, work):
                    print(f"  {shape:<8} {step:>5}" + "".join(f"  {s[m][0]:>6.3f} / {s[m][1]:.3f}" for m in MODES), flush=True)


if __name__ == "__main__":
    main()
