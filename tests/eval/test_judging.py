"""`bbuvl eval --choose-thresholds` chooses the verdict thresholds on validation photos and writes them into the
checkpoint that made the predictions; later evaluations (and the predictor) judge with them."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from bbuvl.cli.evaluate import evaluate, viz
from bbuvl.config import Config, dump_config
from bbuvl.data.faults import Faults
from bbuvl.eval.judging import verdict_setup
from bbuvl.infer.output import Manifest, claim_output
from bbuvl.infer.verdict import TILED_THRESHOLDS_FILE, THRESHOLDS_FILE, ChosenThresholds, VerdictThresholds

app = typer.Typer()
app.command("eval")(evaluate)
app.command("viz")(viz)  # two commands, so "eval" is named on the command line
FAULTS = Faults.load()
KIND = next(iter(FAULTS.kinds.values()))
BAD = KIND.label(KIND.faults[0])
OK = KIND.label(next(s for s in KIND.states if s not in KIND.faults))
BOX = [10.0, 10.0, 50.0, 50.0]


@pytest.fixture
def files(tmp_path):
    """4 photos (2 faulty) predicted by a checkpoint folder holding its run config: fault scores 0.9, 0.4 on the
    faulty photos, 0.6 and none on the clean ones."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "bbuvl.yaml").write_text(dump_config(Config()), encoding="utf-8")
    photos = [("a.jpg", BAD, BAD, 0.9), ("b.jpg", BAD, BAD, 0.4), ("c.jpg", OK, BAD, 0.6), ("d.jpg", OK, OK, 0.8)]
    gt, pred = tmp_path / "val.jsonl", tmp_path / "pred.jsonl"
    gt.write_text("".join(json.dumps({"images": [n], "width": 100, "height": 100, "objects": [{"bbox_2d": BOX, "desc": t}]},
                                     ensure_ascii=False) + "\n" for n, t, _, _ in photos), encoding="utf-8")
    claim_output(pred, Manifest(input=str(gt), checkpoint=str(ckpt), mode="head"))
    pred.write_text("".join(json.dumps({"image": n, "width": 100, "height": 100, "raw": None, "error": None,
                                        "objects": [{"bbox_2d": BOX, "label": p, "score": s}]}, ensure_ascii=False) + "\n"
                            for n, _, p, s in photos), encoding="utf-8")
    return gt, pred, ckpt


