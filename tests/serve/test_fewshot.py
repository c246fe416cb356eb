"""`--fewshot`: every served box is re-scored against a support set; below the threshold it is flagged unknown."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def support(small_dataset, tmp_path_factory):
    """Support crops of the small dataset's two commonest labels (5 each)."""
    from collections import Counter

    from bbuvl.data.schema import read_records
    from bbuvl.fewshot.crops import write_crops

    counts = Counter(o.desc for r in read_records(small_dataset / "train.jsonl") for o in r.objects)
    classes = tuple(label for label, _ in counts.most_common(2))
    out = tmp_path_factory.mktemp("support")
    write_crops(small_dataset / "train.jsonl", out, classes=classes, per_class=5)
    return out, classes


@pytest.mark.parametrize(("threshold", "all_unknown"), [(-1.0, False), (1.0, True)])
def test_boxes_get_the_fewshot_answer_and_weak_ones_are_unknown(engine, keys, support, photos, threshold, all_unknown):
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from bbuvl.serve.fewshot import FewShotRescorer
    from tests.serve.conftest import running

    folder, classes = support
    rescorer = FewShotRescorer.load(folder, "pixels:8", threshold, "cpu")
    with_fewshot = Engine(engine.predictor, "head", engine.checkpoint, rescorer)
    with running(create_app(with_fewshot, keys)) as client:
        got = client.detect_file(photos[0]).json()
    assert got["model"]["fewshot"]["classes"] == sorted(classes) and got["model"]["fewshot"]["threshold"] == threshold
    assert got["objects"]
    scored = [o for o in got["objects"] if o["fewshot"] is not None]  # an empty box has no crop to score: unknown
    assert scored and all(o["unknown"] for o in got["objects"] if o["fewshot"] is None)
    for o in scored:
        assert o["unknown"] is all_unknown
        assert o["fewshot"]["label"] in classes and -1.0 <= o["fewshot"]["score"] <= 1.0


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_bbuvl_serve_names_the_support_photos_it_left_out(trained_checkpoint, support, tmp_path):
    import shutil

    from tests.serve.conftest import cli_server

    folder, classes = support
    copy = tmp_path / "support"
    shutil.copytree(folder, copy)
    broken = copy / classes[0] / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a whole photo")
    (copy / classes[1] / "notes.txt").write_text("taken on site 7\n", encoding="utf-8")
    log = tmp_path / "serve.log"
    args = ["-c", str(trained_checkpoint), "--mode", "head", "--device", "cpu", "--fewshot", str(copy),
            "--fewshot-backbone", "pixels:8"]
    with cli_server(args, log) as (client, _):
        assert client.request("GET", "/readyz").status == 200  # served from the photos it could read
    text = " ".join(log.read_text().split())
    # before: both left out without a word, each class served from fewer photos than its folder holds
    assert f"note: --fewshot left out a support photo: {broken}" in text, text
    assert "note: --fewshot: 1 file in" in text and ".txt" in text, text
