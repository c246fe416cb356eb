"""`bbuvl eval` reads more than the files it is given: the manifest beside --pred, the checkpoint that manifest names,
and --gt's photos. None of its outputs may land on them, --overwrite or not: a metrics file written into the checkpoint
changed its content, so `bbuvl predict` refused to resume an output it had started with it, and a report whose worst/
was the photo folder deleted the ground truth's photos."""

from __future__ import annotations

import json

from PIL import Image
import pytest

from bbuvl.infer.output import manifest_path
from bbuvl.model.identity import identify
from tests.eval.test_judging import BOX, OK
from tests.eval.test_judging import files as files  # noqa: F401 - the fixture
from tests.eval.test_judging import run


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_output_inside_the_checkpoint_that_wrote_the_predictions_is_refused_and_the_checkpoint_unchanged(files, tmp_path):
    gt, pred, ckpt = files
    before = identify(ckpt, None).digest
    for out, extra in ((ckpt / "metrics.json", []), (ckpt / "bbuvl.yaml", ["--overwrite"]),
                       (tmp_path / "m.json", ["--report", str(ckpt / "report")])):
        output = " ".join(run(gt, pred, out, *extra, ok=False).split())
        assert f"is inside the input --pred's checkpoint ({ckpt})" in output, output
        assert "Traceback" not in output
    assert identify(ckpt, None).digest == before
    assert sorted(p.name for p in ckpt.iterdir()) == ["bbuvl.yaml"]
    run(gt, pred, tmp_path / "m.json", "--choose-thresholds")  # the thresholds it chooses still go there


def test_the_predictions_manifest_is_never_an_output_even_with_overwrite(files, tmp_path):
    gt, pred, _ = files
    manifest = manifest_path(pred)
    kept = manifest.read_bytes()
    output = " ".join(run(gt, pred, manifest, "--overwrite", ok=False).split())
    assert f"{manifest}: is also the input --pred's manifest" in output
    assert manifest.read_bytes() == kept


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_report_folder_replaced_whole_never_holds_the_ground_truths_photos(tmp_path):
    data = tmp_path / "review"
    (data / "worst").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (100, 100), (90, 90, 90)).save(data / "worst" / name)
    gt, pred = data / "val.jsonl", tmp_path / "pred.jsonl"
    gt.write_text("".join(json.dumps({"images": [f"worst/{n}"], "width": 100, "height": 100,
                                      "objects": [{"bbox_2d": BOX, "desc": OK}]}, ensure_ascii=False) + "\n"
                          for n in ("a.jpg", "b.jpg")), encoding="utf-8")
    pred.write_text("".join(json.dumps({"image": str(data / "worst" / n), "width": 100, "height": 100, "raw": None,
                                        "error": None, "objects": [{"bbox_2d": BOX, "label": OK, "score": 0.9}]},
                                       ensure_ascii=False) + "\n" for n in ("a.jpg", "b.jpg")), encoding="utf-8")
    photos = {p.name: p.read_bytes() for p in (data / "worst").iterdir()}
    output = " ".join(run(gt, pred, tmp_path / "m.json", "--report", str(data), "--overwrite", ok=False).split())
    # Before: the report's worst/ pictures replaced the folder, and both photos were gone.
    assert f"{data / 'worst'}: holds the input --gt line 1's photo folder" in output
    assert {p.name: p.read_bytes() for p in (data / "worst").iterdir()} == photos
    run(gt, pred, tmp_path / "m.json", "--report", str(tmp_path / "report"))  # a report elsewhere is drawn
    assert (tmp_path / "report" / "index.html").is_file()