def run(gt, pred, out, *extra, ok=True):
    result = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out), *extra])
    assert (result.exit_code == 0) == ok, result.output
    return result.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_chosen_thresholds_go_into_the_checkpoint_and_later_evaluations_judge_with_them(files, tmp_path):
    gt, pred, ckpt = files
    output = run(gt, pred, tmp_path / "m1.json", "--choose-thresholds", "--target-recall", "1", "--target-precision", "1")
    chosen = ChosenThresholds.load(ckpt)
    # review: the highest score flagging both faulty photos (0.4); fail: the lowest at which every failed photo is faulty
    assert (chosen.thresholds.review, chosen.thresholds.fail, chosen.recall, chosen.precision) == (0.4, 0.9, 1.0, 1.0)
    assert (chosen.photos, chosen.faulty_photos, chosen.chosen_on) == (4, 2, str(gt))
    metrics = json.loads((tmp_path / "m1.json").read_text(encoding="utf-8"))["faults"]
    assert metrics["thresholds"] == {"review": 0.4, "fail": 0.9}
    assert metrics["photos"]["verdicts"] == {"pass": {"faulty": 0, "clean": 1}, "review": {"faulty": 1, "clean": 1},
                                             "fail": {"faulty": 1, "clean": 0}}
    assert "verdict thresholds" in output and THRESHOLDS_FILE in output

    setup = verdict_setup(pred)
    assert setup.thresholds.whole == VerdictThresholds(0.4, 0.9) and setup.thresholds.tiled is None
    assert THRESHOLDS_FILE in setup.source
    run(gt, pred, tmp_path / "m2.json")
    again = json.loads((tmp_path / "m2.json").read_text(encoding="utf-8"))
    assert again["faults"]["thresholds"] == {"review": 0.4, "fail": 0.9}
    flags = verdict_setup(pred, review=0.1)
    assert flags.thresholds.whole == VerdictThresholds(0.1, 0.9)

    # Choosing again replaces the file only when asked to.
    refused = run(gt, pred, tmp_path / "m3.json", "--choose-thresholds", ok=False)
    assert THRESHOLDS_FILE in refused
    run(gt, pred, tmp_path / "m3.json", "--choose-thresholds", "--target-recall", "0.5", "--overwrite")
    assert ChosenThresholds.load(ckpt).thresholds.review == 0.9


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_photos_predicted_through_tiles_get_thresholds_of_their_own(files, tmp_path):
    gt, pred, ckpt = files
    # Four whole cabinets predicted through tiles beside the four photos predicted in one pass: their faults score
    # lower (0.7 and 0.65 on the faulty ones, 0.3 and 0.2 on the clean ones).
    cabinets = [("e.jpg", BAD, 0.7), ("f.jpg", BAD, 0.65), ("g.jpg", OK, 0.3), ("h.jpg", OK, 0.2)]
    with gt.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps({"images": [n], "width": 100, "height": 100, "objects": [{"bbox_2d": BOX, "desc": t}]},
                                    ensure_ascii=False) + "\n" for n, t, _ in cabinets))
    with pred.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps({"image": n, "width": 100, "height": 100, "raw": None, "error": None, "tiled": True,
                                     "objects": [{"bbox_2d": BOX, "label": BAD, "score": s}]}, ensure_ascii=False) + "\n"
                         for n, _, s in cabinets))
    output = run(gt, pred, tmp_path / "m1.json", "--choose-thresholds", "--target-recall", "1", "--target-precision", "1")
    whole, tiled = ChosenThresholds.load(ckpt), ChosenThresholds.load(ckpt, tiled=True)
    assert whole.thresholds == VerdictThresholds(0.4, 0.9) and (whole.photos, whole.tiled) == (4, False)
    # Chosen on the tiled photos alone: 0.65 flags both faulty cabinets and fails only faulty ones.
    assert tiled.thresholds == VerdictThresholds(0.65, 0.65) and (tiled.photos, tiled.faulty_photos, tiled.tiled) == (4, 2, True)
    assert THRESHOLDS_FILE in output and TILED_THRESHOLDS_FILE in output

    run(gt, pred, tmp_path / "m2.json")  # a later evaluation judges each photo by its own framing's pair
    again = json.loads((tmp_path / "m2.json").read_text(encoding="utf-8"))["faults"]
    assert (again["photos_tiled"], again["thresholds_tiled"]) == (4, {"review": 0.65, "fail": 0.65})
    # The cabinets: both faulty ones fail, both clean ones pass (judged at the one-pass pair, both faulty ones would
    # go to review and neither would fail).
    assert again["photos"]["verdicts"] == {"pass": {"faulty": 0, "clean": 3}, "review": {"faulty": 1, "clean": 1},
                                           "fail": {"faulty": 3, "clean": 0}}
    setup = verdict_setup(pred)
    assert setup.thresholds.tiled == VerdictThresholds(0.65, 0.65) and TILED_THRESHOLDS_FILE in setup.source
    # A threshold given on the command line judges every photo, tiled or not.
    assert verdict_setup(pred, fail=0.95).thresholds.tiled == VerdictThresholds(0.65, 0.95)

    # A damaged or misplaced file is an error naming it, not a silent fallback.
    (ckpt / TILED_THRESHOLDS_FILE).write_text((ckpt / THRESHOLDS_FILE).read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ValueError, match=TILED_THRESHOLDS_FILE):
        ChosenThresholds.load(ckpt, tiled=True)



def test_the_thresholds_chosen_are_said_in_the_digits_they_were_written_with(files, tmp_path):
    # Said at 3 significant digits, review 0.40127 read "review 0.401": given to predict as --verdict-review, the photo
    # that set it passed where eval had sent it to review.
    gt, pred, ckpt = files
    scores = {"0.9": 0.90123, "0.4": 0.40127, "0.6": 0.60041, "0.8": 0.80017}
    text = pred.read_text(encoding="utf-8")
    for was, now in scores.items():
        text = text.replace(f'"score": {was}}}', f'"score": {now}}}')
    pred.write_text(text, encoding="utf-8")
    output = " ".join(run(gt, pred, tmp_path / "m1.json", "--choose-thresholds", "--target-recall", "1",
                          "--target-precision", "1").split())
    assert ChosenThresholds.load(ckpt).thresholds == VerdictThresholds(0.40127, 0.90123)
    assert "review 0.40127, fail 0.90123 (flag" in output

