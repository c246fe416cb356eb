"""Prediction files: strict reading with file:line errors, failure flags, and pairing lines with ground-truth photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bbuvl.data.schema import DatasetError, ImageRecord, ObjectAnn
from bbuvl.eval.predictions import PredictionLine, align_predictions, read_ground_truth, read_predictions
from bbuvl.infer.prediction_lines import _checked_object, _well_formed


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((json.dumps(x, ensure_ascii=False) if not isinstance(x, str) else x) + "\n" for x in lines),
                    encoding="utf-8")
    return path


def line(image: str, objects=(), **extra) -> dict:
    return {"image": image, "width": 100, "height": 80, "objects": list(objects), "raw": None, "error": None, **extra}


def record(image: str, width: int = 100, height: int = 80) -> ImageRecord:
    return ImageRecord(images=[image], width=width, height=height, objects=[ObjectAnn(bbox_2d=[10, 10, 50, 40], desc="线缆")])


def test_reads_lines_and_defaults_a_missing_score_to_one(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [line("a.jpg", [{"bbox_2d": [1, 2, 3, 4], "label": "线缆"}]), "", line("b.jpg")])
    lines = read_predictions(path)
    assert [p.image for p in lines] == ["a.jpg", "b.jpg"] and [p.line for p in lines] == [1, 3]
    assert lines[0].objects == [{"bbox_2d": [1.0, 2.0, 3.0, 4.0], "label": "线缆", "score": 1.0}]


@pytest.mark.parametrize(("bad", "message"), [
    ("{not json", "p.jsonl:2: invalid JSON"),
    (json.dumps({"objects": []}), "p.jsonl:2: expected an object with an 'image'"),
    (json.dumps(line("")), "p.jsonl:2: image: '' names no photo"),
    (json.dumps(line("  ")), "p.jsonl:2: image: '  ' names no photo"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3], "label": "x"}])), "p.jsonl:2: objects[0].bbox_2d"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [5, 2, 3, 4], "label": "x"}])), "x2 < x1"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3, 4]}])), "objects[0]: missing 'label'"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3, 4], "label": ""}])), "objects[0].label: empty label ''"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3, 4], "label": " "}])), "objects[0].label: empty label ' '"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3, 4], "label": 3}])), "objects[0].label: expected a string, got 3"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3, 4], "label": "x", "score": "high"}])), "objects[0].score"),
    (json.dumps({"image": "b.jpg", "objects": {"bbox_2d": [1, 2, 3, 4]}}), "p.jsonl:2: objects: expected an array of objects, got an object"),
    (json.dumps({"image": "b.jpg", "objects": "[]"}), "p.jsonl:2: objects: expected an array of objects, got a string"),
    ('{"image": "b.jpg", "objects": [{"bbox_2d": [1, 2, 1' + "0" * 400 + ', 4], "label": "x"}]}', "p.jsonl:2: objects[0].bbox_2d"),
    # A size no photo has was taken for none, and the check pairing a line with its photo by size was skipped
    ('{"image": "b.jpg", "width": 1' + "0" * 5000 + ', "height": 80, "objects": []}', "p.jsonl:2: width: expected the "
     "photo's width in pixels .* got inf"),
    (json.dumps(line("b.jpg") | {"width": "100"}), "p.jsonl:2: width: .* got '100'"),
    (json.dumps(line("b.jpg") | {"height": -80}), "p.jsonl:2: height: .* got -80"),
    (json.dumps(line("b.jpg") | {"width": 99.5}), "p.jsonl:2: width: .* got 99.5"),
    (json.dumps(line("b.jpg") | {"width": True}), "p.jsonl:2: width: .* got true"),
    (json.dumps(line("b.jpg") | {"height": [80]}), "p.jsonl:2: height: .* got an array"),
    ('{"image": "b.jpg", "objects": [{"bbox_2d": [1, 2, 3, 4], "label": "x", "score": 1' + "0" * 400 + '}]}', "objects[0].score"),
    # a score past 1 failed its photo at every verdict threshold, a negative one passed it (both were read)
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3, 4], "label": "x", "score": 5.0}])), "p.jsonl:2: objects[0].score: 5.0 is outside [0, 1]"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3, 4], "label": "x", "score": -0.5}])), "p.jsonl:2: objects[0].score: -0.5 is outside [0, 1]"),
    ('{"image": "b.jpg", "objects": [{"bbox_2d": [1, 2, 3, 4], "label": "x", "score": NaN}]}', "p.jsonl:2: objects[0].score: expected a number, got NaN"),
    # a ground-truth record given as --pred was 'expected an object with an image path'
    (json.dumps({"images": ["a.jpg"], "width": 100, "height": 80, "objects": []}), "p.jsonl:2: a dataset record .*were --pred and --gt swapped"),
])
def test_malformed_lines_are_errors_naming_file_and_line(tmp_path, bad, message):
    path = write_lines(tmp_path / "p.jsonl", [line("a.jpg"), bad])
    with pytest.raises(DatasetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_predictions(path)


def test_a_size_written_as_a_whole_float_is_read_and_zero_or_null_is_a_size_not_known(tmp_path):
    """predict writes 0 x 0 on the line of a photo it could not read; another tool may write 100.0."""
    path = write_lines(tmp_path / "p.jsonl", [line("a.jpg") | {"width": 100.0, "height": 80.0},
                                              line("b.jpg") | {"width": 0, "height": 0, "error": "unreadable"},
                                              line("c.jpg") | {"width": None}, {"image": "d.jpg", "objects": []}])
    assert [(p.width, p.height) for p in read_predictions(path)] == [(100, 80), (None, None), (None, None), (None, None)]


def test_failed_means_error_or_unreadable_answer():
    def make(**kw) -> PredictionLine:
        return PredictionLine(line=1, image="a.jpg", width=None, height=None, objects=[], **kw)

    assert make(error="cannot decode image").failed
    assert make(raw="no idea").failed
    assert make(raw="[]").failed is False
    assert make(raw=None).failed is False  # head mode writes no text
    assert make(raw="[]", parse_ok=False).failed
    assert make(raw="garbage", parse_ok=True).failed is False


def test_pairs_absolute_paths_and_paths_inside_the_dataset(tmp_path):
    gt = tmp_path / "data" / "val.jsonl"
    records = [record("images/a.jpg"), record("images/b.jpg"), record("c.jpg")]
    pred_dir = tmp_path / "runs"
    preds = [
        PredictionLine(1, str(tmp_path / "data" / "images" / "a.jpg"), 100, 80, []),  # absolute
        PredictionLine(2, "images/b.jpg", 100, 80, []),  # the same path inside its own dataset
        PredictionLine(3, "./c.jpg", 100, 80, []),
    ]
    a = align_predictions(records, gt, preds, pred_dir / "pred.jsonl")
    assert [p.line if p else None for p in a.predictions] == [1, 2, 3]
    assert a.unmatched == [] and a.notes() == []


def test_a_name_spelt_decomposed_pairs_with_the_same_name_composed(tmp_path):
    # A copy of the dataset made on macOS names `é` decomposed (NFD); `data check` takes both spellings for one name.
    nfc, nfd = "images/caf\u00e9.jpg", "images/cafe\u0301.jpg"
    root = tmp_path / "s\u00e9ance"
    records = [record(nfc), record("images/b.jpg")]
    preds = [PredictionLine(1, nfd, 100, 80, []),
             PredictionLine(2, str(tmp_path / "se\u0301ance" / "images" / "b.jpg"), 100, 80, [])]
    a = align_predictions(records, root / "val.jsonl", preds, tmp_path / "copy" / "pred.jsonl")
    assert [p.line if p else None for p in a.predictions] == [1, 2]
    assert a.notes() == []


def test_a_photo_of_the_same_file_name_in_another_folder_does_not_pair(tmp_path):
    records = [record("images/a.jpg"), record("images/b.jpg")]
    preds = [PredictionLine(1, "/elsewhere/a.jpg", 100, 80, []), PredictionLine(2, "images/b.jpg", 100, 80, []),
             PredictionLine(3, "other/b.jpg", 100, 80, [])]
    a = align_predictions(records, tmp_path / "val.jsonl", preds)
    assert a.predictions[0] is None and a.predictions[1].line == 2
    assert a.unmatched == [preds[0], preds[2]]
    notes = " ".join(a.notes())
    assert "1 ground-truth photo(s) have no prediction line" in notes and "/elsewhere/a.jpg" in notes


def test_predictions_pairing_with_no_photo_at_all_are_an_error(tmp_path):
    records = [record("images/a.jpg")]
    preds = [PredictionLine(4, "/elsewhere/a.jpg", 100, 80, [])]
    with pytest.raises(DatasetError, match=r"pred.jsonl:4: no prediction line names a photo of .*val.jsonl"):
        align_predictions(records, tmp_path / "val.jsonl", preds, tmp_path / "pred.jsonl")


def test_names_are_read_relative_to_the_predict_input_the_manifest_names(tmp_path):
    photos = tmp_path / "photos"
    (photos / "site").mkdir(parents=True)
    pred = tmp_path / "runs" / "pred.jsonl"
    pred.parent.mkdir()
    pred.with_name("pred.jsonl.predict.json").write_text(json.dumps(
        {"input": str(photos), "checkpoint": "/ckpt", "mode": "head", "tool": "bbuvl predict"}), encoding="utf-8")
    records = [record("photos/site/a.jpg"), record("site/a.jpg")]
    # "site/a.jpg" of the predictions is photos/site/a.jpg: the first record by its file, not the second by its text
    a = align_predictions(records, tmp_path / "val.jsonl", [PredictionLine(1, "site/a.jpg", 100, 80, [])], pred)
    assert a.predictions[0].line == 1 and a.predictions[1] is None


def test_repeated_lines_keep_the_last_as_predict_does_when_it_resumes_the_file(tmp_path):
    records = [record("a.jpg")]
    preds = [PredictionLine(1, "a.jpg", 100, 80, []), PredictionLine(7, "a.jpg", 100, 80, [])]
    a = align_predictions(records, tmp_path / "val.jsonl", preds)
    assert a.predictions[0].line == 7 and [p.line for p in a.repeated] == [1]
    assert "1 prediction line(s) name a photo a later line names again (a.jpg (line 1))" in " ".join(a.notes())


def test_a_repeated_line_made_on_a_photo_of_another_size_is_an_error_too(tmp_path):
    records = [record("a.jpg")]
    preds = [PredictionLine(1, "a.jpg", 100, 80, []), PredictionLine(2, "a.jpg", 200, 160, [])]
    with pytest.raises(DatasetError, match=r"pred.jsonl:2: photo a.jpg was predicted at 200x160"):
        align_predictions(records, tmp_path / "val.jsonl", preds, tmp_path / "pred.jsonl")


def test_a_prediction_made_on_a_photo_of_another_size_is_an_error_naming_both(tmp_path):
    records = [record("images/a.jpg", width=100, height=80)]
    preds = [PredictionLine(3, "images/a.jpg", 200, 160, [{"bbox_2d": [20.0, 20.0, 100.0, 80.0], "label": "线缆", "score": 0.5}])]
    with pytest.raises(DatasetError, match=r"pred.jsonl:3: photo images/a.jpg was predicted at 200x160, but "
                                           r"ground-truth photo images/a.jpg \(.*val.jsonl, record 1\) is 100x80"):
        align_predictions(records, tmp_path / "val.jsonl", preds, tmp_path / "pred.jsonl")


@pytest.mark.parametrize("obj", [
    {"bbox_2d": [1, 2, 3, 4], "label": "线缆", "score": 0.5},
    {"bbox_2d": [1.5, 2, 3, 4.25], "label": "线缆"},  # no score: 1.0
    {"bbox_2d": [1, 2, 3, 4], "desc": "线缆", "score": 1},
    {"bbox_2d": [3, 2, 1, 4], "label": "线缆"},
    {"bbox_2d": [1, 2, 3, float("nan")], "label": "线缆"},
    {"bbox_2d": [1, 2, 3, 4], "label": "  "},
    {"bbox_2d": [1, 2, 3, True], "label": "线缆"},
    {"bbox_2d": [1, 2, 3, 4], "label": "线缆", "score": "high"},
    {"bbox_2d": [1, 2, 3], "label": "线缆"},
    ["not", "an", "object"],
    {"bbox_2d": [1, 2, 3, 4], "label": "线缆", "score": 1.5},
])
def test_the_quick_check_of_an_object_reads_it_as_the_full_check_or_leaves_it_to_it(obj):
    quick = _well_formed(obj)
    try:
        full = _checked_object(obj, Path("p.jsonl"), 1, 0)
    except DatasetError:
        assert quick is None
    else:
        assert quick is None or (quick == full and all(type(v) is float for v in quick["bbox_2d"]))


def test_a_ground_truth_record_whose_size_is_not_its_photos_is_named_as_the_fault_not_the_predictions(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 80), (10, 20, 30)).save(tmp_path / "images" / "a.jpg")
    records = [record("images/a.jpg", width=200, height=160)]  # the record's size, not its photo's
    preds = [PredictionLine(3, "images/a.jpg", 100, 80, [])]
    # Before: "not the same photo; predict on the ground truth's own photos", which gives the same line again.
    with pytest.raises(DatasetError, match=r"pred.jsonl:3: ground-truth record 1 of .*val.jsonl: width/height 200x160 do "
                                           r"not match image images/a.jpg, which is 100x80, the size images/a.jpg was "
                                           r"predicted at: the record's width/height are wrong"):
        align_predictions(records, tmp_path / "val.jsonl", preds, tmp_path / "pred.jsonl")


def test_the_predict_command_named_for_photos_changed_since_splits_back_into_its_paths_with_spaces():
    import shlex

    from bbuvl.eval.predictions import predict_again
    from bbuvl.infer.output import Manifest

    said = predict_again(Manifest("/data/site A/val.jsonl", "/runs/run 1/final", "head"), Path("/out dir/pred.jsonl"))
    command = said[said.index("(bbuvl predict ") + len("(bbuvl predict "):-1]
    assert shlex.split(command) == ["-c", "/runs/run 1/final", "-i", "/data/site A/val.jsonl", "-o", "/out dir/pred.jsonl",
                                    "--mode", "head", "--overwrite"]


NFC, NFD = "images/caf\u00e9.jpg", "images/cafe\u0301.jpg"  # two files on Linux: `é` composed, and e + U+0301


def two_cafes(root: Path) -> Path:
    """A ground truth of two photos named café.jpg, composed and decomposed, each of its own colour and box."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    for name, colour in ((NFC, (200, 30, 30)), (NFD, (30, 30, 200))):
        Image.new("RGB", (100, 80), colour).save(root / name)
    gt = root / "val.jsonl"
    gt.write_text("".join(json.dumps({"images": [name], "width": 100, "height": 80,
                                      "objects": [{"bbox_2d": box, "desc": "线缆"}]}, ensure_ascii=False) + "\n"
                          for name, box in ((NFC, [10, 10, 50, 40]), (NFD, [40, 30, 90, 70]))), encoding="utf-8")
    return gt


