"""bbuvl/outputs.py: a free lock naming a writer this machine cannot check (another host, or a pid namespace of a kernel
this process cannot see) is refused, never taken for a killed run's: over a shared folder whose locks stay on each
machine (NFS `nolock` or `local_lock=flock`) a live writer elsewhere looks ended here, and its temporaries went."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.atomic import atomic_folder
from bbuvl.cli import app
from bbuvl.outputs import LockLine, OutputConflict, boot_id, claim_outputs, hold_outputs, lock_path, pid_namespace
from tests.children import reaped

HERE = socket.gethostname()
# The pid namespace of no process here: the inodes of /proc/PID/ns/pid are far below it
NOBODYS_PIDNS = "4026999999"


def _model_with_a_writer_elsewhere(tmp_path: Path, line: str) -> tuple[Path, Path]:
    """A model folder `model tiny` wrote, its lock file reading `line` and free here, and beside it a temporary folder
    being filled, as that writer leaves them while it runs; returns (the folder, the temporary)."""
    model = tmp_path / "t2"
    with claim_outputs("model tiny", {}, folders=[model], listed=[model]), atomic_folder(model) as filling:
        (filling / "model.safetensors").write_bytes(b"the weights")
    lock_path(model).write_text(line, encoding="utf-8")
    temporary = tmp_path / ".t2.1.abcdefgh.tmp"
    temporary.mkdir()
    (temporary / "model.safetensors").write_bytes(b"half of the other machine's model")
    return model, temporary


@pytest.mark.parametrize("line, named", [
    ("1 model tiny\nhost=node7 pidns=4026531836\n", "pid 1 on host node7"),
    (f"7 model tiny\nhost={HERE} pidns={NOBODYS_PIDNS}\n", f"pid 7 in another pid namespace on host {HERE}"),
    ("1 model tiny\nhost=node7 pidns=4026531836 boot=0b7c1e6a-0000-4000-8000-000000000007\n", "pid 1 on host node7"),
])
def test_a_free_lock_naming_a_writer_this_machine_cannot_check_is_refused_and_nothing_of_it_removed(tmp_path, line,
                                                                                                   named):
    # Before: taken for a killed run's, and `model tiny t2` deleted the other machine's live temporary (exit 0)
    model, temporary = _model_with_a_writer_elsewhere(tmp_path, line)
    said = (f"{model}: its lock names {named} (`bbuvl model tiny`), which this machine cannot check",
            f"If that run is gone, delete {lock_path(model)}, then run this again")
    for claim in (lambda: claim_outputs("model tiny", {}, folders=[model], listed=[model]),
                  lambda: claim_outputs("model tiny", {}, folders=[model], overwrite=True, listed=[model]),
                  lambda: hold_outputs("train", [model])):
        with pytest.raises(OutputConflict) as refused:
            claim()
        assert all(words in str(refused.value) for words in said), refused.value
    r = CliRunner().invoke(app, ["model", "tiny", str(model)], env={"COLUMNS": "400"})
    assert r.exit_code == 2 and said[0] in " ".join(r.output.split()), r.output
    assert (temporary / "model.safetensors").read_bytes() == b"half of the other machine's model"
    assert lock_path(model).read_text(encoding="utf-8").strip() == line.strip()  # left as found
    assert (model / "model.safetensors").read_bytes() == b"the weights"


@pytest.mark.parametrize("line", [
    "1 model tiny\n",  # a lock of an earlier version: its pid alone, of this host
    f"1 model tiny\nhost={HERE} pidns={pid_namespace()}\n",
    f"1 model tiny\nhost=a-container-of-this-machine pidns={NOBODYS_PIDNS} boot={boot_id()}\n",  # this kernel's
    f"1 model tiny\nhost={HERE} pidns={pid_namespace()} boot=0b7c1e6a-0000-4000-8000-000000000007\n",  # before a restart
])
def test_a_free_lock_of_this_kernel_is_a_killed_runs_and_its_temporary_goes(tmp_path, line):
    if "boot=\n" in line:
        pytest.skip("this system gives no boot id")
    model, temporary = _model_with_a_writer_elsewhere(tmp_path, line)
    assert LockLine.parse(line).checkable_here
    with claim_outputs("model tiny", {}, folders=[model], listed=[model]), atomic_folder(model) as filling:
        (filling / "model.safetensors").write_bytes(b"the weights again")
    assert not temporary.exists() and not lock_path(model).exists()
    assert (model / "model.safetensors").read_bytes() == b"the weights again"


def test_a_free_lock_of_another_machine_around_an_output_is_refused_naming_it(tmp_path):
    dataset, run = tmp_path / "ds", tmp_path / "run"
    (run / "final").mkdir(parents=True)
    elsewhere = "4 data synth\nhost=node7 pidns=4026531836\n"
    lock_path(dataset).write_text(elsewhere, encoding="utf-8")  # another machine's, writing the folder above
    with pytest.raises(OutputConflict, match=rf"{dataset / 'images'}: the lock of {dataset}, which holds it, names pid 4 "
                                             r"on host node7 \(`bbuvl data synth`\), which this machine cannot check"):
        claim_outputs("data tile", {}, folders=[dataset / "images"])
    lock_path(run / "final").write_text(elsewhere.replace("data synth", "model export"), encoding="utf-8")
    with pytest.raises(OutputConflict, match=rf"{run}: the lock of {run / 'final'}, inside it, names pid 4 on host "
                                             rf"node7 .* delete {lock_path(run / 'final')}, then run this again"):
        claim_outputs("train", {}, folders=[run])
    assert not (dataset / "images").exists() and not lock_path(dataset / "images").exists()
    lock_path(run / "final").unlink()  # the user says that run is gone
    claim_outputs("train", {}, folders=[run]).finish(succeeded=False)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="unshare --pid needs root")
def test_a_free_lock_of_another_pid_namespace_this_process_sees_is_a_killed_runs(tmp_path):
    """A container of this machine whose processes this one sees (as its host does): its flock is this kernel's."""
    with reaped(subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sleep", "60"])) as container:
        for _ in range(100):
            children = Path(f"/proc/{container.pid}/task/{container.pid}/children").read_text().split()
            if children:
                break
            time.sleep(0.05)
        inside = str(os.stat(f"/proc/{children[0]}/ns/pid").st_ino)
        assert inside != pid_namespace()
        line = f"1 model tiny\nhost={HERE} pidns={inside}\n"  # as an earlier version wrote it: no boot id
        model, temporary = _model_with_a_writer_elsewhere(tmp_path, line)
        claim_outputs("model tiny", {}, folders=[model], listed=[model]).finish(succeeded=False)
