"""bbuvl/cli/common.py: claiming and releasing a command's outputs where the disk is full or no file descriptor is
left: one error line naming the file, and nothing left behind (no lock file, no temporary, no folder made for them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from tests.reliability.faults import small_tmpfs
from tests.test_outputs import fill


def test_a_command_on_a_full_disk_is_one_error_naming_the_lock_file_and_leaves_nothing(small_dataset, tmp_path):
    # It said "cannot write the outputs: No space left on device: ; choose another output" (no file), and left an
    # empty .NAME.lock, and the folder it made for it, behind.
    with small_tmpfs(tmp_path / "disk", kib=64) as disk:
        fill(disk)
        for args, lock in ((["data", "export-coco", str(small_dataset / "val.jsonl"), str(disk / "gt.coco.json")],
                            disk / ".gt.coco.json.lock"),
                           (["data", "synth", str(disk / "ds"), "--n-train", "2", "--n-val", "1"], disk / "ds" / ".train.jsonl.lock")):
            result = CliRunner().invoke(app, args)
            text = " ".join(result.output.split())
            assert result.exit_code == 2 and "Traceback" not in text, result.output
            assert f"cannot write the outputs: {lock}: No space left on device" in text, text
            assert sorted(p.name for p in disk.iterdir()) == ["filler"]


# Two claims, as `eval --out M --report R` makes, then a report picture folder whose write fails for want of a file
# descriptor, as under `ulimit -n 20`: its temporary could not be removed, and finishing the claims failed too.
OUT_OF_DESCRIPTORS = """
import os, resource, sys
from pathlib import Path
from bbuvl.atomic import atomic_folder
from bbuvl.cli.common import claim_outputs, finish_claims
from bbuvl.cli.common import error_text
tmp = Path(sys.argv[1])
claim_outputs("eval", {{"--gt": tmp / "gt.jsonl"}}, [tmp / "m.json", tmp / "m.coco.json"])
claim_outputs("eval", {{"--gt": tmp / "gt.jsonl"}}, folders=[tmp / "rep"])
(tmp / "m.json").write_text("{{}}", encoding="utf-8")
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
hog = []
try:
    with atomic_folder(tmp / "rep" / "faults") as pictures:
        (pictures / "000.png").write_bytes(b"png")
        while True:
            hog.append(os.open(os.devnull, os.O_RDONLY))
except OSError as e:
    print("error:", error_text(e), flush=True)
finish_claims(succeeded={succeeded})
print("finished", flush=True)
"""


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_outputs_are_let_go_and_temporaries_removed_when_no_file_descriptor_is_left(tmp_path):
    # The report's claim failed to finish (its digest could not list the folder): a second traceback, and the
    # metrics' claim was never finished, its lock files left with the picture folders' temporaries.
    (tmp_path / "gt.jsonl").write_text("", encoding="utf-8")
    for succeeded in (False, True):
        run = subprocess.run([sys.executable, "-c", OUT_OF_DESCRIPTORS.format(succeeded=succeeded), str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
        assert run.stdout.splitlines() == ["error: rep/faults: writing failed (Too many open files); nothing was "
                                           "written".replace("rep/faults", str(tmp_path / "rep" / "faults")), "finished"]
        assert "Too many open files; what `bbuvl eval` wrote there is not recorded" in run.stderr, run.stderr
        left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if "lock" in p.name or
                      ".tmp" in p.name)
        assert left == [], left
