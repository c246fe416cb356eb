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
