"""Class 8: --device bogus, an empty training file and non-finite boxes are one clean line naming what to fix."""

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.schema import DatasetError, read_dataset

BBU = "bbu基带处理单元/华为"


def one_line_error(result, *needles: str) -> str:
    """The error text of a clean failure: exit 2, no traceback, every needle present."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, (needle, text)
    return text


@pytest.mark.parametrize("command", [
    ["doctor", "model", "{ckpt}", "--device", "bogus"],
    ["doctor", "memory", "{ckpt}", "--device", "bogus"],
    ["doctor", "features", "{ckpt}", "--device", "bogus"],
    ["doctor", "coordinates", "{ckpt}", "--device", "bogus"],
    ["doctor", "attention", "{ckpt}", "{img}", "--device", "bogus"],
    ["doctor", "landscape", "{ckpt}", "{img}", "--device", "bogus"],
    ["fewshot", "classify", "--support", "{ckpt}", "--query", "{ckpt}", "--backbone", "pixels", "--out", "{out}.csv",
     "--device", "bogus"],
    ["fewshot", "eval", "--support", "{ckpt}", "--query", "{ckpt}", "--backbone", "pixels", "--out", "{out}",
     "--device", "bogus"],
])
def test_device_bogus_is_one_clean_line_in_doctor_and_fewshot(tmp_path, command):
    ckpt = tmp_path / "ckpt"  # the output beside the input folder, not inside it (that is refused first)
    ckpt.mkdir()
    args = [a.format(ckpt=ckpt, img=tmp_path / "x.png", out=tmp_path / "out") for a in command]
    r = CliRunner().invoke(app, args)
    one_line_error(r, "--device bogus: not a device name")


def test_fewshot_device_cuda_without_a_gpu_is_a_clean_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    support = tmp_path / "support"
    support.mkdir()
    r = CliRunner().invoke(app, ["fewshot", "classify", "--support", str(support), "--query", str(support),
                                 "--backbone", "pixels", "--out", str(tmp_path / "o.csv"), "--device", "cuda"])
    one_line_error(r, "--device cuda: no such CUDA device here")


def write_config(tmp_path: Path, tiny_model_dir: Path, train: Path) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model:\n  path: {tiny_model_dir}\n  dtype: float32\n  min_pixels: 12544\n  max_pixels: 50176\n"
        f"data:\n  train: {train}\n  val: null\n  teachers: null\n  num_workers: 0\n"
        f"training:\n  output_dir: {tmp_path / 'run'}\n  max_steps: 1\n  bf16: false\n  use_cpu: true\n"
        "  gradient_checkpointing: false\n",
        encoding="utf-8")
    return cfg


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_training_file_is_an_error_naming_the_file(tmp_path, tiny_model_dir, content):
    train = tmp_path / "train.jsonl"
    train.write_text(content, encoding="utf-8")
    r = CliRunner().invoke(app, ["train", str(write_config(tmp_path, tiny_model_dir, train))])
    text = one_line_error(r, str(train), "no samples")
    assert "max()" not in text


@pytest.mark.parametrize("box", ["[NaN, 1, 5, 5]", "[1, 1, Infinity, 5]", "[-Infinity, 1, 5, 5]"])
def test_a_non_finite_box_is_an_error_with_file_and_line(tmp_path, box):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    good = '{"images": ["a.png"], "width": 16, "height": 16, "objects": [{"bbox_2d": [1, 1, 5, 5], "desc": "x"}]}'
    path = tmp_path / "train.jsonl"
    path.write_text(good + "\n" + good.replace("[1, 1, 5, 5]", box) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"{path}:2: .*not a finite number"):
        read_dataset(path)
    r = CliRunner().invoke(app, ["data", "check", str(path)])
    assert r.exit_code != 0 and f"{path}:2:" in " ".join(r.output.split()) and "finite" in r.output


def test_training_on_a_non_finite_box_names_file_and_line(tmp_path, tiny_model_dir):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    train = tmp_path / "train.jsonl"
    train.write_text('{"images": ["a.png"], "width": 16, "height": 16, "objects": [{"bbox_2d": [NaN, 1, 5, 5], '
                     '"desc": "x"}]}\n', encoding="utf-8")
    r = CliRunner().invoke(app, ["train", str(write_config(tmp_path, tiny_model_dir, train))])
    text = one_line_error(r, f"{train}:1:", "not a finite number")
    assert "cannot convert float NaN" not in text


def test_import_coco_lists_a_non_finite_bbox_in_errors_jsonl(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48)).save(images / name)
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
                       {"id": 2, "file_name": "b.png", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20], "iscrowd": 0},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [float("nan"), 2, 20, 20], "iscrowd": 0},
                            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [2, 2, float("inf"), 20], "iscrowd": 0}],
            "categories": [{"id": 1, "name": BBU}]}
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(coco), encoding="utf-8")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["data", "import-coco", str(ann), str(images), str(out), "--val-ratio", "0"])
    assert r.exit_code == 0, r.output
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sum("not a finite number" in json.dumps(e) for e in errors) == 2, errors


def test_a_non_finite_predicted_box_is_skipped_with_file_and_line_by_fewshot(tmp_path):
    from bbuvl.fewshot.queries import iter_predictions

    path = tmp_path / "pred.jsonl"
    path.write_text('{"image": "a.png", "width": 16, "height": 16, "error": null, "objects": ['
                    '{"bbox_2d": [1, 1, Infinity, 5], "label": "x"}, {"bbox_2d": [1, 1, 5, 5], "label": "x"}]}\n',
                    encoding="utf-8")
    problems: list[str] = []
    lines = list(iter_predictions(path, problems))
    assert [o["bbox_2d"] for o in lines[0].objects] == [[1, 1, 5, 5]]
    assert problems == [f"{path}:1: objects[0]: expected a bbox_2d of 4 finite numbers [x1, y1, x2, y2]"]
