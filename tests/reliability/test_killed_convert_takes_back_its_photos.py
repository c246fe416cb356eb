"""A `data convert` (or `data import-coco`) killed after it set OUT's earlier outputs aside and wrote photos, but before
its JSONL: the re-run was refused, the killed run's own photos named as files it did not write, since the names its
dataset gives were not yet written. What stands under `images/` then is the killed run's alone (outputs.py
`replacing`), and the re-run takes it back whole; one killed before it set anything aside still has strangers looked
for (tests/data/test_synth_cli.py)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bbuvl.synthetic.dataset import synthesize
from tests.data.test_hostile_inputs import run

# What convert does up to its JSONL, in its own process: claim, set aside, write photos; then a `kill -9`
CLAIM_SET_ASIDE_WRITE_AND_DIE = """
import os, shutil, signal, sys
from pathlib import Path
from bbuvl.data.layout import DATASET_FILES, ERRORS, IMAGES, named_by_dataset
from bbuvl.outputs import claim_outputs, replacing
out, photos = Path(sys.argv[1]), sorted(Path(sys.argv[2]).glob("*.jpg"))
outputs = [*(out / n for n in (*DATASET_FILES, ERRORS)), out / IMAGES]
claim_outputs("data convert", {}, outputs[:-1], outputs[-1:], own={out / IMAGES: named_by_dataset(out)})
with replacing(outputs):
    (out / IMAGES).mkdir()
    for p in photos:
        shutil.copy(p, out / IMAGES / p.name)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _kill_after_photos(out: Path, photos: Path) -> None:
    child = subprocess.run([sys.executable, "-c", CLAIM_SET_ASIDE_WRITE_AND_DIE, str(out), str(photos)], timeout=120)
    assert child.returncode == -signal.SIGKILL
    assert list((out / "images").iterdir()) and not (out / "train.jsonl").exists()


@pytest.mark.parametrize("before", ["nothing", "another export's dataset"])
@pytest.mark.parametrize("typed", [[], ["--overwrite"]])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_convert_killed_between_its_photos_and_its_jsonl_is_redone_by_the_next_run(tmp_path: Path, before, typed):
    export, other, out = tmp_path / "export", tmp_path / "other", tmp_path / "out [1]"
    synthesize(export, 3, 0, seed=1, size=(160, 120), fmt="vendor")
    if before != "nothing":
        synthesize(other, 2, 0, seed=2, size=(160, 120), fmt="vendor")
        for p in sorted(other.rglob("*.jpg")):  # its photos under names this export does not give
            p.rename(p.with_name("old_" + p.name))
        for p in sorted(other.rglob("*.json")):
            p.rename(p.with_name("old_" + p.name))
        assert run("convert", other, out, "--teachers", "0", "--workers", "1")[0] == 0
    written = tmp_path / "written"  # the killed run's photos: the export's, and one its JSONL would not name
    written.mkdir()
    for p in sorted(export.rglob("*.jpg")):
        shutil.copy(p, written / p.name)
    shutil.copy(next(export.rglob("*.jpg")), written / "half_00000.jpg")
    _kill_after_photos(out, written)

    code, said = run("convert", export, out, "--teachers", "0", "--workers", "1", *typed)

    assert code == 0, said
    named = {json.loads(line)["images"][0] for split in ("train.jsonl", "val.jsonl")
             for line in (out / split).read_text(encoding="utf-8").splitlines()}
    assert len(named) == 3
    assert {f"images/{p.name}" for p in (out / "images").iterdir()} == named  # the killed run's half went