def test_two_photos_named_alike_but_for_composition_pair_each_with_its_own_line(tmp_path):
    gt = two_cafes(tmp_path)
    records = [record(NFC), record(NFD)]
    preds = [PredictionLine(1, NFD, 100, 80, []), PredictionLine(2, NFC, 100, 80, []),
             PredictionLine(3, "./" + NFD, 100, 80, [])]
    a = align_predictions(records, gt, preds)
    # Before: both records one photo (a repeat), and every line paired with the first.
    assert [p.line if p else None for p in a.predictions] == [2, 3]  # and no repeat refused
    assert [p.line for p in a.repeated] == [1] and a.unmatched == []


def test_one_file_named_composed_and_decomposed_is_one_photo_named_twice(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / NFD).write_bytes(b"")  # only the decomposed name on disk: the composed one finds it (macOS wrote it)
    records = [record(NFC), record(NFD)]
    with pytest.raises(DatasetError, match=f"image {NFD} \\(record 2\\): the same photo as record 1 \\(named {NFC} there\\)"):
        align_predictions(records, tmp_path / "val.jsonl", [PredictionLine(1, NFD, 100, 80, [])])
    gt = write_lines(tmp_path / "val.jsonl", [{"images": [name], "width": 100, "height": 80, "objects": []}
                                              for name in (NFC, NFD)])
    with pytest.raises(DatasetError, match=f"val.jsonl:2: image {NFD}: the same photo as line 1"):
        read_ground_truth(gt)
    # A name no record spells exactly pairs in NFC, unless that spelling is shared by several photos' names.
    lone = align_predictions([record(NFC)], tmp_path / "val.jsonl", [PredictionLine(2, NFD, 100, 80, [])])
    assert lone.predictions[0].line == 2


