"""`bbuvl choose-tiles` over validation photos one of which cannot be read: it chooses, and names that photo."""

import json
import math
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.coords import CoordinateContract
from bbuvl.model.loading import load_processor


def _training_scale(checkpoint: Path, width: int, height: int) -> float:
    """Frame pixels per photo pixel of a `width` x `height` photo, resized by the checkpoint's own image processor in
    its frame and rounded as data/scale.py rounds it (a 224x168 photo: Qwen2.5-VL's 28-px grid keeps it whole, 1;
    Qwen3-VL's and Qwen3.5's 32-px one shows it at 224x160, 0.9759)."""
    processor = load_processor(str(checkpoint), frame=CoordinateContract.load(checkpoint)).image_processor
    [(_, rows, cols)] = processor(images=[Image.new("RGB", (width, height))], return_tensors="pt")["image_grid_thw"]
    shown = int(rows) * int(cols) * processor.patch_size ** 2
    return round(math.sqrt(shown / (width * height)), 4)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_validation_photo_that_cannot_be_read_is_named_and_the_others_are_scored(trained_checkpoint, small_dataset,
                                                                                   tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)  # choose-tiles writes its tile_scale.json into the checkpoint
    lines = (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    for r in records:
        r["images"] = [str(small_dataset / r["images"][0])]
    gone = {**records[0], "images": [str(tmp_path / "[red]gone.png")]}
    gt = tmp_path / "val.jsonl"
    gt.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [*records, gone]), encoding="utf-8")
    result = CliRunner().invoke(app, ["choose-tiles", "-c", str(ckpt), "--gt", str(gt), "-o", str(tmp_path / "cands"),
                                      "--factors", "1", "--no-refine", "--device", "cpu"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"warning: {tmp_path / '[red]gone.png'}: image file not found" in text
    # Factor 1 of the training scale, which every training photo (224x168, as these) was shown at.
    scale = _training_scale(ckpt, records[0]["width"], records[0]["height"])
    assert text.count("warning:") == 1 and f"chose scale {scale:g} in head mode (trained at {scale:g})" in text


def test_a_gt_that_is_a_folder_is_named_as_a_folder_and_one_not_there_as_missing(tmp_path):
    (tmp_path / "data").mkdir()
    for gt, what in ((tmp_path / "data", "a folder, not a JSONL file"), (tmp_path / "nope.jsonl", "no such file")):
        result = CliRunner().invoke(app, ["choose-tiles", "-c", str(tmp_path / "ckpt"), "--gt", str(gt), "-o",
                                          str(tmp_path / "out")], env={"COLUMNS": "200"})
        assert result.exit_code == 2
        # A folder was "no such file", though it was there.
        assert " ".join(result.output.split()) == f"error: {gt}: {what} (--gt)"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_gt_none_of_whose_photos_can_be_read_writes_no_scale_into_the_checkpoint(trained_checkpoint, small_dataset,
                                                                                   tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    gt = tmp_path / "copied" / "val.jsonl"  # a --gt copied without its images/ folder
    gt.parent.mkdir()
    shutil.copy(small_dataset / "val.jsonl", gt)
    result = CliRunner().invoke(app, ["choose-tiles", "-c", str(ckpt), "--gt", str(gt), "-o", str(tmp_path / "cands"),
                                      "--factors", "1,2", "--no-refine", "--device", "cpu", "--overwrite"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    first = tmp_path / "copied" / json.loads(gt.read_text(encoding="utf-8").splitlines()[0])["images"][0]
    # Before: "chose scale 1", measured on no photo, and written into the checkpoint (over any chosen before).
    assert (f"error: {gt}: none of its 2 photos could be predicted (the first: {first}: image file not found), so no "
            "scale was measured and none is written") in " ".join(result.output.split())
    assert not (ckpt / "tile_scale.json").exists()
    assert not (tmp_path / "cands").exists()


def test_an_out_that_is_the_folder_of_the_gt_photos_is_refused_before_they_are_set_aside(small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    photos = sorted(p.name for p in (data / "images").iterdir())
    result = CliRunner().invoke(app, ["choose-tiles", "-c", str(tmp_path / "ckpt"), "--gt", str(data / "val.jsonl"), "-o",
                                      str(data / "images"), "--factors", "1", "--no-refine", "--device", "cpu",
                                      "--overwrite"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    # Before, the photos were set aside as the old output and every one was 'image file not found'.
    assert (f"error: {data / 'images'}: holds the input --gt line 1's photo folder ({data / 'images'}); writing into it "
            "could destroy the input") in " ".join(result.output.split())
    assert sorted(p.name for p in (data / "images").iterdir()) == photos


def test_an_out_beside_the_gt_photos_in_a_flat_dataset_is_not_refused_for_them(small_dataset, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for photo in (small_dataset / "images").iterdir():
        shutil.copy(photo, flat / photo.name)
    records = [json.loads(line) for line in (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    for r in records:
        r["images"] = [r["images"][0].removeprefix("images/")]
    (flat / "val.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    result = CliRunner().invoke(app, ["choose-tiles", "-c", str(tmp_path / "ckpt"), "--gt", str(flat / "val.jsonl"), "-o",
                                      str(flat / "cands"), "--factors", "1", "--no-refine", "--device", "cpu"],
                                env={"COLUMNS": "300"})
    # It gets as far as the checkpoint, which is not there: no word about the photos beside --out.
    assert result.exit_code != 0 and "photo folder" not in result.output, result.output
    assert "ckpt" in result.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_gt_without_objects_to_score_writes_no_scale_and_keeps_the_one_there(trained_checkpoint, small_dataset, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)

    def choose(gt, out):
        return CliRunner().invoke(app, ["choose-tiles", "-c", str(ckpt), "--gt", str(gt), "-o", str(out), "--factors",
                                        "1", "--no-refine", "--device", "cpu"], env={"COLUMNS": "300"})

    assert choose(small_dataset / "val.jsonl", tmp_path / "first").exit_code == 0  # a scale chosen on objects
    earlier = (ckpt / "tile_scale.json").read_bytes()
    records = [json.loads(line) for line in (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    gt = tmp_path / "val.jsonl"
    gt.write_text("".join(json.dumps({**r, "images": [str(small_dataset / r["images"][0])], "objects": []},
                                     ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    result = choose(gt, tmp_path / "cands")
    assert result.exit_code == 2, result.output
    # Before: "chose scale ... written to ckpt/tile_scale.json", chosen on no object at all, over the one chosen before.
    assert f"error: {gt}: no candidate scale could be scored" in " ".join(result.output.split())
    assert (ckpt / "tile_scale.json").read_bytes() == earlier
    assert not (tmp_path / "cands").exists()


def test_refine_within_with_no_refine_is_refused_as_an_option_that_does_nothing(tmp_path):
    result = CliRunner().invoke(app, ["choose-tiles", "-c", str(tmp_path / "ckpt"), "--gt", str(tmp_path / "val.jsonl"),
                                      "-o", str(tmp_path / "out"), "--no-refine", "--refine-within", "3"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 2
    # Before: taken without a word, and no category was refined whatever it said.
    assert " ".join(result.output.split()) == ("error: --refine-within applies only with --refine: add --refine or leave "
                                              "it out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_scale_records_the_mode_it_was_chosen_in_and_predict_in_another_mode_says_so(trained_checkpoint,
                                                                                         small_dataset, tmp_path):
    """tile_scale.json did not say which mode its candidates were scored in: `tiles: auto` in another mode used it
    without a word. A file written before the mode was recorded still loads, and says nothing of a mode."""
    from bbuvl.infer.predictor import Predictor

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    gt = tmp_path / "val.jsonl"
    records = [json.loads(line) for line in (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    gt.write_text("".join(json.dumps({**r, "images": [str(small_dataset / r["images"][0])]}, ensure_ascii=False) + "\n"
                          for r in records[:2]), encoding="utf-8")
    result = CliRunner().invoke(app, ["choose-tiles", "-c", str(ckpt), "--gt", str(gt), "-o", str(tmp_path / "cands"),
                                      "--factors", "1", "--no-refine", "--device", "cpu"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    written = json.loads((ckpt / "tile_scale.json").read_text(encoding="utf-8"))
    assert written["mode"] == "head"
    scale = written["scale"]

    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["predict", "-c", str(ckpt), "--input", str(gt), "--out", str(out), "--mode",
                                      "name", "--tiles", "auto", "--device", "cpu"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert (f"note: tile_scale.json chose scale {scale:g} on head mode's predictions: `tiles: auto` in name mode shows "
            "photos at it all the same, unmeasured in this mode; `bbuvl choose-tiles --mode name` measures name mode's "
            "own") in text, result.output
    predictor = Predictor.load(ckpt, device="cpu")
    assert not any("tile_scale.json" in n for n in predictor.threshold_notes("head"))  # the mode it was chosen in
    assert not any("tile_scale.json" in n for n in predictor.threshold_notes("name", "2x2"))  # no auto grid

    del written["mode"]  # as choose-tiles wrote it before
    (ckpt / "tile_scale.json").write_text(json.dumps(written), encoding="utf-8")
    old = Predictor.load(ckpt, device="cpu")
    assert old.tile_scale is not None and old.tile_scale.scale == scale and old.tile_scale.mode is None
    assert not any("tile_scale.json" in n for n in old.threshold_notes("name"))


def test_overwrite_never_deletes_a_folder_of_the_users_files_or_a_file_where_it_writes_its_folder(
        trained_checkpoint, small_dataset, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("field notes", encoding="utf-8")
    (tmp_path / "afile.txt").write_text("important", encoding="utf-8")
    for out, said in ((tmp_path / "mine", "holds notes.txt, which `bbuvl choose-tiles` did not write"),
                      (tmp_path / "afile.txt", "a file `bbuvl choose-tiles` did not write, where it writes a folder")):
        r = CliRunner().invoke(app, ["choose-tiles", "-c", str(ckpt), "--gt", str(small_dataset / "val.jsonl"), "-o",
                                     str(out), "--factors", "1", "--no-refine", "--device", "cpu", "--overwrite"],
                               env={"COLUMNS": "300"})
        # Before: both deleted, the folder left holding pred_scale_1.jsonl alone.
        assert r.exit_code == 2 and said in " ".join(r.output.split()), r.output
    assert (tmp_path / "mine" / "notes.txt").read_text(encoding="utf-8") == "field notes"
    assert (tmp_path / "afile.txt").read_text(encoding="utf-8") == "important"


@pytest.mark.parametrize("recorded, says", [
    (2.0, "is kept, chosen on photos cut at scale 2; choose it again (--choose-thresholds)"),
    ("trained", "is kept: it was chosen at this scale ({scale:g})"),  # factor 1 of the family's training scale
    (None, "the scale it was chosen at is not recorded"),
])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_note_on_the_kept_tiled_thresholds_reads_the_scale_they_were_chosen_at(
        trained_checkpoint, small_dataset, tmp_path, recorded, says):
    from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    # --factors 1 chooses the training scale: 1 for Qwen2.5-VL's 28-px grid, 0.9759 for the 32-px one of Qwen3-VL and
    # Qwen3.5 (`_training_scale`); a pair chosen at it is the one the note keeps.
    first = json.loads((small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()[0])
    scale = _training_scale(ckpt, first["width"], first["height"])
    recorded = scale if recorded == "trained" else recorded
    says = says.format(scale=scale)
    pair = ChosenThresholds(VerdictThresholds(0.3, 0.6), 0.8, 0.8, 0.9, 0.9, 16, 5, [], "wide.jsonl", tiled=True,
                            tile_scale=recorded)
    pair.save(ckpt)
    assert ChosenThresholds.load(ckpt, tiled=True).tile_scale == recorded
    r = CliRunner().invoke(app, ["choose-tiles", "-c", str(ckpt), "--gt", str(small_dataset / "val.jsonl"), "-o",
                                 str(tmp_path / "cands"), "--factors", "1", "--no-refine", "--device", "cpu"],
                           env={"COLUMNS": "300"})
    # Before: compared with the scale this run replaced, so a second run at 0.5 over a pair chosen at 0.75 said
    # "the scale it was chosen under is unchanged (0.5)".
    assert r.exit_code == 0 and says in " ".join(r.output.split()), r.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_overwrite_refuses_a_file_put_among_its_predictions_and_still_replaces_its_own_edited(
        trained_checkpoint, small_dataset, tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "tiles"
    shutil.copytree(trained_checkpoint, ckpt)

    def choose(*typed: str):
        return CliRunner().invoke(app, ["choose-tiles", "-c", str(ckpt), "--gt", str(small_dataset / "val.jsonl"), "-o",
                                        str(out), "--factors", "1", "--no-refine", "--device", "cpu", *typed],
                                  env={"COLUMNS": "300"})
    assert choose().exit_code == 0
    first = json.loads((small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()[0])
    # --factors 1: the family's training scale (`_training_scale`), which names the file
    pred = out / f"pred_scale_{_training_scale(ckpt, first['width'], first['height']):g}.jsonl"
    written = pred.read_text(encoding="utf-8")
    pred.write_text("edited\n", encoding="utf-8")  # its own name: --overwrite gives it up, as before
    (out / "notes.txt").write_text("field notes", encoding="utf-8")
    (tmp_path / "beside.txt").write_text("mine", encoding="utf-8")

    r = choose("--overwrite")
    # Before: exit 0, notes.txt deleted with the folder.
    assert r.exit_code == 2, r.output
    assert "holds notes.txt, which `bbuvl choose-tiles` did not write" in " ".join(r.output.split())
    assert (out / "notes.txt").read_text(encoding="utf-8") == "field notes" and pred.read_text() == "edited\n"

    (out / "notes.txt").unlink()
    r = choose("--overwrite")
    assert r.exit_code == 0, r.output
    assert pred.read_text(encoding="utf-8") == written
    assert (tmp_path / "beside.txt").read_text(encoding="utf-8") == "mine"


def test_a_gt_in_a_folder_named_in_gbk_is_refused_before_the_model_loads(tmp_path):
    """Each candidate scale's predictions name --gt's photos by their full paths, which no predictions file holds for
    a folder named in GBK bytes: the first scale's were predicted, then lost with a codec error naming no file."""
    import os

    from typer.testing import CliRunner

    from bbuvl.cli import app
    from bbuvl.synthetic.dataset import synthesize

    folder = tmp_path / os.fsdecode("数据".encode("gbk"))
    synthesize(folder / "ds", 0, 1, seed=1, size=(160, 120), num_teachers=0)
    result = CliRunner().invoke(app, ["choose-tiles", "-c", str(tmp_path / "no-checkpoint"), "--gt",
                                      str(folder / "ds" / "val.jsonl"), "--out", str(tmp_path / "scales")],
                                env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and said.startswith(f"error: --gt '{tmp_path}/\\xca\\xfd\\xbe\\xdd/ds/val.jsonl' is "
                                                     "not UTF-8 text"), said
    assert "each candidate scale's predictions name --gt's photos by their full paths" in said, said
