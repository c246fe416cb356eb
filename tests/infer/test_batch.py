"""Batch prediction over a folder: a photo that cannot be read is its own error line, named on the console; another
batch size finds the same boxes, up to the last digit written."""

import json
import os
import shutil
import stat
from pathlib import Path

from PIL import Image
import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from tests.moved_photos import copied_without_photos


def test_predict_names_each_photo_it_could_not_read_and_predicts_the_others(trained_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    for sub in ("a", "b"):  # one name in two folders: two photos, two lines
        (folder / sub).mkdir(parents=True)
        Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / sub / "same photo.png")
    (folder / "[red]empty 照片.jpg").write_bytes(b"")
    (folder / "cut.png").write_bytes((folder / "a" / "same photo.png").read_bytes()[:60])
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out),
                                      "--mode", "head", "--device", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = {line["image"]: line for line in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert sorted(lines) == ["[red]empty 照片.jpg", "a/same photo.png", "b/same photo.png", "cut.png"]
    assert [name for name, line in lines.items() if line["error"]] == ["[red]empty 照片.jpg", "cut.png"]
    text = " ".join(result.output.split())
    assert "2 with errors" in text
    # Named as the output names them, the markup in a name printed as typed, not read as a colour.
    assert "error: [red]empty 照片.jpg: not an image" in text and "error: cut.png: " in text


def test_predict_from_a_checkpoint_folder_that_is_not_there_names_the_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    for checkpoint, what in ((tmp_path / "nope", "no such"), (tmp_path / "file", "a file, not a")):
        (tmp_path / "file").write_text("x", encoding="utf-8")
        result = CliRunner().invoke(app, ["predict", "-c", str(checkpoint), "-i", str(tmp_path / "photos"), "-o",
                                          str(tmp_path / "pred.jsonl")], env={"COLUMNS": "200"})
        assert result.exit_code == 2
        assert " ".join(result.output.split()) == f"error: {checkpoint}: {what} checkpoint folder (--checkpoint)"


def test_predict_refuses_a_fifo_as_its_output_and_never_deletes_it(trained_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "a.png")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # size 0, like /dev/null: read as an empty output, its first write hung and --overwrite deleted it
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(fifo),
                                          "--mode", "head", "--device", "cpu", *extra], env={"COLUMNS": "200"})
        assert result.exit_code == 2, result.output
        assert " ".join(result.output.split()) == (f"error: {fifo}: is a FIFO (named pipe), not a file predict can write "
                                                   "and resume; --out takes a regular file's name")
        assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "pipe"]  # no manifest, no lock beside it


def test_a_photo_no_model_frame_holds_is_named_with_why_in_its_line_and_on_the_console(trained_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "a.png")
    Image.new("RGB", (10000, 20), (90, 90, 200)).save(folder / "strip.png")
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out),
                                      "--mode", "head", "--device", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = {line["image"]: line for line in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    why = "aspect ratio 500.0 exceeds 200: no model frame holds it; crop it first"
    # The line named no photo ("aspect ratio 500.0 exceeds 200"), unlike every other photo's error line.
    assert lines["strip.png"]["error"] == f"{folder / 'strip.png'}: {why}" and lines["a.png"]["error"] is None
    assert f"error: strip.png: {why}" in " ".join(result.output.split())


def test_a_dataset_naming_one_photo_on_two_lines_is_refused_naming_both_lines(trained_checkpoint, tmp_path):
    Image.new("RGB", (224, 168), (200, 30, 30)).save(tmp_path / "a.png")
    record = json.dumps({"images": ["a.png"], "width": 224, "height": 168, "objects": []})
    dataset = tmp_path / "val.jsonl"
    dataset.write_text(record + "\n" + record.replace('"a.png"', '"./a.png"') + "\n", encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    # Before: two lines named a.png and ./a.png for one photo, or, written alike, two lines of one name that a re-run
    # silently cut to one ("1 already in pred.jsonl").
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(dataset), "-o", str(out),
                                      "--mode", "head", "--device", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()) == (f"error: {dataset}:2: image ./a.png: the same photo as line 1; keep one "
                                               "line per photo (bbuvl data check lists every repeat)")
    assert not out.exists()


def test_a_dataset_none_of_whose_photos_is_there_is_refused_at_its_first_line_before_the_model_loads(
        trained_checkpoint, small_dataset, tmp_path):
    dataset, first = copied_without_photos(small_dataset / "val.jsonl", tmp_path / "copied")
    out = tmp_path / "pred.jsonl"
    # Before: the model loaded, every line of pred.jsonl said "image file not found", and predict exited 0.
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(dataset), "-o", str(out),
                                      "--mode", "head", "--device", "cpu"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()) == (
        f"error: {dataset}:1: image {first}: image file not found, nor the other photo it lists (photo paths are read "
        f"relative to {dataset.parent}): give the dataset where its photos are, or its images folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copied"]
    # One photo there is enough: the others are predicted with an error line each, as before.
    (dataset.parent / first).parent.mkdir()
    shutil.copy(small_dataset / first, dataset.parent / first)
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(dataset), "-o", str(out),
                                      "--mode", "head", "--device", "cpu"], env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "1 with errors" in " ".join(result.output.split()), result.output


