"""`bbuvl viz` on real files: it draws only the photos that were predicted, and odd input never loses a picture."""

from __future__ import annotations

import json
import os
import resource
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.infer.output import Manifest, claim_output
from bbuvl.infer.resume_key import ResumeKey, combined, photo_digests

runner = CliRunner()
BOX = [2.0, 2.0, 30.0, 30.0]


def predicted(root: Path, names: list[str], size: tuple[int, int] = (64, 48)) -> Path:
    """Photos `names` in root/photos, and predictions of them with the manifest `bbuvl predict` writes (their
    digests recorded): returns the predictions file."""
    photos = root / "photos"
    photos.mkdir(parents=True)
    for i, name in enumerate(names):
        Image.new("RGB", size, (200, 40 * i, 0)).save(photos / name)
    digests = photo_digests([(name, photos / name) for name in names])
    pred = root / "pred.jsonl"
    claim_output(pred, Manifest(str(photos), "/ckpt", "head", key=ResumeKey(combined(digests), "ckpt", "head", {}, digests)))
    pred.write_text("".join(json.dumps({"image": name, "width": size[0], "height": size[1], "raw": None, "error": None,
                                        "objects": [{"bbox_2d": BOX, "label": "线缆", "score": 0.9}]}) + "\n"
                            for name in names), encoding="utf-8")
    return pred


def said(result) -> str:
    return " ".join(result.output.split())


def held(folder: Path) -> list[Path]:
    """What `folder` holds but the ledger viz records its pictures in (bbuvl/outputs.py), sorted."""
    from bbuvl.outputs import LEDGER

    return sorted(p for p in folder.iterdir() if p.name != LEDGER)


