"""`predict` never mixes two runs in one output: variants of the resume key and of the output's name.

The predict run, its copies and the refusal helpers are the ones tests/reliability/test_a_resume_never_mixes_two_runs.py
uses; these add the hierarchy that judges each verdict, an output named through a link or another spelling, a second
predict on another spelling while the first runs, and a checkpoint rewritten while its weights load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.reliability.test_a_resume_never_mixes_two_runs import again, fresh, invoke, predicted, refused  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def resumed(result) -> str:
    """A resume that predicted nothing new: both photos already there."""
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "0 predicted" in text and "2 already in" in text, text
    return text


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_refuses_to_resume_with_another_hierarchy_whose_faults_judge_the_verdicts(predicted, tmp_path):
    from bbuvl.data.labels import DEFAULT_HIERARCHY

    run = fresh(predicted, tmp_path)
    before = run["out"].read_bytes()
    other = tmp_path / "hierarchy.json"
    data = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    for attribute in next(iter(data["categories"].values())).get("attributes", {}).values():
        attribute["fault"] = True  # the first category's attributes now fail a photo: its verdicts would change
    other.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    refused(again(run, "--hierarchy", other), "holds predictions of another run", "the hierarchy file's content changed",
            "--overwrite")
    assert run["out"].read_bytes() == before
    resumed(again(run, "--hierarchy", DEFAULT_HIERARCHY))  # the shipped file by name is the default it was judged by


@pytest.mark.parametrize("spelling", ["link to the file", "link to its folder", "relative with ./ and .."])
def test_predict_resumes_its_output_named_another_way(predicted, tmp_path, monkeypatch, spelling):
    run = fresh(predicted, tmp_path)
    before = run["out"].read_bytes()
    name = named(run["out"], tmp_path, monkeypatch, spelling)
    resumed(again(run | {"out": name}))
    assert run["out"].read_bytes() == before
    assert not run["out"].is_symlink() and (not name.is_symlink() or name.resolve() == run["out"])  # the link kept
    assert sorted(p.name for p in run["out"].parent.glob("*.predict.json")) == ["pred.jsonl.predict.json"]


@pytest.mark.parametrize("spelling", ["link to the file", "link to its folder", "relative with ./ and .."])
def test_a_second_predict_on_another_spelling_of_a_busy_output_is_refused(predicted, tmp_path, monkeypatch, spelling):
    run = fresh(predicted, tmp_path)
    before = run["out"].read_bytes()
    # The first predict, as another process holds its output while it writes.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from bbuvl.outputs import OutputLock; OutputLock(Path(sys.argv[1]), 'predict').acquire(); "
                               "print('held', flush=True); time.sleep(60)", str(run["out"])],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "held"
        name = named(run["out"], tmp_path, monkeypatch, spelling)
        refused(again(run | {"out": name}), "another `bbuvl predict`", f"(pid {holder.pid})", "is writing it")
    finally:
        holder.kill()
        holder.wait()
    assert run["out"].read_bytes() == before


def named(out: Path, tmp_path: Path, monkeypatch, spelling: str) -> Path:
    """`out` spelt another way: through a link to it, through a link to its folder, or relative with `./` and `..`."""
    if spelling == "link to the file":
        link = tmp_path / "elsewhere" / "link.jsonl"
        link.parent.mkdir()
        link.symlink_to(out)
        return link
    if spelling == "link to its folder":
        (tmp_path / "folder-link").symlink_to(out.parent, target_is_directory=True)
        return tmp_path / "folder-link" / out.name
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    return Path(".") / ".." / "." / out.name


def test_predict_refuses_a_checkpoint_rewritten_while_its_weights_loaded(predicted, tmp_path):
    from bbuvl.cli.predict import check_unchanged, predict_key, run_config
    from bbuvl.infer.batch import PredictJob, photo_names

    run = fresh(predicted, tmp_path)
    job = PredictJob(photo_names(run["data"] / "val.jsonl"), run["out"], "head", root=run["data"])
    cfg = run_config(run["ckpt"])
    job.key = predict_key(job, run["ckpt"], cfg, {}, None, None, "zh")
    check_unchanged(job, run["ckpt"], cfg)  # nothing changed: no error
    thresholds = run["ckpt"] / "verdict_thresholds.json"
    thresholds.write_text(json.dumps({"review": 0.1, "fail": 0.2}), encoding="utf-8")  # another process writes into it
    with pytest.raises(ValueError, match=r"the checkpoint's content changed \(1 file added: verdict_thresholds.json\) "
                                         r"while it loaded \(another process wrote it meanwhile; re-run\)"):
        check_unchanged(job, run["ckpt"], cfg)
    # A writer still at it is named by the lock it holds on the file (`eval --choose-thresholds`)
    from tests.reliability.test_train2_model_being_written import _hold

    child = _hold(thresholds, "eval")
    try:
        with pytest.raises(ValueError, match=rf"while it loaded \(`bbuvl eval` \(pid {child.pid}\) is writing it; "):
            check_unchanged(job, run["ckpt"], cfg)
    finally:
        child.kill()
        child.wait()


def test_predict_names_the_first_five_failed_photos_then_says_how_many_more(trained_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "good.png")
    for i in range(7):
        (folder / f"broken {i}.jpg").write_bytes(b"")
    out = tmp_path / "pred.jsonl"
    result = invoke(["predict", "-c", trained_checkpoint, "-i", folder, "-o", out, "--mode", "head", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "7 with errors" in text
    assert [f"broken {i}.jpg" in text for i in range(7)] == [True] * 5 + [False] * 2
    assert f"error: ... and 2 more: their lines in {out} say why (\"error\")" in text
    assert sum(json.loads(line)["error"] is not None for line in out.read_text(encoding="utf-8").splitlines()) == 7


def other_photos_of_the_same_names(data: Path, other: Path) -> Path:
    """A copy of the dataset `data` whose photos keep their names and sizes but not their content (another seed's
    synthetic photos are named alike): returns its val.jsonl."""
    shutil.copytree(data, other)
    for photo in (other / "images").iterdir():
        with Image.open(photo) as im:
            flipped = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        flipped.save(photo)
    return other / "val.jsonl"


def evaluated(run: dict[str, Path], gt: Path, tmp_path: Path) -> object:
    return invoke(["eval", "--pred", run["out"], "--gt", gt, "--out", tmp_path / "m.json"])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_refuses_predictions_made_on_other_photos_of_the_same_names_and_sizes(predicted, tmp_path):
    run = fresh(predicted, tmp_path)
    other = other_photos_of_the_same_names(run["data"], tmp_path / "other")
    predicted_from = json.loads(run["out"].with_name(run["out"].name + ".predict.json").read_text(encoding="utf-8"))["input"]
    text = refused(evaluated(run, other, tmp_path), f"{run['out']}:1: photo images/", f"predicted from {predicted_from}",
                   "has other content than ground-truth photo images/", str(other))
    assert not (tmp_path / "m.json").exists()
    assert "bbuvl predict -i" in text
    refused(invoke(["viz", other, tmp_path / "drawn", "--pred", run["out"]]), "has other content than ground-truth photo")
    assert not (tmp_path / "drawn").exists()
    # The photos predicted, here or copied elsewhere (hashed, not trusted by their stat), are scored.
    r = evaluated(run, run["data"] / "val.jsonl", tmp_path)
    assert r.exit_code == 0 and "not the line" not in r.output
    copy = tmp_path / "copy"
    shutil.copytree(run["data"], copy)
    result = evaluated(run, copy / "val.jsonl", tmp_path)
    assert result.exit_code == 0, result.output


def test_eval_compares_the_photos_on_disk_when_the_manifest_records_no_digest_and_scores_a_file_without_one(predicted, tmp_path):
    run = fresh(predicted, tmp_path)
    other = other_photos_of_the_same_names(run["data"], tmp_path / "other")
    manifest = run["out"].with_name(run["out"].name + ".predict.json")
    older = {k: v for k, v in json.loads(manifest.read_text(encoding="utf-8")).items() if k != "key"}  # an older bbu-vl's
    manifest.write_text(json.dumps(older), encoding="utf-8")
    refused(evaluated(run, other, tmp_path), "has other content than ground-truth photo")
    r = evaluated(run, run["data"] / "val.jsonl", tmp_path)
    assert r.exit_code == 0 and "not the line" not in r.output
    # Another tool's file (no manifest) names nothing to compare with: it is scored, as before.
    manifest.unlink()
    shutil.copy(run["out"], other.with_name("pred.jsonl"))
    result = invoke(["eval", "--pred", other.with_name("pred.jsonl"), "--gt", other, "--out", tmp_path / "m2.json"])
    assert result.exit_code == 0, result.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_category_named_twice_resumes_the_run_that_named_it_once(predicted, tmp_path):
    run = fresh(predicted, tmp_path)
    started = again(run, "--zoom-into", "螺丝连接点", "--overwrite")
    assert started.exit_code == 0, started.output
    before = run["out"].read_bytes()
    # Before: "holds predictions of another run (zoom_containers ['螺丝连接点'] (now [... twice]))".
    resumed(again(run, "--zoom-into", "螺丝连接点, 螺丝连接点"))
    assert run["out"].read_bytes() == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_kept_line_eval_would_not_read_is_predicted_again_and_named(predicted, tmp_path):
    """A hand-edited line (a box of strings, a width of text) was kept by the resume as done, and `bbuvl eval` named it
    later: each is predicted again, and named."""
    from bbuvl.eval.predictions import read_predictions

    run = fresh(predicted, tmp_path)
    lines = [json.loads(line) for line in run["out"].read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2
    lines[0]["objects"] = [{"bbox_2d": ["a", "b", "c", "d"], "label": "x", "score": 0.5}]
    lines[1]["width"] = "abc"
    run["out"].write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    r = again(run)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "2 predicted" in text and "0 already in" in text, text
    assert (f"note: {run['out']}:1: objects[0].bbox_2d: expected 4 numbers [x1, y1, x2, y2], got [\"a\", \"b\", \"c\", \"d\"]; "
            "its photo was predicted again") in text, text
    assert (f"note: {run['out']}:2: width: expected the photo's width in pixels (a whole number, or null), got 'abc'; "
            "its photo was predicted again") in text, text
    read = {p.image: p for p in read_predictions(run["out"])}  # eval reads the whole file now
    assert len(read) == 2 and all(type(v) is float for o in read[lines[0]["image"]].objects for v in o["bbox_2d"])
    resumed(again(run))


@pytest.mark.parametrize(("edit", "says"), [
    (lambda text: re.sub(r'"width": \d+', '"width": 1' + "0" * 4400, text, count=1),
     "width: expected the photo's width in pixels (a whole number, or null), got inf"),
    (lambda text: text.replace('"height": ', '"height": 1, "height": ', 1),
     'invalid JSON: key "height" appears twice in one object'),
], ids=["an integer of 4,400 digits", "a key named twice"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_kept_line_eval_reads_as_an_error_is_named_when_predicted_again(predicted, tmp_path, edit, says):
    """A line holding an integer past 4,300 digits was predicted again as if a kill had cut it, and named nowhere; a
    key named twice was kept with its last value, where eval refuses the line."""
    run = fresh(predicted, tmp_path)
    first, second = run["out"].read_text(encoding="utf-8").splitlines()
    run["out"].write_text(edit(first) + "\n" + second + "\n", encoding="utf-8")
    r = again(run)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "1 predicted" in text and "1 already in" in text, text
    assert f"note: {run['out']}:1: " in text and says in text, text


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_names_the_dataset_line_of_each_photo_it_could_not_read(trained_checkpoint, small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset / "images", data / "images")
    records = [json.loads(line) for line in (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    (data / "images" / "cut.jpg").write_bytes(b"\xff\xd8\xff")  # a JPEG cut short after its first bytes
    records.insert(1, {**records[0], "images": ["images/cut.jpg"]})
    gt = data / "val.jsonl"
    gt.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    result = invoke(["predict", "-c", trained_checkpoint, "-i", gt, "-o", out, "--mode", "head", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    # the photo's name alone sent the user searching val.jsonl for the line to fix
    assert f"error: {gt}:2: image images/cut.jpg: " in text, text
    assert "1 with errors" in text


def test_a_resume_appends_to_a_file_of_its_own_never_to_a_hard_linked_snapshot(predicted, tmp_path):
    # `cp -al out snapshot` after a kill: the resumed run appended its lines into the one file both names share, and the
    # snapshot, in another folder, changed with it.
    run = fresh(predicted, tmp_path)
    first = run["out"].read_text(encoding="utf-8").splitlines(keepends=True)[0]
    run["out"].write_text(first, encoding="utf-8")  # killed after one photo
    snapshot = tmp_path / "snapshot.jsonl"
    os.link(run["out"], snapshot)
    r = again(run)
    assert r.exit_code == 0, r.output
    assert "1 predicted" in r.output and "1 already in" in r.output
    assert snapshot.read_text(encoding="utf-8") == first
    assert len(run["out"].read_text(encoding="utf-8").splitlines()) == 2 and run["out"].stat().st_nlink == 1


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_line_other_than_the_one_predict_left_for_its_photo_is_named_by_eval_and_predicted_again(predicted,
                                                                                                  tmp_path):
    # The file replaced by another run's lines of the same photos (`cp other.jsonl out.jsonl`), its manifest left: a
    # resume said "2 already in" and kept them, another run's lines under this run's record, and eval judged them so.
    run = fresh(predicted, tmp_path)
    mine = run["out"].read_text(encoding="utf-8")
    other = [json.loads(line) | {"objects": [], "verdict": None} for line in mine.splitlines()]
    run["out"].write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in other), encoding="utf-8")
    r = evaluated(run, run["data"] / "val.jsonl", tmp_path)  # judged as before, and named
    assert r.exit_code == 0 and "and 1 more line: not the line `bbuvl predict` left for it" in " ".join(r.output.split())
    r = again(run)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "2 predicted" in said and said.count("not the line `bbuvl predict` left for it") == 2, said
    assert run["out"].read_text(encoding="utf-8") == mine
    r = again(run)  # what it left is its own again
    assert r.exit_code == 0 and "0 predicted" in r.output and "2 already in" in r.output, r.output
    r = evaluated(run, run["data"] / "val.jsonl", tmp_path)
    assert r.exit_code == 0 and "not the line" not in r.output
