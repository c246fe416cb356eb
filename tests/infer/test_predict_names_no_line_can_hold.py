"""A photo whose file name is no UTF-8 text (GBK bytes from an archive made on a Chinese Windows, unpacked here) cannot
be named in a predictions line or the manifest: predict failed at its first write on "'utf-8' codec can't encode
characters in position 1049-1050", naming no file. It is now refused before any model loads, naming the photo and what
its bytes read as in GBK."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")

GBK_NAME = "站点照片".encode("gbk") + b".jpg"


@pytest.mark.skipif(os.uname().sysname == "Darwin", reason="macOS file systems take UTF-8 names only")
def test_a_photo_named_in_gbk_bytes_is_refused_naming_it_before_the_model_loads(trained_checkpoint, small_dataset, tmp_path):
    photos = tmp_path / "photos"
    (photos / "site").mkdir(parents=True)
    first = next((small_dataset / "images").iterdir())
    shutil.copy(first, photos / "ok.jpg")
    shutil.copy(first, os.path.join(os.fsencode(photos / "site"), GBK_NAME))
    out = tmp_path / "pred.jsonl"
    text = refused(invoke(["predict", "-c", trained_checkpoint, "-i", photos, "-o", out, "--device", "cpu"]),
                   f"{photos}: 1 photo name(s) a predictions file cannot hold: 'site/",
                   "they read as GBK: 'site/站点照片.jpg'")
    assert "Loading weights" not in text and "codec can't encode" not in text
    assert not out.exists() and not out.with_name(out.name + ".predict.json").exists()
