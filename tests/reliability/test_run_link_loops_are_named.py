"""A symbolic link that leads in a loop, given where eval or choose-tiles writes, is one clean error naming it; and no
module follows links with `Path.resolve()`, which raised RuntimeError on a loop (a traceback) where `paths.real_path`
leaves the loop for the command to name."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

import bbuvl
from tests.reliability.test_data_link_loops_and_os_errors_are_named import invoke, loop, refused

BOX = [10, 10, 60, 60]


@pytest.fixture
def scored(tmp_path: Path) -> tuple[Path, Path]:
    """A one-photo ground truth and its predictions."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 100), (90, 90, 90)).save(tmp_path / "images" / "a.jpg")
    gt, pred = tmp_path / "val.jsonl", tmp_path / "pred.jsonl"
    gt.write_text(json.dumps({"images": ["images/a.jpg"], "width": 100, "height": 100,
                              "objects": [{"bbox_2d": BOX, "desc": "线缆"}]}, ensure_ascii=False) + "\n",
                  encoding="utf-8")
    pred.write_text(json.dumps({"image": "images/a.jpg", "width": 100, "height": 100, "raw": None, "error": None,
                                "objects": [{"bbox_2d": BOX, "label": "线缆", "score": 0.9}]},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    return gt, pred


@pytest.mark.parametrize("report", ["{loop}", "{loop}/report"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_eval_report_folder_that_is_a_link_loop_is_refused_and_stays(tmp_path, scored, report, overwrite):
    # Before: "RuntimeError: Symlink loop from '.../loop_a/worst'" from the check that the report spares --gt's photos
    gt, pred = scored
    looped = loop(tmp_path)
    result = invoke(["eval", "--pred", pred, "--gt", gt, "--out", tmp_path / "m.json",
                     "--report", report.format(loop=looped), *overwrite])
    refused(result, looped.name)
    assert os.readlink(looped) == str(tmp_path / "loop_b")
    assert not (tmp_path / "m.json").exists()


def test_a_choose_tiles_out_that_is_a_link_loop_is_refused_and_stays(tmp_path, scored):
    # Before: the same RuntimeError, from the check that --out holds none of --gt's photos
    gt, _ = scored
    looped = loop(tmp_path)
    (tmp_path / "ckpt").mkdir()
    refused(invoke(["choose-tiles", "--checkpoint", tmp_path / "ckpt", "--gt", gt, "--out", looped]), looped.name)
    assert os.readlink(looped) == str(tmp_path / "loop_b")
    assert list((tmp_path / "ckpt").iterdir()) == []


def test_no_module_follows_links_with_path_resolve():
    # The class, not the two cases above: every command compares inputs with outputs, and each comparison through
    # Path.resolve() was one more traceback for a path given as a loop.
    root = Path(bbuvl.__file__).parent
    found = [f"{path.relative_to(root)}:{n}: {line.strip()}"
             for path in sorted(root.rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"\.resolve\(\s*(strict\s*=\s*False\s*)?\)", line) and not line.lstrip().startswith(("#", '"'))
             and "`" not in line]
    assert not found, "use bbuvl.paths.real_path:\n" + "\n".join(found)
