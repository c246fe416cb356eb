"""`fewshot eval`'s best threshold is chosen on the queries it is scored on: its numbers are said to be in-sample."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_best_threshold_is_said_to_be_chosen_on_the_queries_it_is_scored_on(part_crops, tmp_path):
    said = {}
    for thresholds in ("0.3,0.6,0.9", "0.6"):
        result = CliRunner().invoke(app, [str(a) for a in (
            "eval", "--support", part_crops.support, "--query", part_crops.query, "--backbone", "pixels:8",
            "--shots", "2", "--thresholds", thresholds, "--out", tmp_path / thresholds, "--no-cache")])
        assert result.exit_code == 0, result.output + repr(result.exception)
        said[thresholds] = " ".join(result.output.split())
    assert "best macro F1" in said["0.3,0.6,0.9"]
    assert "chosen on these queries, so its numbers are an upper bound for new photos" in said["0.3,0.6,0.9"]
    assert "upper bound" not in said["0.6"]  # one threshold, given: nothing was chosen
