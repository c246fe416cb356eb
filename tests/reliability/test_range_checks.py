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
