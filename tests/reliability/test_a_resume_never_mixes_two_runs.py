"""Class 1: a resume never mixes two runs.

`predict` resumes an output only for the same photos, checkpoint, mode and options, each compared by content;
`train --resume` only with the config and inputs the run started with (GRPO's section included). A mismatch is
refused before any model loads, naming what differs with its old and new value.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import load_config

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def refused(result, *needles: str) -> str:
    """The one-line refusal: exit 2, no traceback, every needle in it."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    text = " ".join(result.output.split())
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


# --- predict ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predicted(trained_checkpoint, small_dataset, tmp_path_factory) -> dict[str, Path]:
    """One head-mode predict run over two photos: its checkpoint, input and output (with manifest)."""
    root = tmp_path_factory.mktemp("resume")
    ckpt = root / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    data = root / "data"
    shutil.copytree(small_dataset / "images", data / "images")
    lines = (small_dataset / "val.jsonl").read_text(encoding="utf-8")
    (data / "val.jsonl").write_text(lines, encoding="utf-8")
    out = root / "out" / "pred.jsonl"
    r = invoke(["predict", "-c", ckpt, "-i", data / "val.jsonl", "-o", out, "--mode", "head", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return {"ckpt": ckpt, "data": data, "out": out}


def fresh(predicted, tmp_path) -> dict[str, Path]:
    """A copy of the predict run's checkpoint, input and output for one test to change."""
    copy = {k: tmp_path / k for k in ("ckpt", "data")}
    for k, dst in copy.items():
        shutil.copytree(predicted[k], dst)
    out = tmp_path / "pred.jsonl"
    shutil.copy(predicted["out"], out)
    shutil.copy(predicted["out"].with_name(predicted["out"].name + ".predict.json"), out.with_name(out.name + ".predict.json"))
    return copy | {"out": out}


def again(run: dict[str, Path], *extra) -> object:
    return invoke(["predict", "-c", run["ckpt"], "-i", run["data"] / "val.jsonl", "-o", run["out"], "--mode", "head",
                   "--device", "cpu", *extra])


@pytest.mark.parametrize(("extra", "named"), [
    (["--score-threshold", "0.5"], "score_threshold 0.0 (now 0.5)"),
    (["--tiles", "2x2"], "tiles 'off' (now '2x2')"),
    (["--objectness-threshold", "0.9"], "objectness_threshold 0.0 (now 0.9)"),
    (["--no-constrained"], "constrained True (now False)"),
    (["--tiles", "2x2", "--tile-zoom", "2"], "tile_zoom None (now 2.0)"),
    (["--tiles", "2x2", "--tile-stride", "0.5"], "tile_stride None (now 0.5)"),
    (["--tiles", "2x2", "--tile-refine", "挡风板"], "tile_refine None (now ['挡风板'])"),
], ids=["score-threshold", "tiles", "objectness-threshold", "constrained", "tile-zoom", "tile-stride", "tile-refine"])
def test_predict_refuses_to_resume_with_another_option_naming_its_old_and_new_value(predicted, tmp_path, extra, named):
    run = fresh(predicted, tmp_path)
    before = run["out"].read_bytes()
    refused(again(run, *extra), "holds predictions of another run", named, "--overwrite")
    assert run["out"].read_bytes() == before


def test_predict_refuses_a_checkpoint_retrained_in_place(predicted, trained_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    run = fresh(predicted, tmp_path)
    head = run["ckpt"] / "detection_head.safetensors"
    tensors = load_file(head)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1  # another training's weights under the same name and path
    save_file(tensors, head, metadata={"format": "pt"})
    refused(again(run), "the checkpoint's content changed", "1 file differ: detection_head.safetensors")


def test_predict_sees_a_weight_edit_that_kept_size_and_mtime(predicted, tmp_path):
    run = fresh(predicted, tmp_path)
    head = run["ckpt"] / "detection_head.safetensors"
    st = head.stat()
    data = bytearray(head.read_bytes())
    data[-2] ^= 0x01
    head.write_bytes(bytes(data))
    os.utime(head, ns=(st.st_atime_ns, st.st_mtime_ns))
    refused(again(run), "the checkpoint's content changed")


def test_a_recorded_digest_is_trusted_only_while_size_mtime_ctime_and_inode_match(tmp_path):
    from bbuvl.data.digests import file_digest

    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 64)
    first = file_digest(f, "w.bin")
    assert file_digest(f, "w.bin", {"w.bin": first}) is first  # unchanged: not hashed again
    st = f.stat()
    f.write_bytes(b"b" * 64)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, mtime set back: ctime still moved
    again_ = file_digest(f, "w.bin", {"w.bin": first})
    assert again_.sha256 != first.sha256


def test_predict_refuses_an_input_whose_photo_was_replaced_under_its_name(predicted, tmp_path):
    run = fresh(predicted, tmp_path)
    first = json.loads((run["data"] / "val.jsonl").read_text(encoding="utf-8").splitlines()[0])["images"][0]
    photos = sorted((run["data"] / "images").iterdir())
    other = next(p for p in photos if p.name != Path(first).name)
    shutil.copy(other, run["data"] / first)
    refused(again(run), "the input changed", f"1 photo differ: {first}")


def test_predict_refuses_to_resume_teachers_mode_after_a_teacher_photo_was_replaced_under_its_name(predicted,
                                                                                                     small_dataset,
                                                                                                     tmp_path):
    # The teachers JSONL was keyed by its own bytes alone: the photo it names, replaced in place, showed the model
    # another example between a kill and its resume, and one file held lines predicted beside two teachers.
    run = fresh(predicted, tmp_path)
    teachers = run["data"] / "teachers.jsonl"
    shutil.copy(small_dataset / "teachers.jsonl", teachers)
    out = tmp_path / "taught.jsonl"

    def teach() -> object:
        return invoke(["predict", "-c", run["ckpt"], "-i", run["data"] / "val.jsonl", "-o", out, "--mode", "teachers",
                       "--teachers", teachers, "--max-new-tokens", "4", "--device", "cpu"])

    assert (r := teach()).exit_code == 0, r.output
    out.write_text(out.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")  # killed after one
    first = json.loads(teachers.read_text(encoding="utf-8").splitlines()[0])["images"][0]
    other = next(p for p in sorted((run["data"] / "images").iterdir()) if p.name != Path(first).name)
    shutil.copy(other, run["data"] / first)  # the same size: the teacher still loads
    kept = out.read_bytes()
    refused(teach(), "holds predictions of another run", "the teachers' photos changed", "--overwrite")
    assert out.read_bytes() == kept


def test_predict_refuses_an_input_file_rewritten_with_other_photos(predicted, small_dataset, tmp_path):
    run = fresh(predicted, tmp_path)
    (run["data"] / "val.jsonl").write_text((small_dataset / "train.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    shutil.copytree(small_dataset / "images", run["data"] / "images", dirs_exist_ok=True)
    refused(again(run), "the input changed", "added", "removed")


def test_predict_refuses_an_output_whose_manifest_has_no_resume_key(predicted, tmp_path):
    run = fresh(predicted, tmp_path)
    manifest = run["out"].with_name(run["out"].name + ".predict.json")
    old = json.loads(manifest.read_text(encoding="utf-8"))
    manifest.write_text(json.dumps({k: old[k] for k in ("input", "checkpoint", "mode", "tool")}), encoding="utf-8")
    refused(again(run), "older bbu-vl", "--overwrite")


def test_predict_resumes_the_same_photos_and_checkpoint_copied_elsewhere(predicted, tmp_path):
    run = fresh(predicted, tmp_path)  # every path differs from the first run's; no content does
    r = again(run, "--batch-size", "1")  # the batch size is not in the key: it moves digits, not findings (docs/resume.md)
    assert r.exit_code == 0, r.output
    assert "0 predicted" in r.output and "2 already in" in r.output


def test_the_resume_key_names_each_difference():
    from bbuvl.data.digests import FileDigest
    from bbuvl.infer.resume_key import ResumeKey, differences

    def key(mode: str, score: float, photos: list[tuple[str, str]]) -> ResumeKey:
        from bbuvl.data.digests import combined

        files = [FileDigest(n, h, 1, 1, 1, 1) for n, h in photos]
        return ResumeKey(combined(files), "ck", mode, {"score_threshold": score}, files, [])

    old = key("head", 0.0, [("a.jpg", "1"), ("b.jpg", "2")])
    assert differences(old, key("head", 0.0, [("a.jpg", "1"), ("b.jpg", "2")])) == []
    found = differences(old, key("name", 0.5, [("a.jpg", "9"), ("c.jpg", "3")]))
    assert found == ["mode 'head' (now 'name')", "score_threshold 0.0 (now 0.5)",
                     "the input changed (1 photo differ: a.jpg; 1 photo added: c.jpg; 1 photo removed: b.jpg)"]
    assert differences(old, key("head", 0.0, [("b.jpg", "2"), ("a.jpg", "1")])) == [
        "the input changed (the same photos in another order)"]


# --- train --resume -----------------------------------------------------------------------------------------


def run_folder(cfg, trained_checkpoint: Path, record: bool = True) -> Path:
    """`cfg`'s output folder holding a run to resume: its record (as a fresh run writes it) and checkpoint-2, whose
    own config is `cfg`'s, as the run's saves write it."""
    from bbuvl.config import CONFIG_FILE, dump_config
    from bbuvl.train.run_record import write_run_record

    out = Path(cfg.training.output_dir)
    shutil.copytree(trained_checkpoint, out / "checkpoint-2")
    (out / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}), encoding="utf-8")
    (out / "checkpoint-2" / CONFIG_FILE).write_text(dump_config(cfg), encoding="utf-8")
    if record:
        write_run_record(out, cfg)
    return out


@pytest.mark.parametrize(("override", "named"), [
    ("detection.num_queries=16", "detection.num_queries 8 (now 16)"),
    ("training.lr.llm=0.5", "training.lr.llm 0.001 (now 0.5)"),
    ("loss.bbox_weight=1", "loss.bbox_weight 5.0 (now 1.0)"),
    ("data.teacher_ratio=0.1", "data.teacher_ratio 0.5 (now 0.1)"),
    ("training.ema_decay=0.99", "training.ema_decay 0.0 (now 0.99)"),
], ids=["num_queries", "lr", "loss-weight", "teacher-ratio", "weight-average"])
def test_sft_resume_refuses_another_config_naming_each_key(run_config, trained_checkpoint, override, named):
    from bbuvl.train.run_record import ResumeMismatch
    from bbuvl.train.trainer import train

    run_folder(run_config(), trained_checkpoint)
    with pytest.raises(ResumeMismatch, match="this config differs") as e:
        train(run_config(override), resume=True, progress=False)
    assert named in str(e.value) and "training.max_steps" in str(e.value)  # and says what may change


def test_sft_resume_refuses_a_checkpoint_another_run_trained(run_config, trained_checkpoint):
    # Before: a checkpoint-N copied (or linked) in from a run of another learning rate passed the folder's run.json
    # and resumed without a word, the other run's weights and optimizer under this run's settings.
    from bbuvl.config import CONFIG_FILE, dump_config
    from bbuvl.train.run_record import ResumeMismatch
    from bbuvl.train.trainer import train

    out = run_folder(run_config(), trained_checkpoint)
    (out / "checkpoint-2" / CONFIG_FILE).write_text(dump_config(run_config("training.lr.llm=0.5")), encoding="utf-8")
    with pytest.raises(ResumeMismatch, match="a checkpoint of another run") as e:
        train(run_config(), resume=True, progress=False)
    assert f"{out / 'checkpoint-2' / CONFIG_FILE} was trained with training.lr.llm 0.5 where the run's record holds 0.001" \
        in str(e.value)


def test_sft_resume_refuses_training_data_changed_in_place(run_config, trained_checkpoint, small_dataset, tmp_path):
    from bbuvl.train.run_record import ResumeMismatch
    from bbuvl.train.trainer import train

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    cfg = run_config(f"data.train={data / 'train.jsonl'}", f"data.val={data / 'val.jsonl'}",
                     f"data.teachers={data / 'teachers.jsonl'}")
    run_folder(cfg, trained_checkpoint)
    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()
    (data / "train.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ResumeMismatch, match=r"data.train '.*train.jsonl': its content changed"):
        train(cfg, resume=True, progress=False)


def test_sft_resume_refuses_a_base_model_changed_in_place(run_config, trained_checkpoint, tiny_model_dir, tmp_path):
    from bbuvl.train.run_record import ResumeMismatch
    from bbuvl.train.trainer import train

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    cfg = run_config(f"model.path={base}")
    run_folder(cfg, trained_checkpoint)
    (base / "generation_config.json").write_text(json.dumps({"do_sample": True}), encoding="utf-8")
    with pytest.raises(ResumeMismatch, match="model.path .*: its content changed"):
        train(cfg, resume=True, progress=False)


def test_resume_compares_inputs_by_content_not_path_and_allows_extending_the_run(run_config, trained_checkpoint,
                                                                                  small_dataset, tmp_path):
    from bbuvl.train.run_record import check_resume

    out = run_folder(run_config(), trained_checkpoint)
    moved = tmp_path / "moved"
    shutil.copytree(small_dataset, moved)
    check_resume(run_config(f"data.train={moved / 'train.jsonl'}", "training.max_steps=40", "training.logging_steps=5",
                            "inference.score_threshold=0.3"), out / "checkpoint-2")


def test_a_run_without_a_record_is_compared_with_its_checkpoint_config(trained_checkpoint, tmp_path):
    """The reported traceback: `--resume` with another num_queries, on a run saved before records existed."""
    from bbuvl.train.run_record import ResumeMismatch, check_resume

    ckpt = tmp_path / "run" / "checkpoint-2"
    shutil.copytree(trained_checkpoint, ckpt)
    cfg = load_config(ckpt / "bbuvl.yaml", ["detection.num_queries=16"])
    with pytest.raises(ResumeMismatch, match=r"bbuvl.yaml \(the config that checkpoint trained with\): "
                                             r"detection.num_queries 8 \(now 16\)"):
        check_resume(cfg, ckpt)
    check_resume(load_config(ckpt / "bbuvl.yaml", ["training.max_steps=9"]), ckpt)


@pytest.mark.parametrize(("override", "named"), [
    ("grpo.group_size=4", "grpo.group_size 2 (now 4)"),
    ("grpo.rewards.label=0.9", "grpo.rewards.label 0.5 (now 0.9)"),
    ("grpo.beta=0.1", "grpo.beta 0.0 (now 0.1)"),
], ids=["group_size", "reward-weight", "beta"])
def test_grpo_resume_refuses_another_grpo_config(run_config, trained_checkpoint, override, named):
    from bbuvl.train.run_record import ResumeMismatch
    from bbuvl.train.trainer import fit

    grpo = ("training.method=grpo", f"model.path={trained_checkpoint}", "data.val=null", "grpo.group_size=2")
    run_folder(run_config(*grpo), trained_checkpoint)

    def never() -> None:
        raise AssertionError("the trainer was built: the mismatch was found too late")

    with pytest.raises(ResumeMismatch, match="this config differs") as e:
        fit(run_config(*grpo, override), never, resume=True)
    assert named in str(e.value)


def test_grpo_resume_refuses_a_starting_checkpoint_retrained_in_place(run_config, trained_checkpoint, tmp_path):
    from bbuvl.train.run_record import ResumeMismatch
    from bbuvl.train.trainer import fit

    start = tmp_path / "start"
    shutil.copytree(trained_checkpoint, start)
    cfg = run_config("training.method=grpo", f"model.path={start}", "data.val=null", "grpo.group_size=2")
    run_folder(cfg, trained_checkpoint)
    (start / "prompt.json").write_text((start / "prompt.json").read_text(encoding="utf-8").replace('"zh"', '"en"'),
                                       encoding="utf-8")
    with pytest.raises(ResumeMismatch, match="model.path .*: its content changed"):
        fit(cfg, lambda: None, resume=True)