def test_predict_reads_a_linked_folder_names_a_dangling_link_and_never_enters_a_loop(trained_checkpoint, tmp_path):
    elsewhere, folder = tmp_path / "nas" / "site3", tmp_path / "photos"
    elsewhere.mkdir(parents=True)
    folder.mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "a.png")
    Image.new("RGB", (224, 168), (30, 200, 30)).save(elsewhere / "b.png")
    (folder / "site3").symlink_to(elsewhere, target_is_directory=True)  # skipped without a word before
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")  # skipped without a word before
    for name, target in (("loop", "."), ("up", ".."), ("root", "/")):  # each would walk forever, or all of the disk
        (folder / name).symlink_to(target, target_is_directory=True)
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out),
                                      "--mode", "head", "--device", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = {line["image"]: line for line in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert sorted(lines) == ["a.png", "gone.png", "site3/b.png"]
    assert lines["site3/b.png"]["error"] is None and lines["gone.png"]["error"] == f"{folder / 'gone.png'}: image file not found"
    assert "error: gone.png: image file not found" in " ".join(result.output.split())


def test_a_newline_in_a_photos_name_is_spelled_and_prints_no_line_of_its_own(trained_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "a.png")
    (folder / "x\ndone: 9 predicted, 0 with errors\n.jpg").write_bytes(b"not a photo")
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o",
                                      str(tmp_path / "pred.jsonl"), "--mode", "head", "--device", "cpu"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    said = result.output.splitlines()
    assert not any(line.startswith("done: 9") for line in said)  # the name printed a summary line of its own before
    assert r"error: x\ndone: 9 predicted, 0 with errors\n.jpg: not an image" in result.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_tile_option_without_tiles_is_refused_before_the_model_loads(trained_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "a.png")
    out = tmp_path / "pred.jsonl"
    # The checkpoint predicts without tiles (inference.tiles: off): each of these changed nothing, without a word.
    for extra, said in ((["--tile-stride", "0.5"], "--tile-stride applies only with --tiles: add --tiles or leave it out"),
                        (["--tile-refine", "线缆"], "--tile-refine applies only with --tiles: add --tiles or leave it out"),
                        # the flag typed, not its pair's first spelling ("--tile-whole applies only ...")
                        (["--tiles-only"], "--tiles-only applies only with --tiles: add --tiles or leave it out"),
                        (["--tile-whole"], "--tile-whole applies only with --tiles: add --tiles or leave it out"),
                        (["--tile-zoom", "2"], "--tile-zoom applies only with --tiles or --zoom-into: add --tiles or "
                                               "--zoom-into or leave it out")):
        result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out),
                                          "--mode", "head", "--device", "cpu", *extra], env={"COLUMNS": "200"})
        assert result.exit_code == 2, result.output
        assert " ".join(result.output.split()) == f"error: {said}"
        assert not out.exists()
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out),
                                      "--mode", "head", "--device", "cpu", "--tile-zoom", "2", "--zoom-into", "线缆"])
    assert result.exit_code == 0, result.output


def test_an_empty_out_is_named_as_the_folder_it_stands_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    result = CliRunner().invoke(app, ["predict", "-c", str(tmp_path / "ckpt"), "-i", "photos", "-o", ""],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2
    # It was "error: PosixPath('.') has an empty name".
    assert " ".join(result.output.split()) == "error: .: is a folder; --out takes a file name such as predictions.jsonl"


def test_a_review_threshold_above_the_fail_threshold_is_one_line_naming_both(trained_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "a.png")
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o",
                                      str(tmp_path / "pred.jsonl"), "--mode", "head", "--verdict-review", "0.9",
                                      "--verdict-fail", "0.1"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    # It was "prediction option '': Value error, ... got {'mode': 'generate', 'batch_size': 2, ...}" (every option).
    assert " ".join(result.output.split()) == ("error: prediction options: verdict_review (0.9) must not exceed "
                                               "verdict_fail (0.1)")


def test_a_zoom_into_or_tile_refine_of_commas_alone_is_refused_and_none_turns_them_off(trained_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "a.png")
    out = tmp_path / "pred.jsonl"
    base = ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out), "--mode", "head", "--device", "cpu"]
    for option in ("--zoom-into", "--tile-refine"):  # each turned zoom or refinement off, as none does, without a word
        result = CliRunner().invoke(app, [*base, "--tiles", "2x2", option, " , ,"], env={"COLUMNS": "200"})
        assert result.exit_code == 2
        assert " ".join(result.output.split()) == (f"error: {option}: no category in ' , ,'; give categories separated "
                                                   "by commas (e.g. bbu基带处理单元), or none")
        assert not out.exists()
    result = CliRunner().invoke(app, [*base, "--zoom-into", "none"])
    assert result.exit_code == 0, result.output