def test_choosing_needs_the_checkpoint_that_made_the_predictions(files, tmp_path):
    gt, pred, ckpt = files
    (pred.with_name(pred.name + ".predict.json")).unlink()
    output = run(gt, pred, tmp_path / "m.json", "--choose-thresholds", ok=False)
    assert "--choose-thresholds writes into the checkpoint" in output
    assert not (ckpt / THRESHOLDS_FILE).exists()
    # A file with no manifest may be an older bbu-vl's predict's, from before manifests: it is not called a stranger's.
    with pytest.raises(ValueError, match="no manifest beside it names one .*a bbu-vl older than manifests"):
        verdict_setup(pred, need_checkpoint=True)


def test_thresholds_out_of_order_on_the_command_line_are_refused(files, tmp_path):
    gt, pred, _ = files
    output = run(gt, pred, tmp_path / "m.json", "--verdict-review", "0.8", "--verdict-fail", "0.3", ok=False)
    assert "must not exceed" in output


def test_the_faults_come_from_the_checkpoints_hierarchy_unless_one_is_given(files, tmp_path):
    from bbuvl.config import load_config
    from bbuvl.data.labels import DEFAULT_HIERARCHY

    gt, pred, ckpt = files
    raw = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    sound = OK.rsplit("/", 1)[1]
    cat, attr = KIND.kind.split("/")[:2] if KIND.kind.count("/") else (KIND.kind, None)
    states = raw["categories"][cat]["attributes"][attr]["states"] if attr else None
    if states is not None:  # the sound state of the first judged kind becomes a fault in the checkpoint's hierarchy
        states[sound] = {"gloss": "now a fault", "fault": True}
    else:
        raw["categories"][cat]["attributes"][sound]["fault"] = True
    own = tmp_path / "own_hierarchy.json"
    own.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    cfg = load_config(ckpt / "bbuvl.yaml", [f"data.hierarchy={own}"])
    (ckpt / "bbuvl.yaml").write_text(dump_config(cfg), encoding="utf-8")
    assert verdict_setup(pred).faults.is_fault(OK)
    assert not verdict_setup(pred, hierarchy=DEFAULT_HIERARCHY).faults.is_fault(OK)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_thresholds_chosen_on_one_modes_predictions_judge_that_mode_alone(files, tmp_path):
    # Chosen on the head's scores, they judged generate mode's too, whose scores are on another scale.
    gt, pred, ckpt = files
    run(gt, pred, tmp_path / "m1.json", "--choose-thresholds", "--target-recall", "1", "--target-precision", "1")
    chosen = ChosenThresholds.load(ckpt)
    assert chosen.mode == "head" and json.loads((ckpt / THRESHOLDS_FILE).read_text(encoding="utf-8"))["mode"] == "head"
    generated = tmp_path / "generated.jsonl"
    claim_output(generated, Manifest(input=str(gt), checkpoint=str(ckpt), mode="generate"))
    generated.write_text(pred.read_text(encoding="utf-8"), encoding="utf-8")
    setup = verdict_setup(generated)
    assert setup.thresholds.whole == VerdictThresholds(Config().inference.verdict_review, Config().inference.verdict_fail)
    assert "was chosen on head mode's predictions, not generate mode's" in setup.source, setup.source
    assert verdict_setup(pred).thresholds.whole == VerdictThresholds(0.4, 0.9)
    # A file written before modes were recorded judges every mode, as it did.
    body = json.loads((ckpt / THRESHOLDS_FILE).read_text(encoding="utf-8"))
    del body["mode"]
    (ckpt / THRESHOLDS_FILE).write_text(json.dumps(body), encoding="utf-8")
    assert verdict_setup(generated).thresholds.whole == VerdictThresholds(0.4, 0.9)
