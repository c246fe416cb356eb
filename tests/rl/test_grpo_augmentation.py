"""GRPO's rollouts see their training photos as SFT shows its students: `data.mirror` and `data.crop` move the pixels
and the truth the rewards compare with alike (they were ignored without a word: the same pixels whatever they said)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps
from transformers import TrainerCallback

from bbuvl.config import Config, CropConfig
from bbuvl.data.coords import CoordinateContract
from bbuvl.data.schema import read_dataset
from bbuvl.infer.predictor import Predictor
from bbuvl.model.checkpoint import Prompt
from bbuvl.rl.rollouts import Augmentation, photos_of, shown
from bbuvl.rl.trainer import grpo_ignores, read_grpo_inputs, train_grpo
from bbuvl.train.dataset import sources_from
from tests.rl import reward_fns
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]


class _SeenFromTheFirstStep(TrainerCallback):
    """Forgets the truths the start's check of the reward function saw: only the rollouts' remain."""

    def on_train_begin(self, args, state, control, **kwargs):
        reward_fns.SEEN_TRUTH.clear()


def _boxes(truth) -> set:
    return {(tuple(b.bbox_2d), b.label) for b in truth}


def _truths_seen(cfg) -> list[set]:
    train_grpo(cfg, progress=False, callbacks=[_SeenFromTheFirstStep()])
    return [_boxes(t) for t in reward_fns.SEEN_TRUTH]


COMMON = ("grpo.rewards.user_function=tests.rl.reward_fns:seen_truth", "training.max_steps=1")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_rollouts_of_a_mirrored_photo_are_scored_against_its_mirrored_truth(grpo_config, tmp_path):
    width = 224  # the photos are 224x168, their own frame: the view is the stored photo's size
    seen_plain = _truths_seen(grpo_config(*COMMON, f"training.output_dir={tmp_path / 'plain'}"))
    seen_mirrored = _truths_seen(grpo_config(*COMMON, "data.mirror=1.0", f"training.output_dir={tmp_path / 'mirror'}"))
    assert seen_plain and len(seen_plain) == len(seen_mirrored)
    for before, after in zip(seen_plain, seen_mirrored):
        flipped = {((round(width - x2, 1), y1, round(width - x1, 1), y2), label)
                   for (x1, y1, x2, y2), label in before}
        assert after == flipped and (after != before or not before)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_rollouts_of_a_cropped_photo_are_scored_against_the_boxes_the_window_keeps(grpo_config, tmp_path):
    seen_plain = _truths_seen(grpo_config(*COMMON, f"training.output_dir={tmp_path / 'plain'}"))
    seen_cropped = _truths_seen(grpo_config(*COMMON, "data.crop.p=1.0", "data.crop.min_side=0.5", "data.crop.max_side=0.6",
                                            f"training.output_dir={tmp_path / 'crop'}"))
    assert len(seen_plain) == len(seen_cropped)
    assert any(p != c for p, c in zip(seen_plain, seen_cropped))  # every window moves or drops the boxes
    for truth in seen_cropped:  # magnified to the whole photo's frame: 224x168
        assert all(0 <= x1 < x2 <= 224 and 0 <= y1 < y2 <= 168 for (x1, y1, x2, y2), _ in truth)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_pixels_a_rollout_sees_are_mirrored_with_its_truth(grpo_config, trained_checkpoint):
    cfg = grpo_config()
    predictor = Predictor.load(trained_checkpoint, device="cpu")
    photo = photos_of(read_grpo_inputs(cfg).sources)[0]
    plain, truth = shown(predictor, photo, Augmentation(), seed=42, step=0)
    mirrored, moved = shown(predictor, photo, Augmentation(mirror=1.0), seed=42, step=0)
    assert truth == photo.truth and mirrored.size == plain.size
    assert np.array_equal(np.asarray(mirrored.image), np.asarray(ImageOps.mirror(plain.image)))
    W = plain.size[0]
    assert [b.bbox_2d for b in moved] == [(round(W - b.bbox_2d[2], 1), b.bbox_2d[1], round(W - b.bbox_2d[0], 1),
                                           b.bbox_2d[3]) for b in truth]
    cropped, _ = shown(predictor, photo, Augmentation(CropConfig(p=1.0)), seed=42, step=0)
    assert cropped.size == plain.size and not np.array_equal(np.asarray(cropped.image), np.asarray(plain.image))


def test_grpo_names_the_sample_settings_its_rollouts_never_read(grpo_config):
    said = " ".join(grpo_ignores(grpo_config("data.max_length=512", "data.oversize=skip", "data.padding_side=left",
                                             "data.sample_cache_mb=10")))
    for key in ("data.max_length (512)", "data.oversize (skip)", "data.padding_side (left)", "data.sample_cache_mb (10"):
        assert key in said, key
    assert grpo_ignores(grpo_config("data.mirror=0.5", "data.crop.p=0.5", "training.lr.detection=0")) == []


def test_a_rollouts_view_is_shown_at_its_photos_frame_and_its_truth_stays_in_its_photos_pixels(tmp_path, tiny, tiny_family):
    """Under the shapes demo's 64 tokens a 109x113 photo is framed at 112x112, and 112x112 at 224x224: the view was
    framed again and shown larger than SFT shows it, its truth read in the 112x112 picture's pixels."""
    Image.new("RGB", (109, 113), (90, 90, 90)).save(tmp_path / "p.png")
    line = {"images": ["p.png"], "width": 109, "height": 113, "objects": [{"bbox_2d": [10, 20, 60, 80], "desc": "标签贴纸"}]}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    contract = CoordinateContract(50176, 50176, max_vision_tokens=64, family=tiny_family)
    predictor = Predictor(tiny[0], tiny[1], contract, Prompt("找出每个部件。", ["标签贴纸"], "zh"), Config())
    photo = photos_of(sources_from(read_dataset(path), path))[0]
    plain, truth = shown(predictor, photo, Augmentation(), seed=42, step=0)
    whole_window = Augmentation(CropConfig(p=1.0, min_side=1.0, max_side=1.0))
    for augmentation in (Augmentation(mirror=1.0), whole_window):
        view, moved = shown(predictor, photo, augmentation, seed=42, step=0)
        assert view.image.size == plain.image.size == contract.model_size((109, 113))
        assert view.size == plain.size == (109, 113)  # where the answer is read back to, with the truth
    assert shown(predictor, photo, whole_window, seed=42, step=0)[1] == truth
