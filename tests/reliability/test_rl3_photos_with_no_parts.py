"""GRPO on photos with no parts: the rollouts and the validation pass score what each answer wrote, so an answer that
does not parse (free decoding, cut by `grpo.max_new_tokens`) earns nothing where a readable `[]` earns the reward."""

import json

import pytest

from bbuvl.rl.trainer import train_grpo
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture()
def no_parts(small_dataset, tmp_path):
    """The small dataset's training photos with their objects removed, as one JSONL naming them absolutely."""
    out = tmp_path / "no_parts.jsonl"
    with out.open("w", encoding="utf-8") as fh:
        for line in (small_dataset / "train.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            record.update(objects=[], images=[str(small_dataset / p) for p in record["images"]])
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return out


def _logged(history):
    return [h for h in history if "loss" in h and "train_runtime" not in h]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_unreadable_rollouts_earn_no_reward_on_photos_with_no_parts(grpo_config, no_parts):
    """Three tokens of free decoding from the barely trained model are mostly no JSON (no object fits in three): scored
    as the empty answer, every rollout earned the whole weighted reward (1.5) whatever it wrote, and the logs said the
    policy was perfect. Now only a rollout that wrote `[]` earns it."""
    cfg = grpo_config(f"data.train={no_parts}", "grpo.constrained=false", "grpo.max_new_tokens=3",
                      "grpo.rewards.user=0", "grpo.rewards.user_function=null")
    for h in _logged(train_grpo(cfg, progress=False)["history"]):
        assert h["answer_length"] == 3
        assert h["reward"] < 1.5 and h["reward"] == pytest.approx(1.5 * h["reward_detection"]), h
        assert h["reward_detection"] == h["reward_label"]  # both 1 for `[]`, both 0 for what does not parse


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_empty_answer_earns_its_whole_reward_on_photos_with_no_parts(grpo_config, no_parts):
    """Under the grammar, one token of budget closes the answer as `[]` (one token): right, and paid in full."""
    cfg = grpo_config(f"data.train={no_parts}", "grpo.max_new_tokens=1", "grpo.rewards.user=0",
                      "grpo.rewards.user_function=null", "training.max_steps=1")
    (h,) = _logged(train_grpo(cfg, progress=False)["history"])
    assert h["answer_length"] == 1
    assert (h["reward"], h["reward_detection"], h["reward_label"]) == (1.5, 1.0, 1.0), h


def test_a_user_reward_that_fails_on_a_photo_with_no_parts_is_refused_before_the_run_naming_the_photo(
        grpo_config, small_dataset, tmp_path):
    """`recall` divides by the true objects: tried on the first photo only, it passed the start, and the run stopped
    at the step that first drew the third photo (within the epoch's four steps), its folder already written."""
    mixed = tmp_path / "mixed.jsonl"
    lines = (small_dataset / "train.jsonl").read_text(encoding="utf-8").splitlines()
    with mixed.open("w", encoding="utf-8") as fh:
        for n, line in enumerate(lines):
            record = json.loads(line)
            record["images"] = [str(small_dataset / p) for p in record["images"]]
            if n == 2:
                record["objects"] = []
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    cfg = grpo_config(f"data.train={mixed}", "grpo.rewards.user_function=tests.rl.reward_fns:recall",
                      "training.max_steps=4")
    with pytest.raises(ValueError) as e:
        train_grpo(cfg, progress=False)
    said = str(e.value)
    assert said.startswith("grpo.rewards.user_function tests.rl.reward_fns:recall raised ") and "ZeroDivisionError" in said
    assert said.endswith(f"(tried before the run on a photo with no parts of data.train ({mixed}:3), answered with no object)")
    assert not (tmp_path / "grpo").exists()
    # The validation pass scores data.val's photos with it too, every training.eval_steps.
    val = tmp_path / "val.jsonl"
    records = [json.loads(line) for line in (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    for record in records:
        record["images"] = [str(small_dataset / p) for p in record["images"]]
    records[1]["objects"] = []
    val.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    cfg = grpo_config(f"data.val={val}", "grpo.rewards.user_function=tests.rl.reward_fns:recall")
    with pytest.raises(ValueError, match=rf"tried before the run on a photo with no parts of data.val \({val}:2\)"):
        train_grpo(cfg, progress=False)
    assert not (tmp_path / "grpo").exists()
