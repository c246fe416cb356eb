"""Class 5: training reads data by `data check`'s rules: a box check calls an error is refused, never clipped and taught."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config, load_config
from bbuvl.data.check import check_dataset
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.train.dataset import read_training_data


def spoil(kind: str, obj: dict, width: int) -> list[dict]:
    """The objects a record gets in place of `obj` for each kind of box check calls an error."""
    x1, y1, x2, y2 = obj["bbox_2d"]
    if kind == "outside":
        return [{**obj, "bbox_2d": [x1, y1, width + 40, y2]}]
    if kind == "zero_area":
        return [{**obj, "bbox_2d": [x1, y1, x1, y2]}]
    return [obj, dict(obj)]  # the same object twice


def copy_dataset(src: Path, dst: Path, kind: str | None = None, line: int = 2) -> Path:
    """`src` with absolute image paths, record `line` spoilt by `kind`."""
    rows = []
    for no, r in enumerate(read_records(src), start=1):
        row = {"images": [str(resolve_image(src, r.image))], "width": r.width, "height": r.height,
               "objects": [o.model_dump(exclude_none=True) for o in r.objects]}
        if kind is not None and no == line:
            row["objects"] = spoil(kind, row["objects"][0], r.width) + row["objects"][1:]
        rows.append(row)
    dst.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return dst


def config(tmp_path: Path, tiny_model_dir: Path, train: Path, teachers: Path) -> Path:
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={train}", "data.val=null", f"data.teachers={teachers}", "data.num_workers=0",
        f"training.output_dir={tmp_path / 'run'}", "training.max_steps=1", "training.use_cpu=true", "training.bf16=false",
    ])
    path = tmp_path / "run.yaml"
    path.write_text(dump_config(cfg), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["outside", "zero_area", "duplicate"])
@pytest.mark.parametrize("spoilt", ["train", "teachers"])
def test_train_refuses_a_box_check_calls_an_error_naming_file_and_line(tiny_model_dir, small_dataset, tmp_path, kind, spoilt):
    files = {name: copy_dataset(small_dataset / f"{name}.jsonl", tmp_path / f"{name}.jsonl", kind if name == spoilt else None)
             for name in ("train", "teachers")}
    found = [p for p in check_dataset(files[spoilt]) if p.severity == "error"]
    assert [p.line for p in found] == [2]
    r = CliRunner().invoke(app, ["train", str(config(tmp_path, tiny_model_dir, files["train"], files["teachers"]))])
    output = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"{files[spoilt]}:2: {found[0].message}" in output and "bbuvl data check" in output


def test_every_box_error_is_counted_in_the_one_message(small_dataset, tmp_path):
    path = copy_dataset(small_dataset / "train.jsonl", tmp_path / "train.jsonl", "outside", line=1)
    text = path.read_text(encoding="utf-8").splitlines()
    spoilt = json.loads(copy_dataset(small_dataset / "train.jsonl", tmp_path / "b.jsonl", "zero_area", line=3)
                        .read_text(encoding="utf-8").splitlines()[2])
    text[2] = json.dumps(spoilt, ensure_ascii=False)
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.jsonl:1: objects\[0\]: box .* lies outside .* \(and 1 more box error\(s\): "
                                         r".*train.jsonl:3: objects\[0\]: box .* is degenerate"):
        read_training_data(path)


def test_clean_data_reads_as_before(small_dataset):
    assert len(read_training_data(small_dataset / "train.jsonl")) == len(read_records(small_dataset / "train.jsonl"))


def test_train_refuses_a_sample_whose_teacher_is_its_own_student_photo(small_dataset, tmp_path):
    # `bbuvl data check` calls it an error (the prompt would show the answer); training read such a line and taught it.
    records = [json.loads(line) for line in copy_dataset(small_dataset / "train.jsonl", tmp_path / "plain.jsonl")
               .read_text(encoding="utf-8").splitlines()]
    samples = [{"teachers": [records[1]], "student": records[0]}, {"teachers": [records[1]], "student": records[1]}]
    path = tmp_path / "explicit.jsonl"
    path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), encoding="utf-8")
    said = [p.message for p in check_dataset(path) if p.severity == "error"]
    assert len(said) == 1 and "is the student photo" in said[0], said
    with pytest.raises(ValueError, match=rf"explicit.jsonl:2: {re.escape(said[0])}; training uses no teacher `bbuvl data "
                                         "check` calls an error"):
        read_training_data(path)
