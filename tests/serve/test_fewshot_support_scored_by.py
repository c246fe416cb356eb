"""An answer's `model.fewshot` names the support set that scored its boxes, not one a reload served after them."""

from __future__ import annotations

import shutil

from tests.serve.test_fewshot_support_changes import crops  # noqa: F401 (a fixture)


def test_an_answer_names_the_support_version_that_scored_it_after_a_reload(engine, crops, photos, tmp_path):  # noqa: F811
    from bbuvl.data.images import load_image
    from bbuvl.serve.engine import Engine
    from bbuvl.serve.fewshot import FewShotRescorer

    root, classes = crops
    folder = tmp_path / "support"
    shutil.copytree(root / classes[0], folder / classes[0])
    rescorer = FewShotRescorer.load(folder, "pixels:8", -1.0, "cpu", watch_s=0)
    served = Engine(engine.predictor, "head", engine.checkpoint, rescorer)
    [first] = served.run("head", [served.prepare(load_image(photos[0]).image)])
    shutil.copytree(root / classes[2], folder / classes[2])
    assert not rescorer.watcher.check() and rescorer.watcher.check()  # version 2 served before the answer is written
    info = served.info(fewshot=first.fewshot)["fewshot"]
    # before: the answer scored by version 1 (its boxes all of class 0) said version 2, with two classes
    assert info["version"] == 1 and info["classes"] == [classes[0]]
    assert {o["fewshot"]["label"] for o in first.objects if o["fewshot"]} == {classes[0]}
    [second] = served.run("head", [served.prepare(load_image(photos[0]).image)])
    assert served.info(fewshot=second.fewshot)["fewshot"]["version"] == 2
