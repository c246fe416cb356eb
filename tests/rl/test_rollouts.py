"""Rollouts (rl/rollouts.py): each (seed, step, photo) draws from a seed of its own, and an answer is read for its
rewards with every object it wrote, an exact repeat too."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from bbuvl.config import RewardWeights
from bbuvl.data.families import TURN_END
from bbuvl.data.labels import Hierarchy
from bbuvl.infer.modes.generate import read_answers
from bbuvl.infer.predictor import Predictor
from bbuvl.rl.rewards import LabelledBox, RewardScorer
from bbuvl.rl.rollouts import read_photos, read_rollouts, rollout_seed
from bbuvl.rl.trainer import train_grpo
from bbuvl.train.run_record import RUN_RECORD
from bbuvl.versions import SOURCE
from tests.callbacks import StopAt
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_every_seed_step_and_photo_draws_from_a_seed_of_its_own():
    # Before: seed * 1_000_003 + step * 7_919 + index, so photo 7,919 at step 0 drew photo 0's samples of step 1, and
    # seed 43's first photo those of seed 42's photo 2,209 at step 126
    assert rollout_seed(42, 1, 0) != rollout_seed(42, 0, 7919)
    assert rollout_seed(43, 0, 0) != rollout_seed(42, 126, 2209)
    seeds = [rollout_seed(seed, step, index) for seed in (42, 43) for step in range(130) for index in range(0, 8000, 7)]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)
    assert rollout_seed(42, 3, 5) == rollout_seed(42, 3, 5)  # a resume draws what the run drew


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_begun_under_the_old_seeds_resumes_saying_it_goes_on_under_another_program(grpo_config, tmp_path, caplog):
    """Its steps after the resume draw from other seeds than its first ones did: not refused (the seeds fix a bug),
    said (docs/grpo.md, "Exact resume")."""
    cfg = grpo_config("training.max_steps=2", "training.save_steps=1", f"training.output_dir={tmp_path / 'run'}")
    train_grpo(cfg, progress=False, callbacks=[StopAt(1)])
    record_path = tmp_path / "run" / RUN_RECORD
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["software"] = record["software"] | {SOURCE: "0123456789abcdef"}  # the files that drew with the old seeds
    record_path.write_text(json.dumps(record), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bbuvl"):
        train_grpo(cfg, resume=True, progress=False)
    said = [r.getMessage() for r in caplog.records if "another program" in r.getMessage()]
    assert len(said) == 1 and "bbuvl's own files changed (source 0123456789abcdef, now " in said[0], said


def test_an_object_a_rollout_writes_twice_is_scored_as_an_extra_object_not_a_second_hit(trained_checkpoint,
                                                                                         small_dataset):
    predictor = Predictor.load(trained_checkpoint, device="cpu")
    photo = read_photos(str(small_dataset / "train.jsonl"))[0]
    prepared = predictor.encode(predictor.prepare(photo.path))
    label = predictor.prompt.labels[0]
    end = predictor.tokenizer.convert_tokens_to_ids(TURN_END)

    def written(*boxes: list[int]) -> torch.Tensor:
        text = json.dumps([{"bbox_2d": b, "label": label} for b in boxes], ensure_ascii=False)
        return torch.tensor([predictor.tokenizer.encode(text, add_special_tokens=False) + [end]])

    def answer(new: torch.Tensor) -> tuple[list[LabelledBox], bool]:
        (result,) = read_rollouts(predictor, [prepared], new)
        return [LabelledBox(tuple(d.bbox_2d), d.label) for d in result.objects], result.error is None

    once, ok = answer(written([10, 20, 60, 80]))
    truth = list(once)  # the object, in the stored photo's pixels
    scorer = RewardScorer.from_config(RewardWeights(detection=1.0, label=0.5), Hierarchy.load(None),
                                      predictor.prompt.labels)
    assert scorer.score(truth, once, ok) == {"reward": 1.5, "detection": 1.0, "label": 1.0}
    twice, ok = answer(written([10, 20, 60, 80], [10, 20, 60, 80]))
    assert len(twice) == 2  # read as written: the repeat was dropped before the rewards saw it, which paid it in full
    assert scorer.score(truth, twice, ok) == {"reward": 0.75, "detection": 0.5, "label": 0.5}  # as 1 px apart earns
    # Prediction still reads the repeat as no second object
    (predicted,) = read_answers(predictor, [prepared], written([10, 20, 60, 80], [10, 20, 60, 80]), torch.zeros(1, 64))
    assert len(predicted.objects) == 1
