"""GRPO on photos that pass the start's header check and cannot be read when drawn (cut short, or replaced by one of
another size since the start): the rollouts answer the next photo in its place and the run ends listing it, as SFT
trains the next sample (docs/design.md, "Photos that cannot be read"); the validation pass leaves such a photo out
of eval_reward, naming it. Before, the first draw of a cut photo ended the run (its steps since the last checkpoint
lost), and a photo replaced by one twice its size was scored in the new file's pixels against its record's truth."""

import json
import logging
import math
import shutil

import pytest
from PIL import Image
from transformers import TrainerCallback
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config
from bbuvl.rl.evaluate import photos_reward
from bbuvl.rl.trainer import build_grpo_run, train_grpo
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture()
def photos(small_dataset, tmp_path):
    """A copy of the small dataset whose JSONLs name their photos absolutely (the photos are changed in the tests)."""
    out = tmp_path / "data"
    shutil.copytree(small_dataset, out)
    for name in ("train.jsonl", "val.jsonl"):
        rows = [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]
        (out / name).write_text("".join(json.dumps({**r, "images": [str(out / p) for p in r["images"]]},
                                                   ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return out


def _photo(data, name, line):
    return json.loads((data / name).read_text(encoding="utf-8").splitlines()[line - 1])["images"][0]


def _cut(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])  # the header still reads: the start's check passes


def _doubled(path):
    with Image.open(path) as im:
        im.load()
        im.resize((im.width * 2, im.height * 2)).save(path)


def _config(grpo_config, photos, *overrides):
    """Every photo of the epoch drawn in two steps of four, two short rollouts each."""
    return grpo_config(f"data.train={photos / 'train.jsonl'}", f"data.val={photos / 'val.jsonl'}",
                       "training.per_device_batch_size=4", "training.max_steps=2", "grpo.group_size=2",
                       "grpo.max_new_tokens=16", "grpo.rewards.user=0", "grpo.rewards.user_function=null", *overrides)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_training_photo_cut_short_is_answered_in_its_place_and_listed_at_the_end(grpo_config, photos, tmp_path):
    cut, val_cut = _photo(photos, "train.jsonl", 3), _photo(photos, "val.jsonl", 1)
    _cut(cut), _cut(val_cut)
    path = tmp_path / "grpo.yaml"
    path.write_text(dump_config(_config(grpo_config, photos)), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "photos that could not be read when drawn, the next photo answered in each one's place: 1" in said, said
    assert "train.jsonl:3:" in "".join(said.split()) and "cannot decode image" in said, said  # rich wraps paths
    history = json.loads((tmp_path / "grpo" / "history.json").read_text(encoding="utf-8"))
    (evaluation,) = [h for h in history if "eval_reward" in h]  # the cut validation photo left out, not the pass
    assert math.isfinite(evaluation["eval_reward"])
    assert (tmp_path / "grpo" / "final").is_dir()


class _Replace(TrainerCallback):
    """Replaces a photo by one twice its size once training begins (after the start read its header)."""

    def __init__(self, path):
        self.path = path

    def on_train_begin(self, args, state, control, **kwargs):
        _doubled(self.path)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_training_photo_replaced_by_another_size_since_the_start_is_answered_in_its_place(grpo_config, photos):
    replaced = _photo(photos, "train.jsonl", 6)
    result = train_grpo(_config(grpo_config, photos), progress=False, callbacks=[_Replace(replaced)])
    (said,) = result["unreadable"]
    assert said.endswith(f"train.jsonl:6: {replaced}: image is 448x336 but its record says 224x168"), said


def test_a_validation_photo_replaced_by_another_size_is_left_out_not_scored_in_its_pixels(grpo_config, photos, caplog):
    run = build_grpo_run(grpo_config(f"data.train={photos / 'train.jsonl'}", f"data.val={photos / 'val.jsonl'}",
                                     "grpo.rewards.user=0", "grpo.rewards.user_function=null"))
    run.predictor.model.eval()
    (first, second) = run.val_photos
    alone = photos_reward(run.predictor, [second], run.scorer)
    _doubled(first.path)
    with caplog.at_level(logging.WARNING, logger="bbuvl.rl.evaluate"):
        assert photos_reward(run.predictor, [first, second], run.scorer) == alone
    (said,) = [r.getMessage() for r in caplog.records if r.name == "bbuvl.rl.evaluate"]
    assert said.startswith(f"{photos / 'val.jsonl'}:1: this validation photo cannot be read ({first.path}: image is "
                           "448x336 but its record says 224x168): left out of eval_reward"), said
