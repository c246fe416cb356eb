"""Benchmark how fast the detection head learns: learned queries vs two-stage proposals, side by side.

    python bench/head_convergence.py                          # 480 synthetic photos at 448x336, 1,000 steps
    python bench/head_convergence.py --steps 400 --train 96   # quicker

The VLM is replaced by a small convolutional network over the pixels with the merged Qwen2.5-VL token
stride (28 px), so both variants see the same kind of token grid and a step costs ~0.1 s instead of ~1 s;
everything after the features is bbuvl's own: DetectionHead, DetectionCriterion (Hungarian matching,
L1, GIoU, focal, captions with the offline tokenizer) and COCO AP from `coco_evaluate`. Both variants
start from the same seed, see the same batches, and are evaluated on the same validation photos.
Prints class-agnostic AP50 and AP50 per full label at every evaluation, and the ratio at the end.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from bbuvl.config import DetectionConfig, LossConfig
from bbuvl.data.schema import ImageRecord, read_records, resolve_image
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.model.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from bbuvl.model.detection_head import DetectionHead
from bbuvl.model.detection_loss import DetectionCriterion
from bbuvl.synthetic.dataset import synthesize
from bbuvl.tiny.tokenizer import train_tokenizer

TOKEN_STRIDE = 28  # 14-px patches merged 2x2, as Qwen2.5-VL's LLM tokens
WIDTH = 128


def load_split(jsonl: Path, frame: tuple[int, int], tokenizer) -> tuple[list[ImageRecord], torch.Tensor, list[dict]]:
    """Records, pixels `[N, 3, H, W]` in the model frame, and head targets (cxcywh boxes, caption ids)."""
    records = read_records(jsonl)
    pixels, targets = [], []
    for r in records:
        img = Image.open(resolve_image(jsonl, r.image)).convert("RGB").resize(frame, Image.BICUBIC)
        pixels.append(torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255 - 0.5)
        scale = torch.tensor([r.width, r.height, r.width, r.height], dtype=torch.float32)
        boxes = torch.tensor([o.bbox_2d for o in r.objects], dtype=torch.float32).view(-1, 4) / scale
        captions = [torch.tensor(tokenizer(o.desc, add_special_tokens=False)["input_ids"]) for o in r.objects]
        targets.append({"boxes": box_xyxy_to_cxcywh(boxes), "caption_ids": captions})
    return records, torch.stack(pixels), targets


class PixelTokens(nn.Module):
    """Pixels `[B, 3, H, W]` -> one WIDTH-dim token per 28x28 cell `[B, H/28 * W/28, WIDTH]`, raster order."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1), nn.GELU(), nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(),
            nn.Conv2d(64, 64, 3, 1, 1), nn.GELU(), nn.Conv2d(64, WIDTH, 7, 7), nn.GELU(), nn.Conv2d(WIDTH, WIDTH, 1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens and the grid (h, w) they form."""
        f = self.net(x)
        return f.flatten(2).transpose(1, 2), (f.shape[2], f.shape[3])


class Variant:
    """One head configuration with its own features, optimiser and criterion (same seed as the others)."""

    def __init__(self, name: str, two_stage: bool, tokenizer, num_queries: int, seed: int, loss: LossConfig):
        torch.manual_seed(seed)
        self.name = name
        self.features = PixelTokens()
        self.embedding = nn.Embedding(len(tokenizer), WIDTH)
        cfg = DetectionConfig(num_queries=num_queries, num_heads=4, caption_layers=2, dropout=0.0, two_stage=two_stage)
        ids = tokenizer.convert_tokens_to_ids
        self.head = DetectionHead(WIDTH, self.embedding, cfg, bos_token_id=ids("<|im_start|>"),
                                  eos_token_id=ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id)
        self.criterion = DetectionCriterion.from_config(loss, cfg)
        self.params = [*self.features.parameters(), *self.embedding.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-3)

    def outputs(self, pixels: torch.Tensor):
        """Head outputs for a batch of pixels (no text memory: one empty-ish text token)."""
        tokens, (h, w) = self.features(pixels)
        b = pixels.shape[0]
        text = torch.zeros(b, 1, WIDTH)
        return self.head(tokens, torch.ones(b, tokens.shape[1], dtype=torch.bool), text, torch.ones(b, 1, dtype=torch.bool),
                         vision_grid_hw=torch.tensor([[h, w]] * b))

    def step(self, pixels: torch.Tensor, targets: list[dict]) -> float:
        """One optimiser step; returns the detection loss."""
        loss = self.criterion(self.outputs(pixels), targets, self.head)["loss_detection"]
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self, records: list[ImageRecord], pixels: torch.Tensor, tokenizer) -> tuple[float, float]:
        """(class-agnostic AP50, AP50 per full label) with every query as a detection, captions greedy."""
        self.head.eval()
        out = self.outputs(pixels)
        self.head.train()
        skip = {self.head.eos_token_id, self.head.pad_token_id}
        predictions = []
        for b, r in enumerate(records):
            boxes = box_cxcywh_to_xyxy(out.boxes[b]).clamp(0, 1) * torch.tensor([r.width, r.height] * 2)
            ids, _ = self.head.generate_captions(out.query_hidden[b])
            labels = [tokenizer.decode([t for t in row if t not in skip]).strip() for row in ids.tolist()]
            scores = out.objectness_logits[b].sigmoid()
            predictions.append([{"bbox_2d": boxes[q].tolist(), "label": labels[q], "score": float(scores[q])}
                                for q in range(len(labels))])
        result = coco_evaluate(records, predictions)
        return result.agnostic["AP50"] or 0.0, result.summary["AP50"] or 0.0


def main() -> None:
    """Train both variants on the same batches and print their validation AP50 side by side."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="A synthetic dataset folder (default: synthesise one in a temp dir).")
    ap.add_argument("--train", type=int, default=480)
    ap.add_argument("--val", type=int, default=16)
    ap.add_argument("--frame", default="448x336", help="Photo size and model frame, WxH (multiples of 28).")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--caption-weight", type=float, default=LossConfig().caption_weight)
    args = ap.parse_args()
    torch.set_num_threads(2)
    try:
        frame = tuple(int(v) for v in args.frame.lower().split("x"))
    except ValueError:
        frame = ()
    if len(frame) != 2 or any(v <= 0 or v % TOKEN_STRIDE for v in frame):
        ap.error(f"--frame must be WxH with both sides positive multiples of {TOKEN_STRIDE}, got '{args.frame}'")
    if args.data is not None and not (args.data / "train.jsonl").exists():
        ap.error(f"--data {args.data}: no train.jsonl there (a folder written by `bbuvl data synth`)")
    tokenizer = train_tokenizer(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "data"
            synthesize(data, args.train, args.val, seed=args.seed, size=frame)
        _, train_px, train_tg = load_split(data / "train.jsonl", frame, tokenizer)
        val_records, val_px, _ = load_split(data / "val.jsonl", frame, tokenizer)

    loss = LossConfig(caption_weight=args.caption_weight)
    variants = [Variant("learned queries", False, tokenizer, args.queries, args.seed, loss),
                Variant("two-stage", True, tokenizer, args.queries, args.seed, loss)]
    batches = torch.Generator().manual_seed(args.seed)
    print(f"{len(train_px)} training photos, {len(val_records)} validation photos, frame {frame[0]}x{frame[1]}, "
          f"batch {args.batch}, {args.steps} steps")
    print(f"{'step':>6}  " + "  ".join(f"{v.name + ' AP50 (agnostic / per label)':>44}" for v in variants))
    seconds = {v.name: 0.0 for v in variants}
    final = {}
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(train_px), (args.batch,), generator=batches)
        for v in variants:
            start = time.perf_counter()
            v.step(train_px[idx], [train_tg[i] for i in idx.tolist()])
            seconds[v.name] += time.perf_counter() - start
        if step % args.eval_every == 0 or step == args.steps:
            final = {v.name: v.evaluate(val_records, val_px, tokenizer) for v in variants}
            print(f"{step:>6}  " + "  ".join(f"{a:>29.3f} / {c:.3f}     " for a, c in final.values()), flush=True)
    (la, lc), (ta, tc) = final.values()
    print(f"\ntwo-stage / learned queries after {args.steps} steps: agnostic AP50 {ta:.3f} / {la:.3f} = "
          f"{ta / max(la, 1e-9):.2f}x, AP50 per label {tc:.3f} / {lc:.3f}")
    print("seconds of training: " + ", ".join(f"{k} {s:.0f} s" for k, s in seconds.items()))


if __name__ == "__main__":
    main()
