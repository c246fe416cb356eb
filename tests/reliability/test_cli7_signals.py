"""A pipeline stops `bbuvl` with SIGTERM (Airflow, CI, systemd, `timeout`) as a person does with Ctrl-C: either ends
the command with one line, no traceback, the shell's status for the signal (143, 130), and what it began removed."""

import signal
import subprocess
import sys
import time

import pytest

from tests.children import reaped

CHILD = "import sys, bbuvl.entry; sys.argv = ['bbuvl', *sys.argv[1:]]; bbuvl.entry.main()"


def long_synth(out, stdout=subprocess.PIPE) -> subprocess.Popen:
    """`bbuvl data synth` of 100,000 tiny photos into `out`, as a child whose stderr (text) the test reads."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, "data", "synth", str(out), "--scene", "shapes", "--n-train", "100000",
         "--n-val", "1", "--size", "96x96"],
        stdout=stdout, stderr=subprocess.PIPE, text=True,
        # Ctrl-C reaches the command even where the test runner's shell ignores SIGINT in background jobs
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("signum, status, said", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                   (signal.SIGINT, 130, "interrupted (Ctrl-C)")])
def test_a_signal_mid_command_ends_it_with_one_line_its_status_and_its_new_folder_removed(tmp_path, signum, status, said):
    out = tmp_path / "synth"
    with reaped(long_synth(out)) as child:
        deadline = time.monotonic() + 60
        while not (out / "images").is_dir() or not any((out / "images").iterdir()):
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.02)
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    assert child.returncode == status, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and said in lines[0], err  # a pipeline's log says why it stopped, once
    # A folder the command made and did not finish is gone, as after any failed run: no half of a dataset to train on.
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))[:10]
