"""`bbuvl predict` on a copied checkpoint (its recorded digests' stats no longer match) hashes each of its files once
at start: the resume key's identity and the chosen files' check (`trained_identity`) share the digests."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.infer.tile_scale import ChosenTileScale


@pytest.mark.usefixtures("one_thread")
def test_a_copied_checkpoint_is_hashed_once_per_start(trained_checkpoint, small_dataset, tmp_path, monkeypatch):
    # Before: each weights file was hashed twice, once for the predictions manifest and once for the checkpoint's
    # chosen tile scale; seconds each for a 3B model.
    ckpt = shutil.copytree(trained_checkpoint, tmp_path / "ckpt")
    ChosenTileScale(1.0, "AP50 by category", 1.0, [], 1, "val.jsonl").save(ckpt)  # a chosen file: its model is checked
    record = json.loads((ckpt / "content_digest.json").read_text(encoding="utf-8"))
    assert any(f["inode"] != (ckpt / f["name"]).stat().st_ino for f in record["files"])  # a copy: nothing vouched for
    line = json.loads((small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()[0])
    photos = tmp_path / "photos.jsonl"
    photos.write_text(json.dumps({**line, "images": [str(small_dataset / line["images"][0])]}) + "\n", encoding="utf-8")

    hashed: Counter[str] = Counter()
    real = hashlib.file_digest

    def counted(fh, digest):  # noqa: ANN001, ANN202 - hashlib's own signature
        hashed[fh.name] += 1
        return real(fh, digest)

    monkeypatch.setattr(hashlib, "file_digest", counted)
    r = CliRunner().invoke(app, ["predict", "-c", str(ckpt), "-i", str(photos), "-o", str(tmp_path / "p.jsonl"),
                                 "--mode", "head", "--device", "cpu"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    weights = [name for name in hashed if name.startswith(str(ckpt)) and name.endswith(".safetensors")]
    assert weights, sorted(hashed)  # the copy was hashed: nothing vouched for its files
    assert {name: n for name, n in hashed.items() if name.startswith(str(ckpt)) and n > 1} == {}
