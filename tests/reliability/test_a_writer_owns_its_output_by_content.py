"""Class: a writer owns a file by its content, not its name (bbuvl/outputs.py).

What a command wrote is recorded by SHA-256 when it ends; a file changed since is nobody's, and a run that fails
records only what it did write. Every writing command is checked by
tests/reliability/test_no_command_writes_onto_its_inputs.py (a hand-edited output is kept); here, the two cases
that were found, and the variants around them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image
import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.outputs import writer_of
from bbuvl.synthetic.dataset import synthesize


def invoke(*argv: object):
    return CliRunner().invoke(app, [str(a) for a in argv])


def predictions(val: Path, out: Path) -> Path:
    lines = [{"image": str(resolve_image(val, r.image)), "width": r.width, "height": r.height, "error": None,
              "objects": [{"bbox_2d": o.bbox_2d, "label": o.desc, "score": 0.9} for o in r.objects]}
             for r in read_records(val)]
    out.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return out


def eval_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A small dataset's val.jsonl and predictions that match it exactly."""
    synthesize(tmp_path / "ds", 2, 2, seed=0, size=(128, 96))
    val = tmp_path / "ds" / "val.jsonl"
    return val, predictions(val, tmp_path / "pred.jsonl")


def test_a_hand_edited_split_is_kept_by_a_rerun_without_overwrite(tmp_path):
    synthesize(tmp_path / "ds", 6, 0, seed=0, size=(128, 96))
    argv = ("data", "split", tmp_path / "ds" / "train.jsonl", tmp_path / "split", "--teachers", "0", "--val-ratio", "0.5")
    assert invoke(*argv).exit_code == 0
    assert invoke(*argv).exit_code == 0  # its own, unchanged: redone without --overwrite
    val = tmp_path / "split" / "val.jsonl"
    edited = val.read_text(encoding="utf-8").replace("螺丝连接点", "螺丝连接点/松动", 1)
    val.write_text(edited, encoding="utf-8")
    r = invoke(*argv)
    assert r.exit_code == 2 and "changed since `bbuvl data split` wrote it" in " ".join(r.output.split()), r.output
    assert val.read_text(encoding="utf-8") == edited
    assert invoke(*argv, "--overwrite").exit_code == 0 and writer_of(val) == "data split"


def test_a_failed_eval_claims_nothing_and_a_file_put_there_later_is_kept(tmp_path):
    val, pred = eval_inputs(tmp_path)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"images": ["a.jpg"], "width": 4\n', encoding="utf-8")
    out = tmp_path / "metrics.json"
    r = invoke("eval", "--pred", pred, "--gt", broken, "--out", out)
    assert r.exit_code == 2 and not out.exists(), r.output
    out.write_text('{"my": "notes"}\n', encoding="utf-8")
    r = invoke("eval", "--pred", pred, "--gt", val, "--out", out)
    assert r.exit_code == 2 and "written by someone else" in r.output, r.output
    assert out.read_text(encoding="utf-8") == '{"my": "notes"}\n'


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_output_swapped_for_a_link_or_another_file_of_the_same_size_is_not_the_commands(tmp_path):
    val, pred = eval_inputs(tmp_path)
    out = tmp_path / "m.json"
    assert invoke("eval", "--pred", pred, "--gt", val, "--out", out).exit_code == 0
    data = out.read_bytes()
    out.write_bytes(data.replace(b"0", b"1", 1) if b"0" in data else data[::-1])  # same size, other bytes
    assert writer_of(out) is None and invoke("eval", "--pred", pred, "--gt", val, "--out", out).exit_code == 2
    mine = tmp_path / "mine.json"
    mine.write_text("{}", encoding="utf-8")
    out.unlink()
    os.symlink(mine, out)
    assert writer_of(out) is None and invoke("eval", "--pred", pred, "--gt", val, "--out", out).exit_code == 2
    assert mine.read_text(encoding="utf-8") == "{}"


def test_a_retouched_photo_in_a_synth_folder_is_kept(tmp_path):
    argv = ("data", "synth", tmp_path / "ds", "--n-train", "2", "--n-val", "1", "--size", "128x96", "--teachers", "0")
    assert invoke(*argv).exit_code == 0
    photo = sorted((tmp_path / "ds" / "images").iterdir())[0]
    Image.new("RGB", (128, 96), "white").save(photo)
    retouched = photo.read_bytes()
    r = invoke(*argv)
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "images: changed since `bbuvl data synth` wrote it (a file it wrote there was edited)" in said, said
    assert photo.read_bytes() == retouched


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_output_reached_through_a_link_is_the_file_it_names_and_the_link_stays(tmp_path):
    val, pred = eval_inputs(tmp_path)
    run3 = tmp_path / "run3.json"
    assert invoke("eval", "--pred", pred, "--gt", val, "--out", run3).exit_code == 0
    latest = tmp_path / "latest.json"
    os.symlink(run3.name, latest)  # relative, as `ln -s` makes it
    assert writer_of(latest) == "eval"
    run3.write_text("{}", encoding="utf-8")  # refused through the link as through the file: no longer eval's
    r = invoke("eval", "--pred", pred, "--gt", val, "--out", latest)
    assert r.exit_code == 2 and "changed since `bbuvl eval` wrote it" in r.output, r.output
    assert invoke("eval", "--pred", pred, "--gt", val, "--out", latest, "--overwrite").exit_code == 0
    assert latest.is_symlink() and os.readlink(latest) == run3.name  # the link still names run3's result
    assert json.loads(run3.read_text(encoding="utf-8"))["AP50"] is not None and writer_of(run3) == "eval"