def test_viz_of_predictions_refuses_a_photo_changed_since_it_was_predicted_naming_it(tmp_path):
    # It drew the boxes on whatever photo had the name now, as eval refuses to score them.
    pred = predicted(tmp_path, ["a.png", "b.png"])
    Image.new("RGB", (64, 48), (0, 0, 255)).save(tmp_path / "photos" / "b.png")  # same name and size, other content
    result = runner.invoke(app, ["viz", str(pred), str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert f"error: {pred}:2: photo b.png ({tmp_path / 'photos' / 'b.png'}) has other content than the photo it was " \
           "predicted on" in said(result)
    assert not (tmp_path / "out").exists()


def test_viz_of_predictions_draws_photos_unchanged_in_content_and_those_it_cannot_read(tmp_path):
    pred = predicted(tmp_path, ["a.png", "b.png", "c.png"])
    a = tmp_path / "photos" / "a.png"
    a.write_bytes(a.read_bytes())  # rewritten with the same bytes: a new stat, so hashed again, and found the same
    os.utime(a, (1, 1))
    (tmp_path / "photos" / "c.png").unlink()  # drawn as a placeholder naming why, as before
    result = runner.invoke(app, ["viz", str(pred), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 3 and "c.png: image file not found" in said(result)


def ground_truth(root: Path, names: list[str], label: str = "线缆") -> Path:
    """A dataset JSONL of 64x48 photos `names` (relative to it), one box each."""
    rows = []
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (40 * i, 90, 0)).save(root / name, "PNG")
        rows.append({"images": [name], "width": 64, "height": 48, "objects": [{"bbox_2d": BOX, "desc": label}]})
    gt = root / "val.jsonl"
    gt.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return gt


def test_photos_named_with_250_bytes_or_odd_characters_get_pictures_with_short_plain_names(tmp_path):
    # A picture was named 0000_<the photo's name>.png: past the disk's 255 bytes, and viz drew nothing at all.
    names = ["x" * 251 + ".png", "\U00020000" * 62 + ".png", "my photo #1 %20?.png", "tab\there.png"]
    result = runner.invoke(app, ["viz", str(ground_truth(tmp_path / "ds", names)), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    drawn = [p.name for p in held(tmp_path / "out")]
    assert len(drawn) == 4 and all(len(name.encode("utf-8")) <= 130 for name in drawn)
    assert "0002_my_photo_1_20_.png" in drawn and "0003_tab_here.png" in drawn


@contextmanager
def memory_capped(extra: int = 2 << 30) -> Iterator[None]:
    """This process may map at most `extra` bytes more than now in the block: a picture drawn at the full size a
    record claims fails fast (MemoryError) instead of taking the machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    now = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (now + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_a_record_claiming_60000x60000_pixels_is_drawn_at_the_pictures_size(tmp_path):
    # The photo was first resized (or a placeholder made) at the record's size, 11 GB: a MemoryError's traceback.
    gt = ground_truth(tmp_path / "ds", ["small.png"])
    gt.write_text(gt.read_text(encoding="utf-8").replace('"width": 64, "height": 48', '"width": 60000, "height": 60000'),
                  encoding="utf-8")
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"image": str(tmp_path / "ds" / "small.png"), "width": 60000, "height": 60000,
                                "objects": [{"bbox_2d": [0, 0, 30000, 30000], "label": "线缆", "score": 0.5}]}) + "\n",
                    encoding="utf-8")
    with memory_capped():
        both = runner.invoke(app, ["viz", str(gt), str(tmp_path / "both"), "--pred", str(pred)])
        alone = runner.invoke(app, ["viz", str(pred), str(tmp_path / "alone")])
    assert both.exit_code == 0 and alone.exit_code == 0, both.output + alone.output
    for folder in ("both", "alone"):
        (picture,) = held(tmp_path / folder)
        assert max(Image.open(picture).size) < 2000


def test_viz_run_again_into_its_own_folder_replaces_its_pictures_and_keeps_others_files_given_overwrite(tmp_path):
    # A re-run with fewer photos left the first run's pictures beside its own (docs/outputs.md, "A re-run replaces").
    gt = ground_truth(tmp_path / "ds", [f"p{i}.png" for i in range(4)])
    out = tmp_path / "out"
    assert runner.invoke(app, ["viz", str(gt), str(out)]).exit_code == 0
    result = runner.invoke(app, ["viz", str(gt), str(out), "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in held(out)] == ["0000_p0.png", "0001_p1.png"]
    (out / "notes.txt").write_text("mine\n", encoding="utf-8")  # no longer what viz wrote: --overwrite, and kept
    result = runner.invoke(app, ["viz", str(gt), str(out), "--limit", "1", "--overwrite"])
    assert result.exit_code == 0, result.output
    # The first run's 0001_p1.png stayed beside this run's 0000_p0.png: two runs' pictures in one folder
    assert [p.name for p in held(out)] == ["0000_p0.png", "notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary folder left
    # Recorded as viz's after that run, the folder was replaced whole on the next one, and notes.txt went with it
    result = runner.invoke(app, ["viz", str(gt), str(out), "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in held(out)] == ["0000_p0.png", "0001_p1.png", "0002_p2.png", "notes.txt"]
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine\n"
    result = runner.invoke(app, ["viz", str(gt), str(out), "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in held(out)] == ["0000_p0.png", "notes.txt"]


@pytest.mark.parametrize("others", [[], ["notes.txt"]], ids=["pictures alone", "beside notes"])
def test_a_users_file_named_like_a_picture_in_a_folder_given_with_overwrite_stays_the_users(tmp_path, others):
    # Read as viz's by its name alone, the user's 0007_mine.png, in a folder viz drew into with --overwrite, went with
    # the folder replaced whole on the next plain run, or was dropped as an earlier run's picture not drawn again.
    gt = ground_truth(tmp_path / "ds", [f"p{i}.png" for i in range(3)])
    out = tmp_path / "out"
    out.mkdir()
    for name in ["0007_mine.png", *others]:
        (out / name).write_bytes(b"the user's own")
    for extra in (["--limit", "2", "--overwrite"], ["--limit", "1"]):
        result = runner.invoke(app, ["viz", str(gt), str(out), *extra])
        assert result.exit_code == 0, result.output
    assert [p.name for p in held(out)] == sorted(["0000_p0.png", "0007_mine.png", *others])  # 0001_p1.png: viz's
    assert (out / "0007_mine.png").read_bytes() == b"the user's own"


@pytest.mark.parametrize("name", ["img{}.png", "{:04d}_site.png"])
def test_viz_drawn_again_into_the_folder_of_its_photos_keeps_every_photo(tmp_path, name):
    # `viz DS.jsonl DS/images --overwrite` draws beside the photos; the folder was then recorded as viz's, and the next
    # `viz DS.jsonl DS/images` replaced it whole: the dataset's photos were gone. Photos named like pictures
    # (`0001_site.png`) are no earlier run's pictures to drop either.
    names = [f"images/{name.format(i)}" for i in range(3)]
    gt = ground_truth(tmp_path / "ds", names)
    images = tmp_path / "ds" / "images"
    for extra in (["--overwrite"], [], ["--limit", "2"]):
        result = runner.invoke(app, ["viz", str(gt), str(images), "--limit", "1", *extra])
        assert result.exit_code == 0, result.output
    drawn = [f"{i:04d}_{Path(n).stem}.png" for i, n in enumerate(names[:2])]
    assert [p.name for p in held(images)] == sorted(drawn + [Path(n).name for n in names])


def test_viz_into_a_file_says_it_is_a_file_and_keeps_it(tmp_path):
    # With --overwrite it said only "[Errno 17] File exists"; without, to pass --overwrite, which then said that.
    gt = ground_truth(tmp_path / "ds", ["p0.png"])
    mine = tmp_path / "pictures"
    mine.write_text("mine\n", encoding="utf-8")
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["viz", str(gt), str(mine), *extra])
        assert result.exit_code == 2 and said(result) == (f"error: {mine}: a file, not a folder: viz draws its pictures "
                                                          "into a folder; choose another"), result.output
    assert mine.read_text(encoding="utf-8") == "mine\n"


def test_viz_beside_predictions_refuses_an_empty_file_and_pairs_lines_with_photos_past_the_limit(tmp_path):
    # An empty --pred drew every photo with "prediction (0)" where eval refuses it; and with --limit 1, lines of later
    # photos only were "no prediction line names a photo" of the dataset.
    gt = ground_truth(tmp_path / "ds", ["p0.png", "p1.png"])
    pred = tmp_path / "ds" / "pred.jsonl"
    pred.write_text("\n", encoding="utf-8")
    result = runner.invoke(app, ["viz", str(gt), str(tmp_path / "out"), "--pred", str(pred)])
    assert result.exit_code == 2 and f"{pred}: no photos: the file is empty" in said(result), result.output
    assert not (tmp_path / "out").exists()
    pred.write_text(json.dumps({"image": "p1.png", "width": 64, "height": 48, "objects": []}) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["viz", str(gt), str(tmp_path / "out"), "--pred", str(pred), "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in held(tmp_path / "out")] == ["0000_p0.png"]


def test_viz_draws_boxes_past_the_photo_of_no_size_and_lines_without_objects(tmp_path):
    gt = ground_truth(tmp_path / "ds", ["p0.png", "p1.png"])
    pred = tmp_path / "ds" / "pred.jsonl"
    odd = [[-500, -500, -400, -400], [60, 40, 9000, 9000], [10, 10, 10, 10], [5, 5, 5, 30], [0, 0, 64, 48]]
    pred.write_text(json.dumps({"image": "p0.png", "width": 64, "height": 48, "objects": [
        {"bbox_2d": box, "label": "线缆", "score": 0.5} for box in odd]}) + "\n"
        + json.dumps({"image": "p1.png", "width": 64, "height": 48, "objects": [], "error": "cannot decode"}) + "\n",
        encoding="utf-8")
    for args in ([str(gt), str(tmp_path / "both"), "--pred", str(pred)], [str(pred), str(tmp_path / "alone")]):
        result = runner.invoke(app, ["viz", *args])
        assert result.exit_code == 0 and "drew 2 photo(s)" in said(result), result.output
    assert len(held(tmp_path / "both")) == len(held(tmp_path / "alone")) == 2


def test_a_photo_predict_could_not_answer_is_titled_with_why_not_as_a_photo_where_nothing_was_found():
    # Before: a line with an error (a photo too wide, one not found) was drawn "prediction (0)", a result to the eye
    from bbuvl.eval.viz import prediction_title
    from bbuvl.infer.prediction_lines import PredictionLine

    def line(**extra) -> PredictionLine:
        return PredictionLine(line=1, image="a.png", width=64, height=48, objects=[], **extra)

    assert prediction_title(line(error="a.png: aspect ratio 400.0 exceeds 200")) == (
        "prediction failed: a.png: aspect ratio 400.0 exceeds 200")
    assert prediction_title(line(raw="not json", parse_ok=False)) == "prediction: the answer could not be read"
    assert prediction_title(None) == "prediction: no line for this photo"
    assert prediction_title(line(cut=True)) == "prediction (answer cut by the token budget)"
    assert prediction_title(line()) == "prediction"


def test_iou_without_predictions_to_judge_is_refused(tmp_path):
    pred = predicted(tmp_path, ["a.png"])
    result = runner.invoke(app, ["viz", str(pred), str(tmp_path / "out"), "--iou", "0.3"])
    assert result.exit_code == 2 and "--iou applies only with --pred" in said(result), result.output
    assert not (tmp_path / "out").exists()


FAULT = "螺丝连接点/BBU安装螺丝/连接错误"  # a fault state of the shipped hierarchy (docs/faults.md)


def magenta(picture: Path) -> int:
    """How many pixels of `picture` are the magenta that frames a fault."""
    from bbuvl.eval.draw import MAGENTA

    return sum(n for n, color in Image.open(picture).convert("RGB").getcolors(1 << 20) if color == MAGENTA)


def test_viz_frames_the_faults_the_verdict_counts_as_the_report_does(tmp_path):
    # `bbuvl viz pred.jsonl out` drew every box blue: a fault at 0.9, which fails its photo, looked like a clean part
    names = ["fault.png", "low.png", "clean.png"]
    for name in names:
        Image.new("RGB", (200, 150), (90, 90, 90)).save(tmp_path / name)
    scores = {"fault.png": (FAULT, 0.9), "low.png": (FAULT, 0.1), "clean.png": ("线缆", 0.9)}
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"image": name, "width": 200, "height": 150, "objects": [
        {"bbox_2d": [40, 40, 120, 110], "label": label, "score": score}]}, ensure_ascii=False) + "\n"
        for name, (label, score) in scores.items()), encoding="utf-8")
    result = runner.invoke(app, ["viz", str(pred), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    drawn = {name: magenta(tmp_path / "out" / f"{i:04d}_{Path(name).stem}.png") for i, name in enumerate(names)}
    # framed at the config's review threshold (0.25) as the report frames it; below it a box as any other
    assert drawn["fault.png"] > 500 and drawn["low.png"] == drawn["clean.png"] == 0, drawn
    # the threshold given judges, as `bbuvl eval --verdict-review` does
    result = runner.invoke(app, ["viz", str(pred), str(tmp_path / "low"), "--verdict-review", "0.05"])
    assert result.exit_code == 0, result.output
    assert magenta(tmp_path / "low" / "0001_low.png") > 500
    # beside the ground truth: its faults framed too, and the predicted one
    gt = tmp_path / "val.jsonl"
    gt.write_text(json.dumps({"images": ["fault.png"], "width": 200, "height": 150, "objects": [
        {"bbox_2d": [40, 40, 120, 110], "desc": FAULT}]}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["viz", str(gt), str(tmp_path / "both"), "--pred", str(pred)])
    assert result.exit_code == 0, result.output
    both = Image.open(tmp_path / "both" / "0000_fault.png").convert("RGB")
    half = both.width // 2
    from bbuvl.eval.draw import MAGENTA

    sides = [sum(n for n, c in both.crop(box).getcolors(1 << 20) if c == MAGENTA)
             for box in ((0, 0, half, both.height), (half, 0, both.width, both.height))]
    assert min(sides) > 500, sides


def test_verdict_thresholds_without_predictions_to_judge_are_refused(tmp_path):
    gt = ground_truth(tmp_path, ["a.png"])
    result = runner.invoke(app, ["viz", str(gt), str(tmp_path / "out"), "--verdict-review", "0.3"])
    assert result.exit_code == 2 and "--verdict-review judges predictions" in said(result), result.output
    assert not (tmp_path / "out").exists()


def test_viz_of_predictions_whose_checkpoint_changed_since_draws_them_and_says_no_fault_is_framed(tmp_path):
    # eval refuses to score them (another model's thresholds would judge them); pictures of their boxes were refused too
    from tests.eval.test_choosing_for_the_model import keyed
    from tests.eval.test_judging import files

    gt, pred, ckpt = files.__wrapped__(tmp_path)
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        Image.new("RGB", (100, 100), (90, 90, 90)).save(gt.parent / name)
    keyed(gt, pred, ckpt)
    ckpt.joinpath("model.safetensors").write_bytes(b"weights trained again in the same folder")
    result = runner.invoke(app, ["viz", str(pred), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 4
    assert "note: no predicted fault framed" in said(result) and "model.safetensors changed" in said(result)
    assert magenta(tmp_path / "out" / "0000_a.png") == 0  # its fault at 0.9 is not judged by another model's pair
    # All that judges them given on the command line: framed
    from bbuvl.data.labels import DEFAULT_HIERARCHY

    result = runner.invoke(app, ["viz", str(pred), str(tmp_path / "given"), "--hierarchy", str(DEFAULT_HIERARCHY),
                                 "--verdict-review", "0.4", "--verdict-fail", "0.9"])
    assert result.exit_code == 0 and "no predicted fault framed" not in said(result), result.output
    assert magenta(tmp_path / "given" / "0000_a.png") > 0
