"""Sequences of data commands on hostile inputs: what one command writes, the next reads and `data check` passes."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.schema import read_records
from tests.data.test_hostile_inputs import LABEL, photo


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def test_import_coco_keeps_one_of_two_entries_imported_as_one_file_and_the_import_passes_its_check(tmp_path: Path):
    src = tmp_path / "src"
    photo(src / "a.jpg")
    photo(src / "images" / "a.jpg")  # the same bytes, as an export beside its dataset's copy names it
    photo(src / "b.jpg", colour=(0, 90, 0))
    names = ["a.jpg", "images/a.jpg", "b.jpg"]
    coco = {"images": [{"id": i + 1, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)],
            "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 5, 26, 35]} for i in range(3)],
            "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    code, said = invoke("data", "import-coco", tmp_path / "coco.json", src, tmp_path / "out", "--val-ratio", "0.5")
    assert code == 0, said
    kept = read_records(tmp_path / "out" / "train.jsonl") + read_records(tmp_path / "out" / "val.jsonl")
    assert sorted(r.id for r in kept) == ["1", "3"]
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").open(encoding="utf-8")]
    assert [(e["image_id"], e["reason"].split(":")[0]) for e in errors] == [
        ("2", f"the same bytes as {src / 'a.jpg'} (image id 1), imported as images/a.jpg")]
    code, said = invoke("data", "check", tmp_path / "out")
    assert code == 0, said


def test_the_commands_printed_for_a_name_with_a_leading_dash_run_as_pasted(tmp_path: Path, monkeypatch):
    """A relative name that begins with `-` is printed as `./-name`: pasted as `-name`, every command took it for an
    option ("No such option: -l")."""
    from tests.reliability.test_data2_moved_predictions import project, run as fewshot

    preds = project(tmp_path / "site")
    monkeypatch.chdir(tmp_path)
    code, said = fewshot("label", "--predictions", preds, "--out", "-labelled.jsonl", "--threshold", "-1", "--support",
                         tmp_path / "site" / "support", "--backbone", "pixels:8", "--cache", tmp_path / "cache")
    assert code == 0, said
    printed = shlex.split(said.split("check it with `")[1].split("`")[0])
    assert printed[:3] == ["bbuvl", "data", "check"], printed
    code, said = invoke(*printed[1:])
    assert code == 0 and "ok: -labelled.jsonl has no errors" in said, said

    photo(tmp_path / "photos" / "a.jpg")
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 26, 35]}],
            "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "-coco.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    code, said = invoke("data", "stats", "./-coco.json")
    assert code == 2, said
    printed = shlex.split(said.split("`")[1].replace("IMAGES_DIR OUT", "photos imported"))
    assert printed[:3] == ["bbuvl", "data", "import-coco"], printed
    code, said = invoke(*printed[1:], "--val-ratio", "0")
    assert code == 0 and read_records(tmp_path / "imported" / "train.jsonl"), said


def test_check_and_stats_of_a_folder_another_command_is_filling_name_that_command(tmp_path: Path):
    """`data check` said 'teachers.jsonl: missing' and `data stats` 'no train.jsonl' of a folder `data synth` was still
    writing: the errors of a dataset that was only not finished. The writer is a real claim held by another process."""
    from tests.reliability.test_inputs_being_written_are_refused import HOLD

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    child = subprocess.Popen([sys.executable, "-c", HOLD.replace("data convert", "data synth"), str(data / "images")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        for command in (("check", data), ("stats", data)):
            code, said = invoke("data", *command)
            assert code == 2 and f"`bbuvl data synth` (pid {child.pid}) is writing" in said, (command, said)
            assert "missing" not in said and "no train.jsonl" not in said, said
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
