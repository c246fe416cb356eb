"""An inspector asking `bbuvl serve` about a photo gets the verdict `bbuvl predict` writes for it: the same thresholds
(the checkpoint's chosen `verdict_thresholds.json`), the same faults, scores and boxes, the same reason, on photos that
fail, go to review and pass alike (docs/faults.md, "The verdict")."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from importlib import resources

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app as cli

pytestmark = pytest.mark.usefixtures("one_thread")


def mark_fault(hierarchy: dict, label: str) -> bool:
    """Mark `label` a fault in `hierarchy` (docs/faults.md): its state, or its attribute when that has no states;
    False, the hierarchy unchanged, for a label no hierarchy can mark (a category alone)."""
    category, *rest = label.split("/")
    if not rest:
        return False
    attribute = hierarchy["categories"][category]["attributes"][rest[0]]
    if len(rest) == 1:
        if attribute["states"]:
            return False
        attribute["fault"] = True
        return True
    gloss = attribute["states"][rest[1]]
    attribute["states"][rest[1]] = {**(gloss if isinstance(gloss, dict) else {"gloss": gloss}), "fault": True}
    return True


def test_serves_verdict_for_a_photo_is_predicts_under_the_checkpoints_chosen_thresholds(trained_checkpoint, photos, keys,
                                                                                        tmp_path):
    import torch

    from bbuvl.data.faults import Faults
    from bbuvl.infer.predictor import Predictor
    from bbuvl.infer.verdict import SCORE_DIGITS, ChosenThresholds, VerdictThresholds
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from tests.serve.conftest import running

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos[:6]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    paths = [str(p) for p in sorted(folder.iterdir())]
    predictor = Predictor.load(ckpt, device="cpu")
    logits = []
    hook = predictor.model.detection_head.objectness_head.register_forward_hook(
        lambda module, args, out: logits.append(out.detach().flatten()))
    named = Counter(o.label for r in predictor.predict(paths, "head") for o in r.objects)
    hook.remove()
    # A 2-step head's objectness is its prior, about 0.01 (logits -4.9 to -4.4 over these photos' queries in every
    # family), which a line writes (5 decimals) as nearly one score for every photo: no threshold between photos would
    # survive the writing (raised by e^8, saturated, Qwen3-VL's photos all read 0.00038 or 0.00039). Its logits
    # stretched about their mean to a spread of 4 spread the photos' scores apart at the digits a line writes.
    from safetensors.torch import load_file, save_file

    from bbuvl.model.identity import record_digests

    logits = torch.cat(logits)
    stretch = 4.0 / float(logits.max() - logits.min())
    state = load_file(ckpt / "detection_head.safetensors")
    weight, bias = (next(k for k in state if k.endswith(f"objectness_head.{name}")) for name in ("weight", "bias"))
    state[weight] = state[weight] * stretch
    state[bias] = (state[bias] - logits.mean()) * stretch
    save_file(state, ckpt / "detection_head.safetensors", metadata={"format": "pt"})
    record_digests(ckpt)
    # A 2-step model rarely finds a fault, and which part it names is the family's draw (Qwen2.5-VL's the cabinet's
    # full space, Qwen3-VL's an Ericsson BBU, Qwen3.5's a seated CPRI plug): the inspector's own hierarchy marks a
    # fault the label it names most that a hierarchy can mark (an attribute without states, or a state).
    hierarchy = json.loads((resources.files("bbuvl.resources") / "hierarchy.json").read_text(encoding="utf-8"))
    label = next(label for label, _ in named.most_common() if mark_fault(hierarchy, label))
    (tmp_path / "hierarchy.json").write_text(json.dumps(hierarchy, ensure_ascii=False), encoding="utf-8")
    config = (ckpt / "bbuvl.yaml").read_text(encoding="utf-8")
    assert "  hierarchy: null\n" in config
    (ckpt / "bbuvl.yaml").write_text(config.replace("  hierarchy: null\n", f"  hierarchy: {tmp_path / 'hierarchy.json'}\n"),
                                     encoding="utf-8")
    predictor = Predictor.load(ckpt, device="cpu")
    assert predictor.faults.is_fault(label)
    # Thresholds between this checkpoint's own fault scores (a 2-step model's are tiny), so that its photos fail, go
    # to review and pass: at the defaults every photo passed, and a verdict of "pass" compared little.
    best = sorted({round(max([o.score for o in r.objects if predictor.faults.is_fault(o.label)], default=0.0),
                         SCORE_DIGITS) for r in predictor.predict(paths, "head")})
    assert len(best) >= 3, best
    # Midway between two photos' scores: a batch of another size moves a score in its last bits (predict batches 2
    # photos, the server here 1), and a threshold on a photo's own score would judge that photo by the noise.
    review, fail = (len(best) // 3, 2 * len(best) // 3)
    chosen = VerdictThresholds((best[review - 1] + best[review]) / 2, (best[fail - 1] + best[fail]) / 2)
    ChosenThresholds(chosen, 0.8, 0.8, 1.0, 1.0, 6, 3, sorted(Faults.load(predictor.cfg.data.hierarchy).labels),
                     "val.jsonl", mode="head").save(ckpt)

    out = tmp_path / "pred.jsonl"
    r = CliRunner().invoke(cli, ["predict", "-c", str(ckpt), "-i", str(folder), "-o", str(out), "--mode", "head",
                                 "--device", "cpu"], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    expected = {line["image"]: line for line in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert {v["verdict"]["verdict"] for v in expected.values()} == {"pass", "review", "fail"}, expected

    engine = Engine.load(ckpt, mode="head", device="cpu")
    with running(create_app(engine, keys)) as client:
        for photo in sorted(folder.iterdir()):
            reply = client.detect_file(photo)
            assert reply.status == 200, reply.body
            got = reply.json()
            assert got["verdict"] == expected[photo.name]["verdict"], photo.name
            assert [o["fault"] for o in got["objects"]] == [engine.predictor.faults.is_fault(o["label"])
                                                           for o in got["objects"]]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_serve_says_at_start_when_the_configs_score_threshold_hides_faults_from_the_verdict(trained_checkpoint,
                                                                                            tmp_path):
    # Serve has no --score-threshold: a checkpoint's inference.score_threshold above its review threshold dropped the
    # faults scored between the two before each photo was judged, and nothing said so (predict says it at its start).
    from tests.serve.conftest import cli_server

    said = {}
    for threshold in ("0.0", "0.9"):
        ckpt = tmp_path / f"ckpt{threshold}"
        shutil.copytree(trained_checkpoint, ckpt)
        config = (ckpt / "bbuvl.yaml").read_text(encoding="utf-8")
        assert "  score_threshold: 0.0\n" in config
        (ckpt / "bbuvl.yaml").write_text(config.replace("  score_threshold: 0.0\n", f"  score_threshold: {threshold}\n"),
                                         encoding="utf-8")
        log = tmp_path / f"serve{threshold}.log"
        with cli_server(["-c", str(ckpt), "--mode", "head", "--device", "cpu"], log) as (client, _):
            assert client.request("GET", "/healthz").status == 200
        said[threshold] = " ".join(log.read_text(encoding="utf-8").split())
    assert "score_threshold" not in said["0.0"], said["0.0"]
    assert "(inference.score_threshold) 0.9 is above the verdict's review threshold" in said["0.9"], said["0.9"]
    assert "a fault scoring between the two is dropped before its photo is judged" in said["0.9"], said["0.9"]
