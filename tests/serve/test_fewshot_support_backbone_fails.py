"""A served support folder whose new photos the backbone fails on (as a real one runs out of GPU memory): said once with
its traceback, counted once, the last good set kept and marked stale, and tried again when the folder changes
(serve/support_watch.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def photo(path: Path, side: int, seed: int) -> None:
    """A noise photo of `side` x `side` pixels at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def unresized_dinov2(tmp_path_factory):
    """A tiny DINOv2 whose image processor takes photos at their own size (neither resized nor cropped), as a backbone
    folder may ship it: a photo smaller than its 8-pixel patch is a RuntimeError inside the model."""
    from bbuvl.fewshot.backbones import load_backbone
    from bbuvl.tiny.backbones import tiny_backbone

    folder = tiny_backbone("dinov2", tmp_path_factory.mktemp("dinov2"), image_size=32)
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    processor.update(do_resize=False, do_center_crop=False)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return load_backbone(str(folder), "cpu")


def test_a_photo_the_backbone_fails_on_is_said_once_with_its_traceback_and_keeps_the_last_good_set(
        unresized_dinov2, tmp_path, caplog):
    from prometheus_client import CollectorRegistry, generate_latest

    from bbuvl.serve.support_watch import SupportWatcher

    folder = tmp_path / "support"
    for i, label in enumerate(["fan", "psu"]):
        for j in range(2):
            photo(folder / label / f"{j}.png", 32, 10 * i + j)
    watcher = SupportWatcher(folder, unresized_dinov2, watch_s=0)
    registry = CollectorRegistry()
    registry.register(watcher)
    tiny = tmp_path / "staged" / "0.png"
    photo(tiny, 4, 99)
    tiny.parent.rename(folder / "rru")  # a class whose one photo the model cannot take
    with caplog.at_level(logging.WARNING, logger="bbuvl.serve"):
        assert not any(watcher.check() for _ in range(6))  # before: a traceback at each check from the second on
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    said = tracebacks[0].getMessage()
    assert "not reloaded" in said and "RuntimeError" in said and "still serving version 1 (fan, psu)" in said
    assert tracebacks[0].exc_info[0] is RuntimeError
    status = watcher.status()
    assert status["version"] == 1 and status["classes"] == {"fan": 2, "psu": 2}
    assert "Kernel size" in status["stale"] and "tried again when the folder changes" in status["stale"]
    text = generate_latest(registry).decode()
    assert "bbuvl_fewshot_support_stale 1.0" in text and "bbuvl_fewshot_support_reload_failures_total 1.0" in text
    photo(folder / "rru" / "0.png", 32, 99)  # the photo replaced by one it can take
    assert not watcher.check() and watcher.check()
    assert watcher.status()["version"] == 2 and watcher.status()["stale"] is None
    assert watcher.status()["classes"] == {"fan": 2, "psu": 2, "rru": 1}
