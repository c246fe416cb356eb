"""Few-shot fixtures: synthetic part crops (support + queries, some classes without support) and tiny backbones."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

HELD_OUT = 3  # classes with queries but no support: their truth is Unknown


@dataclass(frozen=True)
class PartCrops:
    """A synthetic dataset and the crop folders cut from it."""

    data: Path  # dataset folder (train.jsonl, val.jsonl, images/)
    support: Path  # support/<class path>/*.png, 5 crops per known class
    query: Path  # query/<class path>/*.png, known and held-out classes
    known: tuple[str, ...]  # classes with support
    held_out: tuple[str, ...]  # classes queried but not in the support


@pytest.fixture(scope="session")
def part_crops(tmp_path_factory) -> PartCrops:
    """Crops of synthetic BBU-room photos (320x240): 5 support crops per known class, up to 4 queries per class."""
    from bbuvl.data.schema import read_records
    from bbuvl.fewshot.crops import write_crops
    from bbuvl.synthetic.dataset import synthesize

    root = tmp_path_factory.mktemp("parts")
    synthesize(root / "data", 16, 6, seed=5, size=(320, 240))
    counts = Counter(o.desc for r in read_records(root / "data" / "train.jsonl") for o in r.objects)
    common = sorted(label for label, n in counts.items() if n >= 5)
    known, held_out = tuple(common[:-HELD_OUT]), tuple(common[-HELD_OUT:])
    write_crops(root / "data" / "train.jsonl", root / "support", classes=known, per_class=5)
    write_crops(root / "data" / "val.jsonl", root / "query", classes=known + held_out, per_class=4)
    return PartCrops(root / "data", root / "support", root / "query", known, held_out)


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory) -> dict[str, Path]:
    """A random-weight backbone of each learned kind at 32x32 input, saved like a real checkpoint."""
    from bbuvl.tiny.backbones import tiny_backbone

    root = tmp_path_factory.mktemp("backbones")
    return {kind: tiny_backbone(kind, root / kind, image_size=32, seed=0) for kind in ("clip", "dinov2", "resnet")}