def test_a_jsonl_names_photos_as_data_check_and_training_find_them(tmp_path):
    """Before: predict joined the folder and the name, so a name typed in NFC for a file stored in NFD (a macOS copy)
    and a name written on Windows (`images\\\\v1.jpg`) were "image file not found" on every line, where `data check`
    said ok and training read them; eval then counted them as unparseable answers."""
    import unicodedata
    from pathlib import Path

    from bbuvl.infer.batch import PredictJob

    (tmp_path / "images").mkdir()
    (tmp_path / unicodedata.normalize("NFD", "café.jpg")).write_bytes(b"x")
    (tmp_path / "images" / "v1.jpg").write_bytes(b"x")
    job = PredictJob(inputs=["café.jpg", "images\\v1.jpg"], out=tmp_path / "p.jsonl", root=tmp_path)
    assert all(Path(job.path_of(name)).is_file() for name in job.inputs)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_in_which_every_photo_failed_exits_non_zero_after_writing_their_lines(trained_checkpoint, tmp_path):
    # Before: "done: 1 predicted ..., 1 with errors" and exit 0, which a batch job reads as a run that worked
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (4000, 10)).save(folder / "wide.png")  # no model frame holds it
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out),
                                      "--mode", "head", "--device", "cpu"], env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    assert "every one of the 1 photos this run predicted failed before the model answered" in " ".join(result.output.split())
    assert json.loads(out.read_text(encoding="utf-8"))["error"]
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "a.png")  # one that works: the run worked
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out),
                                      "--mode", "head", "--device", "cpu", "--overwrite"])
    assert result.exit_code == 0, result.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_warns_of_a_checkpoint_file_changed_since_training_saved_it(trained_checkpoint, tmp_path):
    # Before: a checkpoint whose weights changed since training saved them (a copy cut short and redone by hand, a
    # disk's damage) answered without a word; only `doctor model` compared them with content_digest.json
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "a.png")
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    args = ["predict", "-c", str(ckpt), "-i", str(folder), "--mode", "head", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "p1.jsonl")], env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "changed since training saved" not in result.output, result.output
    weights = next(p for p in ckpt.iterdir() if p.suffix == ".safetensors")
    data = bytearray(weights.read_bytes())
    data[-3] ^= 1  # one bit of a weight
    weights.write_bytes(bytes(data))
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "p2.jsonl")], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert f"{weights.name} changed since training saved the checkpoint" in " ".join(result.output.split())


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_another_batch_size_finds_the_same_boxes_up_to_the_last_digit_written(trained_checkpoint, small_dataset, tmp_path):
    # docs/resume.md: float32 sums over another padding may write a corner 0.1 px or a score 1e-5 apart, never more
    folder = tmp_path / "photos"
    folder.mkdir()
    sizes = [(224, 168), (168, 224), (300, 200), (200, 150), (256, 192)]
    for k, (photo, size) in enumerate(zip(sorted((small_dataset / "images").glob("train_*")), sizes)):
        Image.open(photo).convert("RGB").resize(size).save(folder / f"{k}.png")
    lines = {}
    for batch in ("1", "4"):
        out = tmp_path / f"b{batch}.jsonl"
        result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out),
                                          "--mode", "head", "--tiles", "off", "--batch-size", batch, "--device", "cpu"])
        assert result.exit_code == 0, result.output
        lines[batch] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for one, four in zip(lines["1"], lines["4"], strict=True):
        assert one["image"] == four["image"] and one["verdict"]["verdict"] == four["verdict"]["verdict"]
        assert abs(one["verdict"]["score"] - four["verdict"]["score"]) <= 1.5e-5
        assert [o["label"] for o in one["objects"]] == [o["label"] for o in four["objects"]]
        for a, b in zip(one["objects"], four["objects"]):
            assert max(abs(x - y) for x, y in zip(a["bbox_2d"], b["bbox_2d"])) <= 0.1 + 1e-9
            assert abs(a["score"] - b["score"]) <= 1.5e-5


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_job_given_its_paths_as_strings_runs_as_one_given_paths(trained_checkpoint, small_dataset, tmp_path):
    """A script's PredictJob(names, "out.jsonl", ...) failed far on: "'str' object has no attribute 'parent'"."""
    from bbuvl.infer.batch import PredictJob, photo_names, run_predictions
    from bbuvl.infer.output import read_manifest
    from bbuvl.infer.predictor import Predictor

    source = small_dataset / "val.jsonl"
    predictor = Predictor.load(trained_checkpoint, device="cpu")
    lines = {}
    for spelt, make in (("str", str), ("path", Path)):
        out = tmp_path / spelt / "pred.jsonl"
        job = PredictJob(photo_names(source), make(out), "head", 2, source=make(source),
                         checkpoint=make(trained_checkpoint), root=make(small_dataset))
        done = run_predictions(job, lambda paths: predictor.predict_lines(paths, mode="head"))
        assert done["predicted"] == len(job.inputs) == 2 and done["errors"] == 0
        assert read_manifest(out).input == str(source)
        lines[spelt] = [json.loads(line)["image"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines["str"] == lines["path"] == photo_names(source)
