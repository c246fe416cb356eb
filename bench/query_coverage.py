"""Query coverage bench: where a part loses its box, in the proposals, in choosing the queries, or in the decoder.

    .venv/bin/python bench/query_coverage.py --checkpoint demo_out/bbu/run/final --val demo_out/bbu/val/val.jsonl
    .venv/bin/python bench/query_coverage.py --checkpoint CKPT --val VAL --distinct 0.7,0.5 --json runs/coverage.jsonl

A fault can only be found on a part some query's box covers (docs/faults_learning.md, "Where the faults are lost").
A two-stage head (model/detection_head.py) proposes one box per vision token, seeds its `num_queries` queries with
the best proposals and refines them in the decoder. For every part of `--val` (by kind: the label without its last
level when it has three or more), the share covered at IoU >= `--iou` by:
- `all proposals`: any token's proposal (what any choice of queries could start from);
- `top-k`: the `num_queries` best proposals (plain top-k);
- `distinct T`: the best proposals no better one overlaps above T (`detection.query_nms`, DDQ-DETR's distinct
  queries), as many as the queries;
- `decoder`: the decoder's boxes as the checkpoint is configured, and `decoder T` with the queries chosen as
  `distinct T` at inference (a checkpoint trained with plain top-k has never seen such queries: train with
  `detection.query_nms` for the real number).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from bench_files import check_before_work


def coverage(checkpoint: Path, val: Path, distinct: list[float], iou: float, batch_size: int = 4) -> dict[str, dict[str, float]]:
    """`{column: {kind: share covered}}` with the kinds' part counts under "parts" and every part under "ALL"."""
    import torch

    from bbuvl.data.labels import label_at_level
    from bbuvl.data.schema import read_records
    from bbuvl.infer.predictor import Predictor
    from bbuvl.model.box_ops import box_iou, to_xyxy
    from bbuvl.model.detection_head import distinct_top

    predictor = Predictor.load(checkpoint, device="cpu")
    head = predictor.model.detection_head
    if head is None or not head.two_stage:
        raise SystemExit(f"{checkpoint}: the bench needs a checkpoint with a two-stage detection head")
    configured = head.query_nms
    records = read_records(val)
    covered: dict[str, Counter] = {}
    parts: Counter = Counter()

    def count(column: str, gt: "torch.Tensor", boxes: "torch.Tensor", kinds: list[str]) -> None:
        best = box_iou(gt, boxes).max(dim=1).values if len(boxes) else torch.zeros(len(gt))
        seen = covered.setdefault(column, Counter())
        for kind, v in zip(kinds, best.tolist()):
            seen[kind] += v >= iou
            seen["ALL"] += v >= iou

    try:
        with torch.inference_mode():
            for start in range(0, len(records), batch_size):
                chunk = records[start:start + batch_size]
                batch = predictor.batch([predictor.prepare(val.parent / r.images[0]) for r in chunk],
                                        with_teachers=False, for_generation=False)
                head.query_nms = configured
                det = predictor.model.detect(batch)
                decoded = {"decoder": det.boxes}
                for t in distinct:
                    head.query_nms = t
                    decoded[f"decoder {t:g}"] = predictor.model.detect(batch).boxes
                proposals = to_xyxy(det.proposal_boxes.float(), head.box_format).clamp(0, 1)
                for b, r in enumerate(chunk):
                    if not r.objects:
                        continue
                    gt = torch.tensor([[o.bbox_2d[0] / r.width, o.bbox_2d[1] / r.height, o.bbox_2d[2] / r.width,
                                        o.bbox_2d[3] / r.height] for o in r.objects])
                    kinds = [label_at_level(o.desc, 2) for o in r.objects]  # the part, without a third level's state
                    parts.update(kinds)
                    parts["ALL"] += len(kinds)
                    valid = det.proposal_valid[b].bool()
                    boxes, logits = proposals[b][valid], det.proposal_logits[b].float()[valid]
                    k = min(head.num_queries, len(logits))
                    count("all proposals", gt, boxes, kinds)
                    count("top-k", gt, boxes[logits.topk(k).indices], kinds)
                    for t in distinct:
                        count(f"distinct {t:g}", gt, boxes[distinct_top(logits[None], boxes[None], k, t)[0]], kinds)
                    for column, boxes_b in decoded.items():
                        count(column, gt, to_xyxy(boxes_b[b].float(), head.box_format).clamp(0, 1), kinds)
    finally:
        head.query_nms = configured
    out = {column: {kind: seen[kind] / n for kind, n in parts.items()} for column, seen in covered.items()}
    out["parts"] = dict(parts)
    return out


def main(argv: list[str] | None = None) -> dict:
    """Print the coverage table; with `--json`, append it as one line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint with a two-stage detection head")
    ap.add_argument("--val", type=Path, required=True, help="photos with their boxes (a dataset JSONL)")
    ap.add_argument("--distinct", default="0.7,0.5", help="query_nms IoUs to try, comma-separated")
    ap.add_argument("--iou", type=float, default=0.5, help="a part is covered by a box at this IoU")
    ap.add_argument("--json", type=Path, help="append the table as one JSON line")
    args = ap.parse_args(argv)
    # Before the checkpoint is read: a dataset's JSONL given as --json is not appended to, a missing input named
    check_before_work(ap, args.json, {"checkpoint", "val", "iou", "covered"}, "coverage tables", [args.checkpoint],
                      [args.val])
    distinct = [float(v) for v in args.distinct.split(",") if v.strip()]
    table = coverage(args.checkpoint, args.val, distinct, args.iou)
    parts = table.pop("parts")
    columns = list(table)
    width = max(len(k) for k in parts) + 2
    print(f"share of parts covered at IoU >= {args.iou:g} ({args.checkpoint}, {args.val}):")
    print("kind".ljust(width) + "parts".rjust(6) + "".join(c.rjust(15) for c in columns))
    for kind in sorted(parts, key=lambda k: (k != "ALL", -parts[k], k)):
        print(kind.ljust(width) + str(parts[kind]).rjust(6) + "".join(f"{table[c][kind]:15.3f}" for c in columns))
    if args.json:
        with args.json.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"checkpoint": str(args.checkpoint), "val": str(args.val), "iou": args.iou,
                                "parts": parts, "covered": table}, ensure_ascii=False) + "\n")
    return table


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