def test_eval_scores_two_photos_named_alike_but_for_composition_each_on_its_own_line(tmp_path):
    from typer.testing import CliRunner

    from bbuvl.cli import app
    from bbuvl.infer.output import Manifest, claim_output
    from bbuvl.infer.resume_key import ResumeKey, combined, photo_digests

    gt = two_cafes(tmp_path / "d")
    digests = photo_digests([(name, gt.parent / name) for name in (NFC, NFD)])
    pred = tmp_path / "pred.jsonl"
    claim_output(pred, Manifest(str(gt), "/ckpt", "head", key=ResumeKey(combined(digests), "ckpt", "head", {}, digests)))
    write_lines(pred, [line(name, [{"bbox_2d": box, "label": "线缆", "score": 0.9}])
                       for name, box in ((NFC, [10, 10, 50, 40]), (NFD, [40, 30, 90, 70]))])
    result = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "m.json")])
    # Before: exit 2, "these predictions were made on other photos ... predict on the ground truth's own photos".
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert metrics["AP50"] == 1.0 and metrics["errors"]["matched"] == 2


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0)])
def test_eval_refuses_a_ground_truth_naming_one_photo_twice_in_either_order(tmp_path, order):
    from PIL import Image
    from typer.testing import CliRunner

    from bbuvl.cli import app

    (tmp_path / "images").mkdir()
    for name, colour in (("a.png", (200, 30, 30)), ("b.png", (30, 30, 200))):
        Image.new("RGB", (100, 80), colour).save(tmp_path / "images" / name)
    rows = [{"images": [image], "width": 100, "height": 80, "objects": [{"bbox_2d": box, "desc": "线缆"}]}
            for image, box in (("images/a.png", [10, 10, 50, 40]), ("images/b.png", [10, 10, 50, 40]),
                               ("./images/a.png", [60, 40, 90, 70]))]
    # a blank line: the error names the file's lines, not the records' numbers
    gt = write_lines(tmp_path / "val.jsonl", [json.dumps(rows[order[0]]), "", *(json.dumps(rows[i]) for i in order[1:])])
    pred = write_lines(tmp_path / "pred.jsonl", [line(str(tmp_path / "images" / n), [{"bbox_2d": [10, 10, 50, 40],
                                                                                     "label": "线缆", "score": 0.9}])
                                                 for n in ("a.png", "b.png")])
    out = tmp_path / "m.json"
    r = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out)])
    # Before: exit 0, AP50 0.663 (2 matched, 1 missed) in one order and 0.168 (1 matched, 2 missed) in the other
    assert r.exit_code == 2 and not out.exists(), r.output
    first, repeat = (rows[order[0]]["images"][0], rows[order[2]]["images"][0])
    said = " ".join(r.output.split())
    assert f"val.jsonl:4: image {repeat}: the same photo as line 1 (named {first} there)" in said, said
