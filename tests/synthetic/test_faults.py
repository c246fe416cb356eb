"""The fault rate of the synthetic scene: how many photos hold a fault, and how many of their parts are wrong."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.synthetic.camera import _FAULT_SALT, render_scene
from bbuvl.synthetic.scene import FAULT_LABELS, FaultRate

SIZE = (224, 168)


def _faults(objects) -> int:
    return sum(o.desc in FAULT_LABELS for o in objects)


def _states(objects) -> int:  # parts that have a state: connection points and baffles
    return sum("连接" in o.desc or o.desc.startswith("挡风板") for o in objects)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_holds_a_fault_exactly_when_its_seeded_coin_says_so_and_the_share_is_the_rate():
    rate = FaultRate(photos=0.3, parts=0.3)
    seeds = range(100)
    coins = [random.Random(s ^ _FAULT_SALT).random() < rate.photos for s in seeds]
    faulty = [_faults(render_scene(s, SIZE, faults=rate)[1]) > 0 for s in seeds]
    assert faulty == coins
    assert 0.2 <= sum(faulty) / len(faulty) <= 0.4


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_parts_of_a_faulty_photo_are_wrong_at_the_part_rate():
    rate = FaultRate(photos=1.0, parts=0.3)
    wrong = states = 0
    for s in range(60):
        objects = render_scene(s, SIZE, faults=rate)[1]
        assert _faults(objects) > 0
        wrong, states = wrong + _faults(objects), states + _states(objects)
    assert 0.22 <= wrong / states <= 0.4


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_rate_zero_draws_no_fault_and_rate_one_draws_every_part_wrong():
    for s in range(20):
        assert _faults(render_scene(s, SIZE, faults=FaultRate(0.0))[1]) == 0
        objects = render_scene(s, SIZE, faults=FaultRate(1.0, 1.0))[1]
        assert _faults(objects) == _states(objects) > 0


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_faulty_closeup_shows_its_fault_and_a_passing_one_shows_none():
    rate = FaultRate(photos=0.5)
    for s in range(24):
        objects = render_scene(s, (448, 336), framing="closeup", faults=rate)[1]
        assert (_faults(objects) > 0) == (random.Random(s ^ _FAULT_SALT).random() < rate.photos)


def test_a_share_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="parts must be a share between 0 and 1"):
        FaultRate(0.3, parts=1.5)


def test_synth_command_takes_a_fault_rate_and_prints_the_faults_of_each_split(tmp_path):
    out = tmp_path / "data"
    result = CliRunner().invoke(app, ["data", "synth", str(out), "--n-train", "10", "--n-val", "10", "--size", "224x168",
                                      "--fault-rate", "0.3", "--part-fault-rate", "0.5", "--teachers", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fault_rate"] == {"photos": 0.3, "parts": 0.5}
    val = summary["faults"]["val"]
    assert f"val: {val['faulty_photos']} of 10 photos hold a fault; {val['faults']} faulty part" in result.output
    rows = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert val["faults"] == sum(o["desc"] in FAULT_LABELS for r in rows for o in r["objects"])
