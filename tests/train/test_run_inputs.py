"""A run's inputs are read and checked before its folder is touched: each missing one named by its key, and a refusal
after `--overwrite` never costs the run it would have replaced."""

import importlib.util
import shutil

import pytest

from bbuvl.train.trainer import train
from tests.model_folders import IMAGE_PROCESSOR_GONE, remove_file

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_refused_start_with_overwrite_keeps_the_previous_run(run_config, small_dataset, tmp_path):
    """A typo in data.val, a missing photo or a batch over its budget was found once --overwrite had removed the
    previous run: that run was lost and none started."""
    cfg = run_config("training.max_steps=1", "training.save_steps=1")
    train(cfg, progress=False)
    out = tmp_path / "run"
    before = _tree(out)
    assert "final/model.safetensors" in before and "checkpoint-1/trainer_state.json" in before
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    (data / "images" / sorted(p.name for p in (data / "images").iterdir())[0]).unlink()
    bad = {
        "data.val": (f"data.val={tmp_path / 'typo.jsonl'}", "data.val .*typo.jsonl: no such file"),
        "a photo": (f"data.train={data / 'train.jsonl'}", r"train\.jsonl:\d+: image .*: "),
        "a budget": ("model.max_vision_tokens_per_batch=8", "model.max_vision_tokens_per_batch \\(8\\) is below"),
        "the model": (f"model.path={tmp_path / 'no-model'}", "no-model: no such folder"),
    }
    for override, says in bad.values():
        with pytest.raises(ValueError, match=says):
            train(run_config("training.max_steps=1", override), progress=False, overwrite=True)
        assert _tree(out) == before, override


