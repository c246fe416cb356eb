"""`bbuvl data split` of a JSONL whose photos are not where its paths lead (a dataset's train.jsonl and val.jsonl
joined into a file outside their folder, as a new user does to split them again): it wrote a split whose every line
`data check` refused, and said it had split them."""

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app


def dataset(folder: Path, n: int) -> list[str]:
    """Lines of a dataset of `n` real photos under `folder`/images, one box each."""
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        Image.new("RGB", (64, 48), (40 * i, 90, 160)).save(folder / "images" / f"p{i}.jpg")
        lines.append(json.dumps({"images": [f"images/p{i}.jpg"], "width": 64, "height": 48,
                                 "objects": [{"bbox_2d": [4, 4, 30, 30], "desc": "线缆"}]}, ensure_ascii=False))
    return lines


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def test_split_of_a_file_whose_photos_are_elsewhere_names_the_line_and_writes_nothing(tmp_path):
    lines = dataset(tmp_path / "ds", 4)
    joined = tmp_path / "all.jsonl"  # beside ds/, so images/p0.jpg leads to tmp_path/images, which is not there
    joined.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, said = run("data", "split", joined, tmp_path / "split")
    assert code != 0
    assert (f"{joined}:1: image images/p0.jpg: no such file at {tmp_path / 'images' / 'p0.jpg'} (a dataset's image "
            "paths are read from its own folder)") in said, said
    assert not (tmp_path / "split" / "train.jsonl").exists()


def test_split_of_a_file_beside_its_photos_passes_check(tmp_path):
    lines = dataset(tmp_path / "ds", 4)
    (tmp_path / "ds" / "all.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, said = run("data", "split", tmp_path / "ds" / "all.jsonl", tmp_path / "split", "--val-ratio", "0.25")
    assert code == 0, said
    for name in ("train.jsonl", "val.jsonl"):
        code, said = run("data", "check", tmp_path / "split" / name)
        assert code == 0 and "has no errors" in said, said
