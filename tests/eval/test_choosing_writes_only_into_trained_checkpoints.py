"""`bbuvl eval --choose-thresholds` writes its pair into the checkpoint that made the predictions only when `bbuvl
train` wrote it: a plain model folder (a base model predicted zero-shot with --labels, an export) is a folder bbuvl did
not write, and it was given a verdict_thresholds.json it never had, changing an export's recorded content."""

from __future__ import annotations

import shutil

from tests.eval.test_judging import files as files  # noqa: F401 - the fixture
from tests.eval.test_judging import run


def files_of(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_choose_thresholds_writes_nothing_into_a_plain_model_folder(files, tiny_model_dir, tmp_path):
    gt, pred, ckpt = files  # 4 photos, 2 faulty, scored so that a pair can be chosen
    (ckpt / "bbuvl.yaml").unlink()  # the folder that made them is a base model, not a checkpoint of `bbuvl train`
    shutil.copytree(tiny_model_dir, ckpt, dirs_exist_ok=True)
    before = files_of(ckpt)
    said = " ".join(run(gt, pred, tmp_path / "m.json", "--choose-thresholds", ok=False).split())
    assert (f"--choose-thresholds writes verdict_thresholds.json into the checkpoint that made these predictions, and "
            f"{ckpt} is a plain model folder") in said, said
    assert "--verdict-review and --verdict-fail" in said and "Traceback" not in said
    assert files_of(ckpt) == before and not (tmp_path / "m.json").exists()
    run(gt, pred, tmp_path / "m.json")  # scoring them writes nothing there, and is allowed
    assert files_of(ckpt) == before
