"""Queries in a folder named in GBK bytes (an archive from a Chinese Windows, unpacked here): a .csv that names each
query photo by its path cannot hold them, so `fewshot classify --out X.csv` and `fewshot eval` (its queries.csv) are
refused before any photo is embedded, naming --query; they ended in "'utf-8' codec can't encode characters in
position 0-3" once every query was answered. A .jsonl keeps the paths as JSON escapes, which read back as they were."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from bbuvl.cli import app
from tests.locales import gbk_folder


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def test_queries_in_a_gbk_folder_are_refused_for_a_csv_before_any_work_and_kept_in_a_jsonl(part_crops, tmp_path):
    query = shutil.copytree(part_crops.query, gbk_folder(tmp_path) / "query")
    common = ["--support", part_crops.support, "--query", query, "--backbone", "pixels", "--no-cache"]
    code, out = invoke("fewshot", "classify", *common, "--out", tmp_path / "a.csv")
    assert code == 2 and "codec" not in out and not (tmp_path / "a.csv").exists(), out
    assert out.startswith("error: --query '") and "\\xca\\xfd\\xbe\\xdd/query' is not UTF-8 text" in out, out
    assert "a .csv --out (a .jsonl keeps such a path as JSON escapes) names each query photo by its path" in out, out
    code, out = invoke("fewshot", "eval", *common, "--out", tmp_path / "scores")
    assert code == 2 and "--out's queries.csv names each query photo" in out and not (tmp_path / "scores").exists(), out
    code, out = invoke("fewshot", "classify", *common, "--out", tmp_path / "a.jsonl")
    assert code == 0, out
    images = [json.loads(line)["image"] for line in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    assert images and all(image.startswith(str(query)) for image in images), images[:2]
