"""Class 9: thresholds must be finite and in range; NaN no longer silently drops everything."""

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.fewshot.evaluate import parse_thresholds


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1.5", "-1.01"])
def test_fewshot_threshold_outside_minus_one_to_one_is_a_usage_error(tmp_path, value):
    r = CliRunner().invoke(app, ["fewshot", "classify", "--support", str(tmp_path), "--query", str(tmp_path),
                                 "--out", str(tmp_path / "o.csv"), "--threshold", value])
    assert r.exit_code == 2 and "finite number in [-1, 1]" in " ".join(r.output.split()), r.output


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1.0001"])
def test_predict_score_threshold_outside_zero_to_one_is_a_usage_error(tmp_path, value):
    r = CliRunner().invoke(app, ["predict", "-c", str(tmp_path), "-i", str(tmp_path), "-o", str(tmp_path / "p.jsonl"),
                                 "--score-threshold", value])
    assert r.exit_code == 2 and "finite number in [0, 1]" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("text", ["nan", "0.5,inf", "0.5:2:0.5"])
def test_fewshot_eval_thresholds_must_be_cosine_similarities(text):
    with pytest.raises(ValueError, match=r"finite number in \[-1, 1\]"):
        parse_thresholds(text)


def test_device_bogus_is_one_clean_line(tmp_path):
    from bbuvl.cli.common import check_device

    import typer

    with pytest.raises(typer.Exit):
        check_device("bogus")
    with pytest.raises(typer.Exit):
        check_device("cuda:99")
    assert check_device("cpu") == "cpu"


def support_tree(root, classes: dict[str, int]):
    """A support folder with `n` real PNGs per class path (0 makes an empty class folder)."""
    from PIL import Image

    for name, n in classes.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (30 * i, 0, 0)).save(folder / f"{i}.png")
    return root


def test_an_empty_class_folder_in_a_support_set_is_an_error_naming_it(tmp_path):
    from bbuvl.fewshot.support import read_support

    root = support_tree(tmp_path / "support", {"螺丝": 2, "线缆": 0})
    with pytest.raises(ValueError, match=r"线缆: class folder without images"):
        read_support(root)
    r = CliRunner().invoke(app, ["fewshot", "classify", "--support", str(root), "--query", str(root),
                                 "--backbone", "pixels", "--out", str(tmp_path / "o.csv")])
    assert r.exit_code == 2 and "class folder without images" in " ".join(r.output.split()), r.output


def test_an_empty_shot_folder_and_a_folder_of_non_images_are_refused_too(tmp_path):
    from bbuvl.fewshot.support import read_support

    root = support_tree(tmp_path / "a", {"螺丝": 1, "线缆/shot5": 0})
    with pytest.raises(ValueError, match=r"线缆(/shot5)?: class folder without images"):
        read_support(root)
    root = support_tree(tmp_path / "b", {"螺丝": 1, "线缆": 0})
    (root / "线缆" / "notes.txt").write_text("todo", encoding="utf-8")
    with pytest.raises(ValueError, match="线缆: class folder without images"):
        read_support(root)


def test_nested_class_folders_and_hidden_folders_are_not_empty_classes(tmp_path):
    from bbuvl.fewshot.support import read_support

    root = support_tree(tmp_path / "support", {"螺丝连接点/新接头/连接正确": 1, "线缆/shot1": 1, ".cache": 0})
    assert read_support(root).classes == ["线缆", "螺丝连接点/新接头/连接正确"]
