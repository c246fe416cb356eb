"""Every bench script still imports what it uses and answers `--help`: code moves under the benches (a function
renamed, a module split), and a bench is run by hand months later. The helper modules the benches import
(child_runs.py, gpu_rows.py, ...) have no command line and must import cleanly all the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_runner import run_bench_in_process

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_every_bench_imports_and_its_help_runs(script):
    code, out, err = run_bench_in_process(script, ["--help"])
    assert code == 0, err[-3000:]
    if "argparse" in script.read_text(encoding="utf-8") and "__main__" in script.read_text(encoding="utf-8"):
        assert out.startswith("usage: "), (out[:500], err[-500:])


@pytest.mark.parametrize("args, message", [
    (["--max-batch", "1"], "--max-batch must be at least 2, got 1"),  # one server, compared with itself
    (["--rounds", "0"], "--rounds must be at least 1, got 0"),  # seconds / rounds
    (["--seconds", "0"], "--seconds must be above 0, got 0"),
    (["--photo", "no-such.png"], "--photo no-such.png: no such file"),
])
def test_serve_load_refuses_options_it_cannot_measure_before_building_anything(args, message):
    code, out, err = run_bench_in_process(BENCH / "serve_load.py", args)
    assert code == 2 and message in err and "Traceback" not in err


def test_train_throughput_refuses_a_single_step_which_only_warms_up():
    code, out, err = run_bench_in_process(BENCH / "train_throughput.py", ["--steps", "1"])
    assert code == 2 and "--steps must be at least 2" in err and "Traceback" not in err


@pytest.mark.parametrize("script, args, message", [
    ("train_processes.py", ["--stages", "shape"], "--stages: shape is not one of shapes, bbu"),
    ("train_processes.py", ["--procs", "1"], "--procs at least 2, got 40, 2 and 1"),
    ("sample_cache.py", ["--stages", "bbu,b"], "--stages: b is not one of shapes, bbu"),
    ("sample_cache.py", ["--cache-mb", "0"], "--cache-mb above 0, got 2, 2 and 0"),
])
def test_the_process_benches_refuse_what_they_cannot_compare_before_rendering(script, args, message):
    code, out, err = run_bench_in_process(BENCH / script, args)
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in err


def test_predict_memory_refuses_a_warm_up_as_long_as_the_run_before_building_a_checkpoint():
    code, out, err = run_bench_in_process(BENCH / "predict_memory.py", ["--n", "50"])  # the default warm-up is 100
    assert code == 2 and "--warmup must be below --n" in err and "Traceback" not in err
