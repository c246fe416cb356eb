"""Every predictions line carries the photo's verdict, judged with the faults of the run's hierarchy and the
thresholds of the config, overridden by the checkpoint's verdict_thresholds.json and then by the options."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from bbuvl.data.faults import Faults
from bbuvl.data.labels import DEFAULT_HIERARCHY
from bbuvl.infer.predictor import Predictor
from bbuvl.infer.verdict import THRESHOLDS_FILE, ChosenThresholds, VerdictThresholds, judge


def every_label_a_fault(tmp_path) -> Faults:
    """The shipped hierarchy with every state and every attribute without states marked a fault."""
    raw = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    for spec in raw["categories"].values():
        for attr in spec.get("attributes", {}).values():
            if attr.get("states"):
                attr["states"] = {s: {"gloss": str(g if isinstance(g, str) else g["gloss"]), "fault": True}
                                  for s, g in attr["states"].items()}
            else:
                attr["fault"] = True
    path = tmp_path / "all_faults.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return Faults.load(path)


def test_each_line_carries_the_verdict_of_its_objects(predictor, photos, tmp_path):
    lines = predictor.predict_lines(photos + [str(tmp_path / "missing.jpg")], "head")
    thresholds = predictor.options().thresholds()
    assert (thresholds.review, thresholds.fail) == (predictor.cfg.inference.verdict_review, predictor.cfg.inference.verdict_fail)
    for line in lines[:-1]:
        expected = judge([(o["bbox_2d"], o["label"], o["score"]) for o in line["objects"]], predictor.faults, thresholds)
        assert line["verdict"]["verdict"] == expected.verdict and line["verdict"]["score"] == pytest.approx(expected.score, abs=1e-5)
    assert lines[-1]["error"] and lines[-1]["verdict"]["verdict"] == "review"  # nothing seen is not "nothing wrong"
    json.dumps(lines, ensure_ascii=False)


@pytest.mark.parametrize("label, verdict", [("螺丝连接点/BBU安装螺丝/连接错", "review"), ("挡风版/未安装", "review"),
                                            ("螺丝连接点/BBU安装螺丝/连接错误", "fail"), ("bbu基带处理单元/华", "pass")])
def test_an_answer_naming_a_fault_the_hierarchy_cannot_read_sends_its_photo_to_review(predictor, photos, label, verdict):
    # Before: an unconstrained answer (--no-constrained, a server's) writing '.../连接错' was read as no fault, and
    # the photo passed without a word. The answer goes through generate mode's own reading of an answer.
    import torch

    from bbuvl.infer.modes.generate import read_answers

    raw = json.dumps([{"bbox_2d": [10, 10, 60, 60], "label": label}], ensure_ascii=False)
    ids = predictor.tokenizer(raw, add_special_tokens=False)["input_ids"]
    [result] = read_answers(predictor, [predictor.prepare(photos[0])], torch.tensor([ids]), torch.zeros(1, len(ids)))
    assert [d.label for d in result.objects] == [label]
    judged = predictor.verdict(result)
    assert judged.verdict == verdict, judged
    assert ("none the hierarchy can judge" in (judged.reason or "")) == (verdict == "review")


def test_a_photo_fails_on_any_fault_the_hierarchy_marks_at_the_given_thresholds(predictor, photos, tmp_path):
    before, every = predictor.faults, every_label_a_fault(tmp_path)
    try:
        predictor.faults = every
        lines = predictor.predict_lines(photos, "head", verdict_review=0.0, verdict_fail=0.0)
    finally:
        predictor.faults = before
    assert any(line["objects"] for line in lines)
    for line in lines:
        judged = [o for o in line["objects"] if every.is_fault(o["label"])]  # all but the leaf categories
        assert line["verdict"]["verdict"] == ("fail" if judged else "pass")
        assert len(line["verdict"]["faults"]) == len(judged)


def test_the_checkpoints_chosen_thresholds_replace_the_configs(trained_checkpoint, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    ChosenThresholds(VerdictThresholds(0.15, 0.85), 0.8, 0.9, 0.8, 0.9, 10, 4, [], "val.jsonl").save(ckpt)
    p = Predictor.load(ckpt, device="cpu")
    assert p.options().thresholds() == VerdictThresholds(0.15, 0.85)
    assert p.options(verdict_fail=0.5).thresholds() == VerdictThresholds(0.15, 0.5)
    with pytest.raises(ValueError, match="must not exceed"):
        p.options(verdict_review=0.9)
    (ckpt / THRESHOLDS_FILE).write_text('{"tool": "bbuvl eval --choose-thresholds", "review": 0.5}', encoding="utf-8")
    with pytest.raises(ValueError, match=str(ckpt / THRESHOLDS_FILE)):
        Predictor.load(ckpt, device="cpu")


def test_the_predictor_judges_each_mode_by_the_thresholds_chosen_in_it(trained_checkpoint, photos, tmp_path):
    # Chosen on the head's scores, they judged every mode's photos, generate mode's among them.
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    ChosenThresholds(VerdictThresholds(0.0, 0.0), 0.8, 0.9, 0.8, 0.9, 10, 4, [], "val.jsonl", mode="head").save(ckpt)
    p = Predictor.load(ckpt, device="cpu")
    p.faults = every_label_a_fault(tmp_path)
    config = VerdictThresholds(p.cfg.inference.verdict_review, p.cfg.inference.verdict_fail)
    assert p.options("head").thresholds() == VerdictThresholds(0.0, 0.0)
    assert p.options("name").thresholds() == config != VerdictThresholds(0.0, 0.0)
    assert p.options().thresholds() == VerdictThresholds(0.0, 0.0)  # no mode named: as before modes were recorded
    for line in p.predict_lines(photos, "name"):
        found = [(o["bbox_2d"], o["label"], o["score"]) for o in line["objects"]]
        assert line["verdict"]["verdict"] == judge(found, p.faults, config).verdict
    head = p.predict_lines(photos, "head")
    assert any(line["objects"] for line in head)
    assert all(line["verdict"]["verdict"] == ("fail" if line["objects"] else "pass") for line in head)


def test_the_predictor_judges_with_the_hierarchy_its_run_config_names(trained_checkpoint, tmp_path):
    from bbuvl.config import dump_config, load_config

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    every = every_label_a_fault(tmp_path)
    cfg = load_config(ckpt / "bbuvl.yaml", [f"data.hierarchy={every.hierarchy.source}"])
    (ckpt / "bbuvl.yaml").write_text(dump_config(cfg), encoding="utf-8")
    assert Predictor.load(ckpt, device="cpu").faults.labels == every.labels != Faults.load().labels


def test_a_photo_predicted_through_tiles_is_judged_by_the_tiled_thresholds(predictor, photos, tmp_path):
    before, every = predictor.faults, every_label_a_fault(tmp_path)
    strict = {"verdict_review": 1.0, "verdict_fail": 1.0, "verdict_review_tiled": 0.0, "verdict_fail_tiled": 0.0}
    try:
        predictor.faults = every
        tiled = predictor.predict_lines(photos, "head", tiles="2x2", **strict)
        whole = predictor.predict_lines(photos, "head", **strict)
    finally:
        predictor.faults = before
    assert any(line["objects"] for line in tiled)
    for line in tiled:
        judged = [o for o in line["objects"] if every.is_fault(o["label"])]
        assert line["tiled"] is True and line["verdict"]["verdict"] == ("fail" if judged else "pass")
    for line in whole:  # scores below 1.0: nothing reaches the one-pass thresholds
        assert "tiled" not in line and line["verdict"]["verdict"] == "pass"


def test_the_checkpoints_tiled_thresholds_judge_tiled_photos_alone(trained_checkpoint, tmp_path):
    from bbuvl.infer.verdict import TILED_THRESHOLDS_FILE

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    ChosenThresholds(VerdictThresholds(0.3, 0.6), 0.8, 0.8, 0.8, 0.8, 8, 3, [], "wide.jsonl", tiled=True).save(ckpt)
    assert (ckpt / TILED_THRESHOLDS_FILE).is_file() and not (ckpt / THRESHOLDS_FILE).exists()
    p = Predictor.load(ckpt, device="cpu")
    own = VerdictThresholds(p.cfg.inference.verdict_review, p.cfg.inference.verdict_fail)
    assert p.options().thresholds() == own and p.options().thresholds(tiled=True) == VerdictThresholds(0.3, 0.6)
    assert p.options().framed().tiled == VerdictThresholds(0.3, 0.6)



def test_a_chosen_pair_beside_a_run_config_setting_one_tiled_threshold_judges_each_framing(trained_checkpoint, photos,
                                                                                         tmp_path):
    # `verdict_review_tiled: 0.3` alone (its fail the config's 0.5) with a one-pass pair chosen at fail 0.2: the tiled
    # fail fell back to the chosen 0.2, a pair out of order, and every predict, serve and eval of it stopped on it.
    from typer.testing import CliRunner

    from bbuvl.cli import app as cli
    from bbuvl.config import dump_config, load_config
    from bbuvl.eval.judging import verdict_setup
    from bbuvl.infer.verdict import FramedThresholds, checkpoint_verdict

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    cfg = load_config(ckpt / "bbuvl.yaml", ["inference.verdict_review_tiled=0.3"])
    assert (cfg.inference.verdict_fail, cfg.inference.verdict_fail_tiled) == (0.5, None)
    (ckpt / "bbuvl.yaml").write_text(dump_config(cfg), encoding="utf-8")
    ChosenThresholds(VerdictThresholds(0.1, 0.2), 0.8, 0.9, 0.8, 0.9, 10, 4, sorted(Faults.load().labels),
                     "val.jsonl").save(ckpt)
    judged = FramedThresholds(VerdictThresholds(0.1, 0.2), VerdictThresholds(0.3, 0.5))
    assert checkpoint_verdict(ckpt)[0] == judged
    assert Predictor.load(ckpt, device="cpu").options("head").framed() == judged
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos[0], folder)
    out = tmp_path / "pred.jsonl"
    r = CliRunner().invoke(cli, ["predict", "-c", str(ckpt), "-i", str(folder), "-o", str(out), "--mode", "head",
                                 "--device", "cpu", "--tiles", "2x2"], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    assert "the 1 photos predicted through tiles or zoom: review ≥ 0.3, fail ≥ 0.5" in r.output
    assert verdict_setup(out).thresholds == judged


def test_the_score_threshold_keeps_a_box_whose_written_score_is_at_it(trained_checkpoint, photos, tmp_path):
    # The threshold compared the unrounded score: a fault scoring 0.000386, written 0.00039, was dropped at
    # --score-threshold 0.00039, and its photo passed where it failed at --verdict-fail 0.00039 without the threshold.
    from safetensors.torch import load_file, save_file

    from bbuvl.infer.verdict import SCORE_DIGITS
    from bbuvl.model.identity import record_digests

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    # A 2-step head scores every part about 4e-6, written 0: its objectness raised by e^8 puts them at 5 decimals
    state = load_file(ckpt / "detection_head.safetensors")
    bias = next(k for k in state if k.endswith("objectness_head.bias"))
    state[bias] = state[bias] + 8.0
    save_file(state, ckpt / "detection_head.safetensors", metadata={"format": "pt"})
    record_digests(ckpt)
    p = Predictor.load(ckpt, device="cpu")
    p.faults = every_label_a_fault(tmp_path)
    # each photo alone, as it is predicted below: a batch of another size moves a score in its last bits
    raw = [(photo, d.score) for photo in photos for d in p.predict([photo], "head")[0].objects]
    photo, score = next((photo, s) for photo, s in raw if round(s, SCORE_DIGITS) > s)  # one written above its score
    written = round(score, SCORE_DIGITS)
    every = p.predict_lines([photo], "head", score_threshold=0.0)[0]["objects"]
    line = p.predict_lines([photo], "head", score_threshold=written, verdict_review=written, verdict_fail=written)[0]
    assert line["objects"] == [o for o in every if o["score"] >= written] and written in [o["score"] for o in every]
    assert line["verdict"]["verdict"] == "fail" and line["verdict"]["score"] >= written


def test_a_score_threshold_above_the_review_threshold_is_said_to_hide_faults_from_the_verdict(trained_checkpoint,
                                                                                               tmp_path):
    from typer.testing import CliRunner

    from bbuvl.cli import app
    from bbuvl.infer.verdict import hidden_below_score_threshold

    (tmp_path / "photos").mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(tmp_path / "photos" / "a.png")
    said = {}
    for threshold in ("0.3", "0.9"):
        result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(tmp_path / "photos"),
                                          "-o", str(tmp_path / f"{threshold}.jsonl"), "--mode", "head", "--device",
                                          "cpu", "--score-threshold", threshold, "--verdict-review", "0.3",
                                          "--verdict-fail", "0.5"], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        said[threshold] = " ".join(result.output.split())
    assert "score threshold" not in said["0.3"] and "score-threshold" not in said["0.3"], said["0.3"]
    assert ("note: --score-threshold (inference.score_threshold) 0.9 is above the verdict's review threshold 0.3: a "
            "fault scoring between the two is dropped before its photo is judged") in said["0.9"], said["0.9"]
    # The lowest review threshold of the framings in use counts: tiled photos reviewed from 0.2 hide more
    pairs = [VerdictThresholds(0.4, 0.6), VerdictThresholds(0.2, 0.5)]
    assert "review threshold 0.2:" in hidden_below_score_threshold(0.3, pairs)
    assert hidden_below_score_threshold(0.2, pairs) is None and hidden_below_score_threshold(0.0, []) is None


def test_predict_says_when_the_checkpoints_thresholds_were_chosen_in_another_mode(trained_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from bbuvl.cli import app

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    ChosenThresholds(VerdictThresholds(0.15, 0.85), 0.8, 0.9, 0.8, 0.9, 10, 4, [], "val.jsonl", mode="head").save(ckpt)
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(tmp_path / "photos" / "a.png")
    said = {}
    for mode in ("head", "name"):
        result = CliRunner().invoke(app, ["predict", "-c", str(ckpt), "-i", str(tmp_path / "photos"), "-o",
                                          str(tmp_path / f"{mode}.jsonl"), "--mode", mode, "--device", "cpu"],
                                    env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        said[mode] = " ".join(result.output.split())
    assert "review at a fault score ≥ 0.15, fail ≥ 0.85" in said["head"] and "note" not in said["head"]
    assert "review at a fault score ≥ 0.25, fail ≥ 0.5" in said["name"], said["name"]
    assert (f"note: {THRESHOLDS_FILE} was chosen on head mode's predictions, not name mode's, whose scores are on "
            "another scale") in said["name"], said["name"]


def test_thresholds_chosen_for_other_faults_judge_no_photo_in_predict_and_say_so(trained_checkpoint, tmp_path):
    """A pair chosen when the hierarchy marked other faults (the file edited since) was chosen on other scores: predict
    and serve judged every photo with it, where eval already passed it over for the run config's."""
    from typer.testing import CliRunner

    from bbuvl.cli import app

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    judged = sorted(Faults.load(Predictor.load(ckpt, device="cpu").cfg.data.hierarchy).labels)
    other = judged[1:]  # one fault fewer than the hierarchy marks now
    ChosenThresholds(VerdictThresholds(0.15, 0.85), 0.8, 0.9, 0.8, 0.9, 10, 4, other, "val.jsonl", mode="head").save(ckpt)
    p = Predictor.load(ckpt, device="cpu")
    assert p.options("head").thresholds() == VerdictThresholds(0.25, 0.5)  # the run config's, not 0.15 / 0.85
    [note] = p.threshold_notes("head")
    assert judged[0] in note and f"{THRESHOLDS_FILE} was chosen when the hierarchy marked other faults" in note
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(tmp_path / "photos" / "a.png")
    result = CliRunner().invoke(app, ["predict", "-c", str(ckpt), "-i", str(tmp_path / "photos"), "-o",
                                      str(tmp_path / "head.jsonl"), "--mode", "head", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    said = "".join(result.output.split())
    assert "reviewatafaultscore≥0.25,fail≥0.5" in said
    assert f"note:{THRESHOLDS_FILE}waschosenwhenthehierarchymarkedotherfaults" in said
    # Chosen for the faults judged now, the pair judges as before
    ChosenThresholds(VerdictThresholds(0.15, 0.85), 0.8, 0.9, 0.8, 0.9, 10, 4, judged, "val.jsonl", mode="head").save(ckpt)
    assert Predictor.load(ckpt, device="cpu").options("head").thresholds() == VerdictThresholds(0.15, 0.85)


def test_thresholds_copied_from_another_model_judge_no_photo_and_say_so(trained_checkpoint, tmp_path):
    """A verdict_thresholds.json copied into another checkpoint (or kept while the model was trained again in place)
    was chosen on another model's scores: predict, serve and eval judge by the run config's instead, and say why."""
    import torch
    from safetensors.torch import load_file, save_file

    from bbuvl.infer.verdict import checkpoint_verdict
    from bbuvl.model.checkpoint import HEAD_FILE
    from bbuvl.model.identity import record_digests, trained_identity

    chosen_for, other = tmp_path / "a", tmp_path / "b"
    shutil.copytree(trained_checkpoint, chosen_for)
    shutil.copytree(trained_checkpoint, other)
    head = {k: v + 0.01 if v.is_floating_point() else v for k, v in load_file(other / HEAD_FILE).items()}
    save_file(head, other / HEAD_FILE, metadata={"format": "pt"})
    record_digests(other)  # as a save of another run records it
    assert None is not trained_identity(chosen_for) != trained_identity(other)
    ChosenThresholds(VerdictThresholds(0.15, 0.85), 0.8, 0.9, 0.8, 0.9, 10, 4, [], "val.jsonl").save(chosen_for)
    assert Predictor.load(chosen_for, device="cpu").options("head").thresholds() == VerdictThresholds(0.15, 0.85)
    shutil.copy2(chosen_for / THRESHOLDS_FILE, other / THRESHOLDS_FILE)
    p = Predictor.load(other, device="cpu")
    assert p.options("head").thresholds() == VerdictThresholds(0.25, 0.5)  # the run config's
    [note] = p.threshold_notes("head")
    assert f"{THRESHOLDS_FILE} was chosen for another model" in note, note
    framed, _, source = checkpoint_verdict(other, "head")  # what eval judges by
    assert framed.whole == VerdictThresholds(0.25, 0.5) and "chosen for another model" in source, source
    # Another run's weights copied over the ones the thresholds were chosen for, the record left as it was: the
    # files are the other model's, and so is what the thresholds were chosen on
    copied = tmp_path / "copied"
    shutil.copytree(chosen_for, copied)
    shutil.copy2(other / HEAD_FILE, copied / HEAD_FILE)
    p = Predictor.load(copied, device="cpu")
    assert p.options("head").thresholds() == VerdictThresholds(0.25, 0.5)
    assert f"{THRESHOLDS_FILE} was chosen for another model" in p.threshold_notes("head")[0]
    # ... where a copy of the same bytes (a new inode, a new ctime) is the same model
    shutil.copy2(chosen_for / HEAD_FILE, copied / HEAD_FILE)
    assert Predictor.load(copied, device="cpu").options("head").thresholds() == VerdictThresholds(0.15, 0.85)
    # A checkpoint that recorded nothing of its training (a plain folder) cannot tell: its thresholds judge as before
    (other / "content_digest.json").unlink()
    assert Predictor.load(other, device="cpu").options("head").thresholds() == VerdictThresholds(0.15, 0.85)


def test_a_tiled_pair_chosen_at_another_scale_than_auto_cuts_at_now_is_said(trained_checkpoint, tmp_path):
    """`bbuvl choose-tiles --choose-thresholds` records the scale and refinement the tiled photos' pair was chosen at;
    once the scale was chosen again without it (or removed), predict and serve judged the whole cabinets by that pair
    without a word, where choose-tiles had said it once."""
    from bbuvl.data.faults import TILED_THRESHOLDS_FILE

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    judged = sorted(Faults.load(Predictor.load(ckpt, device="cpu").cfg.data.hierarchy).labels)
    p = Predictor.load(ckpt, device="cpu")
    now = p.train_scale
    chosen = ChosenThresholds(VerdictThresholds(0.3, 0.6), 0.8, 0.9, 0.8, 0.9, 10, 4, judged, "val.jsonl", tiled=True,
                              mode="head", tile_scale=round((now or 1.0) * 2, 3), tile_refine=[])
    chosen.save(ckpt)
    p = Predictor.load(ckpt, device="cpu")
    assert p.options("head").thresholds(tiled=True) == VerdictThresholds(0.3, 0.6)  # it judges, as before
    [note] = [n for n in p.threshold_notes("head") if TILED_THRESHOLDS_FILE in n]
    assert f"was chosen on photos cut at scale {chosen.tile_scale:g}, where `tiles: auto` cuts them at" in note, note
    assert not any(TILED_THRESHOLDS_FILE in n for n in p.threshold_notes("head", "2x2"))  # no auto grid to compare
    from dataclasses import replace

    replace(chosen, tile_scale=now).save(ckpt)  # chosen at the scale photos are cut at now: nothing to say
    assert not any(TILED_THRESHOLDS_FILE in n for n in Predictor.load(ckpt, device="cpu").threshold_notes("head"))
