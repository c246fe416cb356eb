"""Faults live only in the hierarchy file: a fault state added there is scored by `bbuvl eval` and judged by the
verdict, with no code change; without it the same label is a sound part."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from bbuvl.cli.evaluate import evaluate, viz
from bbuvl.data.faults import Faults
from bbuvl.data.labels import DEFAULT_HIERARCHY
from bbuvl.infer.verdict import VerdictThresholds, judge

app = typer.Typer()
app.command("eval")(evaluate)
app.command("viz")(viz)  # two commands, so "eval" is named on the command line
NEW_STATE = "松动"  # "loose": a state the shipped hierarchy does not have, added by the user below


def user_hierarchy(tmp_path) -> tuple[str, str]:
    """A copy of the shipped hierarchy with a new fault state on the first attribute that has states; that label and
    the attribute's first (sound) state's label."""
    raw = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    cat, attr, states = next((c, a, spec["states"]) for c, cspec in raw["categories"].items()
                             for a, spec in cspec.get("attributes", {}).items() if spec.get("states"))
    sound = next(s for s, v in states.items() if not isinstance(v, dict))
    states[NEW_STATE] = {"gloss": "loose", "fault": True}
    path = tmp_path / "hierarchy.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return str(path), f"{cat}/{attr}/{NEW_STATE}", f"{cat}/{attr}/{sound}"


def write_eval_files(tmp_path, loose: str, sound: str):
    box = [10.0, 10.0, 50.0, 50.0]
    gt = tmp_path / "val.jsonl"
    pred = tmp_path / "pred.jsonl"
    photos = [("a.jpg", loose), ("b.jpg", sound)]
    gt.write_text("".join(json.dumps({"images": [name], "width": 100, "height": 100,
                                      "objects": [{"bbox_2d": box, "desc": label}]}, ensure_ascii=False) + "\n"
                          for name, label in photos), encoding="utf-8")
    pred.write_text("".join(json.dumps({"image": name, "width": 100, "height": 100, "raw": None, "error": None,
                                        "objects": [{"bbox_2d": box, "label": label, "score": 0.9}]}, ensure_ascii=False) + "\n"
                            for name, label in photos), encoding="utf-8")
    return gt, pred


def run_eval(gt, pred, out, *extra):
    result = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text(encoding="utf-8"))["faults"], result.output


def test_a_fault_state_added_to_the_hierarchy_is_scored_and_judged_with_no_code_change(tmp_path):
    hierarchy, loose, sound = user_hierarchy(tmp_path)
    gt, pred = write_eval_files(tmp_path, loose, sound)

    faults, output = run_eval(gt, pred, tmp_path / "with.json", "--hierarchy", hierarchy)
    assert loose in faults["labels"] and set(Faults.load().labels) < set(faults["labels"])
    assert (faults["objects"]["gt"], faults["objects"]["at_fail"]["found"], faults["objects"]["at_fail"]["recall"]) == (1, 1, 1.0)
    assert faults["photos"]["verdicts"]["fail"] == {"faulty": 1, "clean": 0}
    assert faults["photos"]["verdicts"]["pass"] == {"faulty": 0, "clean": 1}
    assert faults["photos"]["model"]["failed"]["accuracy"] == 1.0 and faults["photos"]["model"]["roc_auc"] == 1.0
    kind = loose.rsplit("/", 1)[0]
    states = next(s for s in faults["states"] if s["kind"] == kind)
    assert NEW_STATE in states["states"] and states["accuracy"] == 1.0
    assert "Photo verdict" in output and "always fail" in output

    shipped, _ = run_eval(gt, pred, tmp_path / "without.json")
    assert loose not in shipped["labels"] and shipped["objects"]["gt"] == 0
    # The shipped hierarchy cannot read the new state of a judged part: no fault, and no pass either (infer/verdict.py)
    assert shipped["photos"]["verdicts"]["pass"] == {"faulty": 0, "clean": 1}
    assert shipped["photos"]["verdicts"]["review"] == {"faulty": 0, "clean": 1}

    t = VerdictThresholds(0.25, 0.5)
    assert judge([([10, 10, 50, 50], loose, 0.9)], Faults.load(hierarchy), t).verdict == "fail"
    assert judge([([10, 10, 50, 50], loose, 0.9)], Faults.load(), t).verdict == "review"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_hierarchy_marking_no_fault_is_used_not_replaced_by_the_shipped_one(tmp_path):
    # A hierarchy marking no fault is falsy: `faults or shipped` once judged these photos by the shipped faults.
    raw = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    for category in raw["categories"].values():
        for spec in category.get("attributes", {}).values():
            spec.pop("fault", None)
            for state, value in spec.get("states", {}).items():
                if isinstance(value, dict):
                    spec["states"][state] = value["gloss"]
    hierarchy = tmp_path / "no_faults.json"
    hierarchy.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    shipped_fault = sorted(Faults.load().labels)[0]
    sound = next(k.label(s) for k in Faults.load().kinds.values() for s in k.states if s not in k.faults)
    gt, pred = write_eval_files(tmp_path, shipped_fault, sound)

    faults, output = run_eval(gt, pred, tmp_path / "m.json", "--hierarchy", str(hierarchy))
    assert faults["labels"] == [] and faults["objects"]["gt"] == 0
    assert faults["photos"]["verdicts"]["pass"] == {"faulty": 0, "clean": 2}
    assert "the hierarchy marks no fault, so every photo passes" in output
