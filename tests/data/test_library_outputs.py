"""The library functions behind the data commands (split, teachers, COCO in and out, convert, viz), called from Python
as a notebook calls them, refuse to write onto their own inputs and hold their outputs against other processes, as
the commands that call them do (data/library_outputs.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from bbuvl.data.coco_files import export_coco, import_coco
from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.data.labels import DEFAULT_HIERARCHY, Hierarchy
from bbuvl.data.library_outputs import holding_outputs
from bbuvl.data.split import split_dataset
from bbuvl.data.teachers import write_teacher_pool
from bbuvl.eval.draw import LabelNamer
from bbuvl.eval.fonts import find_cjk_font
from bbuvl.eval.viz import draw_pictures
from bbuvl.outputs import OutputConflict
from bbuvl.synthetic.dataset import synthesize
from tests.reliability.test_train2_model_being_written import _hold

# Another process reading a path, as `bbuvl train` reads its data for as long as it runs
READ = """
import sys, time
from pathlib import Path
from bbuvl.outputs import register_reading
register_reading({"data.train": Path(sys.argv[1])})
print("reading", flush=True)
time.sleep(120)
"""


@pytest.fixture
def ds(small_dataset, tmp_path) -> Path:
    """A copy of the small dataset folder (its JSONL and photos), to be written onto."""
    return Path(shutil.copytree(small_dataset, tmp_path / "ds"))


def _draw(ds: Path) -> object:
    """viz with `replace`, into the folder that holds its input: the folder is replaced whole."""
    font = find_cjk_font()
    return draw_pictures(ds / "val.jsonl", ds, font, LabelNamer(font, Hierarchy.load(None)), replace=True)


def _a_link_to_the_dataset(ds: Path) -> Path:
    """ds/coco.json, a link to the training file: a write through it replaces what it names."""
    (ds / "coco.json").symlink_to(ds / "train.jsonl")
    return ds / "train.jsonl"


def _a_coco_file_named_as_a_dataset_file(ds: Path) -> Path:
    """A COCO file exported into ds/../imported under the name of a file a dataset folder holds (labels.json)."""
    export_coco(ds / "train.jsonl", ds.parent / "imported" / "labels.json")
    return ds.parent / "imported" / "labels.json"


def _a_hierarchy_in_the_output(ds: Path) -> Path:
    """A vendor export beside `ds`, and the label hierarchy it is converted with at ds/labels.json."""
    synthesize(ds.parent / "export", 2, 0, seed=1, size=(160, 120), fmt="vendor")
    shutil.copy(DEFAULT_HIERARCHY, ds / "labels.json")
    return ds / "labels.json"


def _the(name: str) -> Callable[[Path], Path]:
    return lambda ds: ds / name


# what each writes onto: (make the input, return it; the call)
ONTO_AN_INPUT: dict[str, tuple[Callable[[Path], Path], Callable[[Path], object]]] = {
    "split into its input's folder": (_the("train.jsonl"), lambda ds: split_dataset(ds / "train.jsonl", ds, 0.25)),
    "teachers onto the training file": (
        _the("train.jsonl"), lambda ds: write_teacher_pool(ds / "train.jsonl", ds / "train.jsonl", k=3)),
    "teachers onto the validation file beside it": (
        _the("val.jsonl"), lambda ds: write_teacher_pool(ds / "train.jsonl", ds / "val.jsonl", k=3)),
    "export-coco onto its dataset": (_the("train.jsonl"), lambda ds: export_coco(ds / "train.jsonl", ds / "train.jsonl")),
    "export-coco through a link to its dataset": (
        _a_link_to_the_dataset, lambda ds: export_coco(ds / "train.jsonl", ds / "coco.json")),
    "import-coco onto its COCO file": (_a_coco_file_named_as_a_dataset_file, lambda ds: import_coco(
        ds.parent / "imported" / "labels.json", ds, ds.parent / "imported", val_ratio=0, num_teachers=0,
        allow_outside=True)),
    "convert onto its hierarchy": (_a_hierarchy_in_the_output, lambda ds: convert_dataset(
        ds.parent / "export", ds, ConvertOptions(val_ratio=0, teachers=0, hierarchy=ds / "labels.json"))),
    "viz replacing the folder of its input": (_the("val.jsonl"), _draw),
}


@pytest.mark.parametrize("case", ONTO_AN_INPUT)
def test_a_library_writer_refuses_to_write_onto_its_own_input_and_leaves_it_as_it_was(ds, case):
    make, call = ONTO_AN_INPUT[case]
    given = make(ds)
    before = given.read_bytes()
    # split_dataset("sp/train.jsonl", "sp") replaced its 40-line input with its 30-line train.jsonl, silently
    with pytest.raises(OutputConflict, match="input"):
        call(ds)
    assert given.read_bytes() == before


def test_an_output_another_process_writes_is_refused_naming_it_and_the_output_is_left_alone(ds, tmp_path):
    out = tmp_path / "coco.json"
    out.write_text("{}\n", encoding="utf-8")
    child = _hold(out, "data export-coco")
    try:
        with pytest.raises(OutputConflict, match=rf"another `bbuvl data export-coco` \(pid {child.pid}\) is writing it"):
            export_coco(ds / "train.jsonl", out)
    finally:
        child.kill()
        child.wait()
    assert out.read_text(encoding="utf-8") == "{}\n"
    export_coco(ds / "train.jsonl", out)  # its writer gone, the output is free
    assert out.stat().st_size > 3


def test_an_output_another_process_reads_is_refused_naming_the_reader(ds, tmp_path):
    out = tmp_path / "split"
    out.mkdir()
    (out / "train.jsonl").write_bytes((ds / "train.jsonl").read_bytes())
    child = subprocess.Popen([sys.executable, "-c", READ, str(out / "train.jsonl")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "reading"
        with pytest.raises(OutputConflict, match=rf"\(pid {child.pid}, since .*\) is reading it"):
            split_dataset(ds / "train.jsonl", out, val_ratio=0.25)
    finally:
        child.kill()
        child.wait()
    assert (out / "train.jsonl").read_bytes() == (ds / "train.jsonl").read_bytes() and not (out / "val.jsonl").exists()


def test_outputs_are_held_while_the_block_runs_and_let_go_after(ds, tmp_path):
    out = tmp_path / "pool.jsonl"
    look = [sys.executable, "-c", "import sys; from pathlib import Path; from bbuvl.outputs import hold_outputs\n"
            "try: hold_outputs('x', [Path(sys.argv[1])]).finish(True); print('free')\n"
            "except ValueError as e: print(e)", str(out)]
    with holding_outputs("data teachers", {"dataset": ds / "train.jsonl"}, [out]):
        held = subprocess.run(look, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "another `bbuvl data teachers`" in held, held
    assert subprocess.run(look, capture_output=True, text=True, timeout=60, check=True).stdout == "free\n"
