"""Class 8: misuse that used to exit 0, say nothing or crash is an error naming what is wrong.

A zoom container the checkpoint cannot find, validation shown in training, an import with no usable photo, a
record with two photos, a label level deeper than the labels, an API key file an editor decorated, and JSON
nested deeper than any reader follows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app


def invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def refused(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    text = " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


# --- --zoom-into ---------------------------------------------------------------------------------------------


def test_zoom_into_a_category_the_checkpoint_does_not_know_is_refused_before_loading(trained_checkpoint, small_dataset,
                                                                                    tmp_path):
    r = invoke(["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "-o", tmp_path / "p.jsonl",
                "--mode", "head", "--device", "cpu", "--zoom-into", "nosuchpart"])
    refused(r, "'nosuchpart' is no category of this checkpoint's labels", "its categories:")
    assert not (tmp_path / "p.jsonl").exists()


def test_serve_refuses_a_zoom_container_the_checkpoint_does_not_know_before_loading(trained_checkpoint):
    r = CliRunner().invoke(app, ["serve", "-c", str(trained_checkpoint), "--zoom-into", "nosuchpart", "--device", "cpu"],
                           env={"COLUMNS": "400", "BBUVL_API_KEYS": "k" * 32})
    refused(r, "'nosuchpart' is no category of this checkpoint's labels")


def test_zoom_into_a_full_label_points_at_its_category():
    from bbuvl.infer.tiles import check_containers

    labels = ["bbu/screw/ok", "bbu/screw/loose", "cabinet"]
    check_containers(["bbu", " cabinet "], labels)
    with pytest.raises(ValueError, match=r"--zoom-into.*'bbu/screw/ok' \(did you mean 'bbu'\? a category is the first"):
        check_containers(["bbu/screw/ok"], labels)
    with pytest.raises(ValueError, match=r"^--tile-refine / inference.tile_refine: 'bbu/screw/ok' \(did you mean 'bbu'"):
        check_containers(["bbu/screw/ok"], labels, "--tile-refine / inference.tile_refine")
    with pytest.raises(ValueError, match=r"'cabinett' \(did you mean 'cabinet'\?\)"):
        check_containers(["cabinett"], labels)


# --- validation held out of training ------------------------------------------------------------------------


def held_out_error(run_config, *overrides: str) -> str:
    from bbuvl.train.held_out import HeldOutError, check_held_out

    with pytest.raises(HeldOutError) as e:
        check_held_out(run_config(*overrides))
    return str(e.value)


def test_teachers_that_are_the_validation_file_are_refused_however_spelt(run_config, small_dataset, tmp_path):
    val = small_dataset / "val.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(val)
    copy = tmp_path / "copy.jsonl"
    shutil.copy(val, copy)
    assert "are the same file" in held_out_error(run_config, f"data.teachers={val}")
    assert "are the same file" in held_out_error(run_config, f"data.teachers={small_dataset}/images/../val.jsonl")
    assert "are the same file" in held_out_error(run_config, f"data.teachers={link}")
    assert "hold the same bytes" in held_out_error(run_config, f"data.teachers={copy}")
    assert "as teacher examples" in held_out_error(run_config, f"data.teachers={val}")


def test_training_on_the_validation_file_is_refused(run_config, small_dataset):
    text = held_out_error(run_config, f"data.train={small_dataset / 'val.jsonl'}")
    assert text.startswith("data.train") and "are the same file" in text


def test_a_teacher_pool_holding_a_validation_photo_is_refused_naming_its_line(run_config, small_dataset, tmp_path):
    mixed = tmp_path / "teachers.jsonl"
    (tmp_path / "images").symlink_to(small_dataset / "images")  # the same photos, through a link
    teachers = (small_dataset / "teachers.jsonl").read_text(encoding="utf-8").splitlines()
    val = (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()
    mixed.write_text("\n".join(teachers[:1] + val[1:2]) + "\n", encoding="utf-8")
    text = held_out_error(run_config, f"data.teachers={mixed}")
    assert f"{mixed}:2: teacher photo" in text and "is also a photo of data.val" in text


def test_teachers_never_shown_in_training_are_not_checked(run_config, small_dataset):
    from bbuvl.train.held_out import check_held_out

    check_held_out(run_config(f"data.teachers={small_dataset / 'val.jsonl'}", "data.teacher_ratio=0"))
    check_held_out(run_config("data.val=null"))


def test_train_refuses_teachers_equal_to_val_before_writing_anything(run_config, small_dataset):
    from bbuvl.train.held_out import HeldOutError
    from bbuvl.train.trainer import train

    cfg = run_config(f"data.teachers={small_dataset / 'val.jsonl'}")
    with pytest.raises(HeldOutError):
        train(cfg, progress=False)
    assert not Path(cfg.training.output_dir).exists()


# --- import-coco, two photos, --level ------------------------------------------------------------------------


def coco(path: Path, names: list[str]) -> Path:
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)],
        "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [1, 1, 10, 10]}],
        "categories": [{"id": 1, "name": "bbu"}]}), encoding="utf-8")
    return path


def test_import_coco_with_every_photo_missing_is_an_error_and_writes_no_dataset(tmp_path):
    (tmp_path / "photos").mkdir()
    r = invoke(["data", "import-coco", coco(tmp_path / "c.json", ["a.jpg", "b.jpg"]), tmp_path / "photos", tmp_path / "out"])
    refused(r, "none of its 2 photos could be used", "a.jpg", "Nothing was written")
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_import_coco_with_every_photo_undecodable_is_an_error(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_text("not a photo", encoding="utf-8")
    refused(invoke(["data", "import-coco", coco(tmp_path / "c.json", ["a.jpg"]), photos, tmp_path / "out"]),
            "none of its 1 photos could be used")


def test_import_coco_keeps_the_photos_there_are(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), (200, 20, 20)).save(photos / "a.png")
    r = invoke(["data", "import-coco", coco(tmp_path / "c.json", ["a.png", "gone.png"]), photos, tmp_path / "out",
                "--val-ratio", "0", "--teachers", "0"])
    assert r.exit_code == 0 and "1 entries skipped" in r.output, r.output


def test_a_record_with_two_photos_is_an_error_naming_file_and_line(small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    records = [json.loads(line) for line in (data / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    records[1]["images"] = records[0]["images"] + records[1]["images"]
    (data / "val.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    r = invoke(["data", "check", data])
    assert r.exit_code != 0, r.output
    text = " ".join(r.output.split())
    assert "val.jsonl:2" in text and "a record holds one photo, this one lists 2" in text, text


def test_eval_level_deeper_than_the_labels_is_an_error(small_dataset, tmp_path):
    from bbuvl.data.schema import read_records

    gt = small_dataset / "val.jsonl"
    pred = tmp_path / "p.jsonl"
    pred.write_text("".join(json.dumps({"image": r.image, "width": r.width, "height": r.height,
                                        "objects": [o.model_dump() for o in r.objects]}, ensure_ascii=False) + "\n"
                            for r in read_records(gt)), encoding="utf-8")
    refused(invoke(["eval", "--pred", pred, "--gt", gt, "--out", tmp_path / "m.json", "--level", "99"]),
            "--level 99", "have 3 levels", "give 1 to 3")
    assert not (tmp_path / "m.json").exists()


def test_fewshot_query_level_deeper_than_the_labels_is_an_error(small_dataset):
    from bbuvl.fewshot.queries import iter_queries

    with pytest.raises(ValueError, match=r"--level 99: the labels of .*val.jsonl have 3 levels; give 1 to 3"):
        iter_queries(small_dataset / "val.jsonl", [], level=99)
    assert next(iter(iter_queries(small_dataset / "val.jsonl", [], level=1))).label.count("/") == 0
    with pytest.raises(ValueError, match="cuts the labels of a dataset JSONL; .* is not one"):
        iter_queries(small_dataset / "images", [], level=2)  # a folder's labels are its subfolders: --level did nothing


# --- API key files -------------------------------------------------------------------------------------------

KEY = "k" * 24 + "0123456789"


@pytest.mark.parametrize("raw", [
    b"\xef\xbb\xbf" + KEY.encode() + b"\n",
    KEY.encode() + b"\r\n",
    b"\xef\xbb\xbf" + KEY.encode() + b"\r\n",
    KEY.encode() + b" \t\r\n",
    (KEY + "\r\n").encode("utf-16"),
    b"# keys\r\n\r\n" + KEY.encode() + b"\r",
], ids=["bom", "crlf", "bom-crlf", "trailing-space", "utf16", "cr-only-with-comment"])
def test_an_api_key_file_saved_by_any_editor_gives_the_key_as_typed(tmp_path, raw):
    from bbuvl.serve.auth import read_keys

    (tmp_path / "keys").write_bytes(raw)
    store = read_keys(tmp_path / "keys", environ={})
    assert len(store) == 1 and store.accepts(f"Bearer {KEY}")


@pytest.mark.parametrize(("raw", "says"), [
    (b"\xef\xbb\xbf\r\n", "holds no API key"),
    (b"# only a comment\n", "holds no API key"),
    ((KEY + "\u200b\n").encode(), r"U\+200B at character 35"),
    (b"\xff\xd8\xff" + KEY.encode(), "not UTF-8"),
], ids=["only-a-bom", "only-a-comment", "zero-width-space", "not-text"])
def test_an_api_key_file_without_a_usable_key_is_refused_naming_the_file(tmp_path, raw, says):
    from bbuvl.serve.auth import read_keys

    (tmp_path / "keys").write_bytes(raw)
    with pytest.raises(ValueError, match=says) as e:
        read_keys(tmp_path / "keys", environ={})
    assert str(tmp_path / "keys") in str(e.value)


# --- JSON nested deeper than a reader follows ----------------------------------------------------------------


def test_a_dataset_line_nested_100000_deep_names_its_file_and_line(small_dataset, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text((small_dataset / "val.jsonl").read_text(encoding="utf-8") + "[" * 100_000 + "]" * 100_000 + "\n",
                    encoding="utf-8")
    from bbuvl.data.schema import DatasetError, read_records

    with pytest.raises(DatasetError, match=r"train.jsonl:3: invalid JSON: nested too deep"):
        read_records(data)


def test_a_json_file_nested_100000_deep_names_the_file(tmp_path):
    from bbuvl.data.jsonfile import read_json

    path = tmp_path / "labels.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ValueError, match="labels.json: not valid JSON .nested too deep"):
        read_json(path)


def test_a_body_nested_past_the_limit_is_a_400_and_one_within_it_parses():
    from bbuvl.serve.bodies import MAX_JSON_DEPTH, parse_json
    from bbuvl.serve.errors import ApiError

    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    for body in (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), b'{"a":' * 100_000):
        with pytest.raises(ApiError) as e:
            parse_json(body)
        assert e.value.status == 400 and e.value.kind == "json_too_deep"


# --- options that do nothing without another ---------------------------------------------------------------


@pytest.mark.parametrize("given, needle", [
    (["--worst", "3"], "--worst applies only with --report: add --report or leave it out"),
    (["--worst", "3", "--font-path", "x.ttf"], "--worst, --font-path apply only with --report"),
    (["--target-recall", "0.5"], "--target-recall applies only with --choose-thresholds"),
])
def test_an_eval_option_that_needs_another_is_refused_without_it_before_anything_is_written(tmp_path, given, needle):
    out = tmp_path / "m.json"
    refused(invoke(["eval", "--pred", tmp_path / "p.jsonl", "--gt", tmp_path / "gt.jsonl", "--out", out, *given]), needle)
    assert not out.exists()


def test_choose_tiles_target_precision_without_choose_thresholds_is_refused(tmp_path):
    refused(invoke(["choose-tiles", "-c", tmp_path / "ckpt", "--gt", tmp_path / "gt.jsonl", "-o", tmp_path / "c",
                    "--target-precision", "0.9"]),
            "--target-precision applies only with --choose-thresholds: add --choose-thresholds or leave it out")
    assert not (tmp_path / "c").exists()