@pytest.mark.parametrize("key", ["data.train", "data.hierarchy", "training.deepspeed", "detection.caption_refit.photos"])
def test_a_missing_input_is_named_by_its_key_before_anything_is_written(run_config, tmp_path, key):
    """data.train and the refit's photos were named by their reader ('cannot open dataset', no key), and
    training.deepspeed by a traceback from transformers once the model had loaded."""
    refit = ["detection.caption_refit.steps=1"] if key.startswith("detection") else []
    missing = tmp_path / "typo.json"
    with pytest.raises(ValueError, match=f"^{key} {missing}: no such file$"):
        train(run_config(f"{key}={missing}", *refit), progress=False)
    with pytest.raises(ValueError, match=f"^{key} {tmp_path}: a folder$"):
        train(run_config(f"{key}={tmp_path}", *refit), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_deepspeed_config_is_read_before_the_model_loads(run_config, tmp_path):
    ds = tmp_path / "zero.json"
    ds.write_text('{"zero_optimization": {"stage": 2},\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"^training.deepspeed {ds}: line 2: not valid JSON"):
        train(run_config(f"training.deepspeed={ds}"), progress=False)
    ds.write_text("[2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="a DeepSpeed config is a JSON object"):
        train(run_config(f"training.deepspeed={ds}"), progress=False)
    assert not (tmp_path / "run").exists()
    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here: its absence cannot be shown")
    ds.write_text('{"zero_optimization": {"stage": 2}}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"deepspeed package is not installed: .*\.\[deepspeed\]"):
        train(run_config(f"training.deepspeed={ds}"), progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_bbuvl_train_says_how_many_faults_its_training_and_validation_photos_hold(run_config, small_dataset, tmp_path):
    """Nothing said whether a run's validation photos could measure faults at all: a set without a faulty photo
    scores no fault recall and no verdict, and the run finished without a word about it."""
    from typer.testing import CliRunner

    from bbuvl.cli import app
    from bbuvl.config import dump_config
    from bbuvl.data.schema import read_records, write_dataset

    records = read_records(small_dataset / "val.jsonl")
    screw = "螺丝连接点/BBU安装螺丝/"
    boxes = [[10.0, 10.0, 40.0, 40.0], [60.0, 60.0, 90.0, 90.0]]
    # two photos: one with a loose screw beside a seated one (1 fault of 2 objects), one with a seated screw only
    labels = [[screw + "连接错误", screw + "连接正确"], [screw + "连接正确"]]
    val = tmp_path / "val.jsonl"
    shutil.copytree(small_dataset / "images", tmp_path / "images")
    write_dataset(val, [r.model_copy(update={"objects": [o.model_copy(update={"desc": d, "bbox_2d": box})
                                                         for o, d, box in zip(r.objects, ds, boxes)]})
                        for r, ds in zip(records, labels)])
    assert [len(r.objects) for r in read_records(val)] == [2, 1]
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(run_config("training.max_steps=1", f"data.val={val}")), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "data.val: 1 of 2 photos hold a fault; 1 faulty part of 3 objects" in result.output, result.output
    assert "data.train: " in result.output and "note" not in result.output

    write_dataset(val, [r.model_copy(update={"objects": r.objects[1:]}) for r in read_records(val)])  # no fault left: 1 object
    config.write_text(dump_config(run_config("training.max_steps=1", f"data.val={val}",
                                             f"training.output_dir={tmp_path / 'run2'}")), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "data.val: 0 of 2 photos hold a fault; 0 faulty parts of 1 object" in out, out
    assert "data.val holds no faulty photo, so neither fault recall nor the photo verdict can be measured" in out, out


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_empty_teacher_pool_the_config_names_is_refused_before_anything_is_written(run_config, tmp_path):
    """An empty data.teachers trained without a single teacher photo, saying nothing, where a misspelt one is refused;
    one no teacher is drawn from (data.teacher_ratio 0) is not read for teachers."""
    empty = tmp_path / "teachers.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^data.teachers {empty}: no samples .* data.teacher_ratio 0.5 draws "
                                         r"teachers from it; .* or set data.teachers: null"):
        train(run_config(f"data.teachers={empty}"), progress=False)
    assert not (tmp_path / "run").exists()
    train(run_config(f"data.teachers={empty}", "data.teacher_ratio=0", "training.max_steps=1"), progress=False)
    assert (tmp_path / "run" / "final").is_dir()


# (the start folder, the file taken out, what the refusal says). Before: transformers' "Can't load video processor"
# or "model config and tokenizer disagree" once the data had been read, or for the rest a run that started: from a
# checkpoint without its chat template to a final/ without one (which `bbuvl model export` refuses), and with
# model.reuse_modules from a checkpoint without its head to a new head, silently.
START_FOLDER = [
    ("plain", "tokenizer.json", "no tokenizer (tokenizer.json or vocab.json or tokenizer.model missing)"),
    ("plain", "preprocessor_config.json", f"{IMAGE_PROCESSOR_GONE} missing"),
    ("checkpoint", "tokenizer.json", "no tokenizer (tokenizer.json or vocab.json or tokenizer.model missing)"),
    ("checkpoint", "chat_template.jinja", "chat_template.jinja missing"),
    ("checkpoint", "prompt.json", "prompt.json missing"),
    ("checkpoint", "detection_head.safetensors",
     "detection_head.safetensors missing (the checkpoint's config sets detection.enabled)"),
]


@pytest.mark.parametrize(("kind", "name", "says"), START_FOLDER, ids=[f"{k}-{n}" for k, n, _ in START_FOLDER])
def test_a_start_folder_missing_a_file_is_refused_naming_it_before_anything_is_written(
        run_config, tiny_model_dir, trained_checkpoint, tmp_path, kind, name, says):
    start = tmp_path / "start"
    shutil.copytree(tiny_model_dir if kind == "plain" else trained_checkpoint, start)
    remove_file(start, name)
    with pytest.raises(ValueError) as e:
        train(run_config(f"model.path={start}", "model.reuse_modules=true", "training.max_steps=1"), progress=False)
    assert str(e.value) == (f"model.path {start}: incomplete or damaged model folder ({says}); re-copy it, or point "
                            "model.path at another"), str(e.value)
    assert not (tmp_path / "run").exists()


# (the file of a plain start folder, how it is damaged, what the refusal says). Before: a traceback from transformers
# ("'list' object has no attribute 'get'") once the data had been read, or JSON's own words naming no file.
PLAIN_DAMAGED = [
    ("preprocessor_config.json", "[1]", "preprocessor_config.json: holds an array, expected a JSON object ({...})"),
    ("tokenizer_config.json", '{"x": ', "tokenizer_config.json: line 1: not valid JSON (Expecting value at column 7"),
    ("chat_template.jinja", "{% if %}", "chat_template.jinja: line 1: not a valid chat template"),
]


@pytest.mark.parametrize(("name", "text", "says"), PLAIN_DAMAGED, ids=[n for n, _, _ in PLAIN_DAMAGED])
def test_a_plain_start_folder_with_a_damaged_file_is_refused_naming_it_before_anything_is_written(
        run_config, tiny_model_dir, tmp_path, name, text, says):
    start = tmp_path / "start"
    shutil.copytree(tiny_model_dir, start)
    (start / name).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        train(run_config(f"model.path={start}", "training.max_steps=1"), progress=False)
    assert str(e.value).startswith(f"model.path {start}: incomplete or damaged model folder ({says}"), str(e.value)
    assert not (tmp_path / "run").exists()


def test_mirrors_with_labels_that_name_a_side_are_warned_of_at_the_start_naming_them(run_config, small_dataset,
                                                                                     tmp_path, caplog):
    """A mirror moves the pixels and the boxes, never the words: a hierarchy with left and right states was taught
    the left part as the right one on every mirrored photo, and nothing was said."""
    import json

    from bbuvl.data.labels import DEFAULT_HIERARCHY
    from bbuvl.train.run_inputs import read_run_inputs

    tree = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    tree["categories"]["挡风板"]["attributes"]["左侧"] = {"gloss": "on the left", "states": {}}
    tree["categories"]["挡风板"]["attributes"]["装在右"] = {"gloss": "fitted", "states": {}}
    tree["categories"]["挡风板"]["attributes"]["靠门"] = {"gloss": "by the left door", "states": {}}
    tree["categories"]["线缆"]["gloss"] = "bright cable"  # no side: "bright" holds "right" inside a word
    sided = tmp_path / "hierarchy.json"
    sided.write_text(json.dumps(tree, ensure_ascii=False), encoding="utf-8")

    def said(*overrides: str) -> list[str]:
        caplog.clear()
        with caplog.at_level("WARNING", logger="bbuvl.train.run_inputs"):
            read_run_inputs(run_config(*overrides))
        return [r.getMessage() for r in caplog.records if "data.mirror" in r.getMessage()]

    assert said("data.mirror=0.5") == []  # the shipped hierarchy names no side
    assert said(f"data.hierarchy={sided}") == []  # no mirrors
    lines = said("data.mirror=0.5", f"data.hierarchy={sided}")
    assert len(lines) == 1 and lines[0].startswith("data.mirror 0.5 shows photos mirrored left to right")
    assert ("3 label(s) of the data or data.hierarchy name a side: '挡风板/左侧', '挡风板/装在右', "
            "'挡风板/靠门 (air baffle/by the left door)';") in lines[0]
