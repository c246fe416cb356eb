"""`bbuvl predict` reads its share of a sharded run from RANK and WORLD_SIZE, as torchrun sets them. Set by hand they
were used unchecked: WORLD_SIZE=0 was a ZeroDivisionError, WORLD_SIZE=abc an error naming no variable after the model
loaded, and a rank past the world predicted nothing and said done. And a killed sharded run's part files, resumed in
one process, were predicted again and left beside the output."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from tests.reliability.test_a_resume_never_mixes_two_runs import refused

pytestmark = pytest.mark.usefixtures("one_thread")


def predict(checkpoint, data, out, **env: str):
    return CliRunner().invoke(app, [str(a) for a in ("predict", "-c", checkpoint, "-i", data / "val.jsonl", "-o", out,
                                                     "--mode", "head", "--device", "cpu")],
                              env={"COLUMNS": "400", "RANK": None, "WORLD_SIZE": None, **env})


@pytest.mark.parametrize("rank, world", [("0", "0"), ("0", "abc"), ("2", "2"), ("-1", "2"), ("", "2")])
def test_a_rank_that_is_no_rank_of_the_world_is_refused_naming_both(trained_checkpoint, small_dataset, tmp_path, rank,
                                                                     world):
    out = tmp_path / "p.jsonl"
    text = refused(predict(trained_checkpoint, small_dataset, out, RANK=rank, WORLD_SIZE=world),
                   f"RANK='{rank}' WORLD_SIZE='{world}' in the environment are no rank of a world")
    assert "unset them to predict in one process" in text
    assert not out.exists() and not list(tmp_path.glob("p.jsonl.rank*"))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_killed_sharded_runs_part_is_taken_in_by_one_process_and_removed(trained_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "p.jsonl"
    first = predict(trained_checkpoint, small_dataset, out, RANK="1", WORLD_SIZE="2")  # rank 0 never ran
    assert first.exit_code == 0, first.output
    part = tmp_path / "p.jsonl.rank1-of-2"
    done = part.read_text(encoding="utf-8").splitlines()
    assert len(done) == 1

    again = predict(trained_checkpoint, small_dataset, out)
    assert again.exit_code == 0, again.output
    assert "1 predicted" in again.output and "1 already in" in again.output, again.output
    lines = out.read_text(encoding="utf-8").splitlines()
    photos = [json.loads(row)["images"][0] for row in (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(json.loads(line)["image"] for line in lines) == sorted(photos) and len(photos) == 2
    assert done[0] in lines  # the part's line itself, not predicted again
    assert not part.exists()
