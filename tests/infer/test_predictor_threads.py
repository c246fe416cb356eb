"""One `Predictor` shared by threads (a notebook's pool, a user's own web server): each call gets its own photos'
boxes. The head read the pre-merge patches another thread's pass had recorded, or none ('no pre-merge patch features
recorded'); now each thread records its own (model/patch_features.py) and the passes through one model run one at a
time (infer/predictor.py `pass_lock`)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from bbuvl.infer.predictor import Predictor
from bbuvl.model.checkpoint import save_checkpoint
from bbuvl.model.vlm import core_model
from bbuvl.train.trainer import build_run
from tests.model.test_vlm_fine_features import _nudge_fine
from tests.threads import run_together

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = ((224, 168), (168, 224), (196, 196), (252, 140))  # each its own token grid


@pytest.fixture(scope="module")
def fine_predictor(tiny_model_dir, small_dataset, tmp_path_factory) -> Predictor:
    """A tiny checkpoint whose head reads the tower's pre-merge patches and pixels (as the demo's does), its finer
    levels moved from zero so that another photo's patches change its boxes."""
    from bbuvl.config import load_config

    out = tmp_path_factory.mktemp("fine")
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.num_workers=0",
        f"training.output_dir={out / 'run'}", "training.use_cpu=true", "training.bf16=false",
        "detection.num_queries=8", "detection.num_heads=4", "detection.caption_layers=1", "detection.decoder_layers=1",
        "detection.fine_features=true", "detection.pixel_points=4", "inference.objectness_threshold=0.0",
        "inference.max_new_tokens=8",
    ])
    run = build_run(cfg)
    _nudge_fine(run.model)
    folder = save_checkpoint(run.model.eval(), run.processor, run.cfg, run.contract, run.prompt, out / "ckpt")
    return Predictor.load(folder, device="cpu")


@pytest.fixture(scope="module")
def odd_photos(tmp_path_factory) -> list[str]:
    """Noise photos of four sizes, as files."""
    folder = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(3)
    paths = []
    for i, (w, h) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
        paths.append(str(folder / f"p{i}.png"))
    return paths


def _key(result) -> tuple:
    return result.raw, result.width, result.height, tuple((d.label, *d.bbox_2d, d.score) for d in result.objects)


# Unconstrained, the untrained model writes to its budget, each photo its own tokens: another photo's answer shows.
@pytest.mark.parametrize("mode, options", [("head", {}), ("generate", {"constrained": False})])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_threads_sharing_one_predictor_get_what_each_photo_gets_alone(fine_predictor, odd_photos, mode, options):
    predictor = fine_predictor
    alone = {p: _key(predictor.predict([p], mode, **options)[0]) for p in odd_photos}
    assert predictor.model.patch_capture is not None and len(set(alone.values())) == len(odd_photos)
    visual = core_model(predictor.model.vlm).model.visual
    inside, most = [0], [0]

    def enter(*_):
        inside[0] += 1
        most[0] = max(most[0], inside[0])

    def leave(*_):
        time.sleep(0.02)  # a pass still under way: another thread's would have run into it here
        inside[0] -= 1

    handles = [visual.register_forward_pre_hook(enter), visual.register_forward_hook(leave)]
    got: dict[str, list] = {p: [] for p in odd_photos}

    def work(paths: list[str]) -> None:
        for _ in range(3):
            for p in paths:
                try:
                    got[p].append(_key(predictor.predict([p], mode, **options)[0]))
                except Exception as e:  # noqa: BLE001 - the thread's failure is the test's to report
                    got[p].append(e)

    run_together(work, [(odd_photos[k::2],) for k in range(2)], handles)
    for p in odd_photos:
        assert got[p] == [alone[p]] * 3, p
    assert most[0] == 1  # the passes ran one at a time


def test_every_predictor_on_one_model_holds_its_one_lock(fine_predictor):
    other = Predictor(fine_predictor.model, fine_predictor.processor, fine_predictor.contract, fine_predictor.prompt,
                      fine_predictor.cfg)
    assert other.passes is fine_predictor.passes
    acquired = []
    with fine_predictor.passes:  # held by one thread, the other predictor's pass waits for it
        t = threading.Thread(target=lambda: acquired.append(other.passes.acquire(timeout=0.2)))
        t.start()
        t.join()
    assert acquired == [False]
