"""A photo replaced under its name since `bbuvl predict` (a folder synced again, a photo re-exported): `fewshot classify`
and `fewshot label` cropped the new photo with the old one's boxes, and label wrote them onto it as its truth. The
line is left out, named with the manifest that records what was predicted; the other photos are answered."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PIL import Image

from bbuvl.data.digests import combined
from bbuvl.infer.output import Manifest, manifest_path
from bbuvl.infer.resume_key import ResumeKey, photo_digests
from tests.fewshot.test_hostile_input import invoke, photos


def predicted(root: Path) -> Path:
    """`root/photos/{a,b}.jpg` and `root/preds.jsonl` with the manifest predict writes: each photo's SHA-256."""
    folder = root / "photos"
    folder.mkdir(parents=True)
    for i, name in enumerate(("a.jpg", "b.jpg")):
        Image.new("RGB", (64, 48), (60 + 90 * i, 40, 200 - 90 * i)).save(folder / name, quality=95)
    preds = root / "preds.jsonl"
    preds.write_text("".join(json.dumps({"image": name, "width": 64, "height": 48, "error": None, "objects": [
        {"bbox_2d": [4, 4, 40, 40], "label": "线缆", "score": 0.9}]}) + "\n" for name in ("a.jpg", "b.jpg")),
        encoding="utf-8")
    digests = photo_digests([(name, folder / name) for name in ("a.jpg", "b.jpg")])
    key = ResumeKey(combined(digests), "0" * 64, "head", {}, digests)
    manifest = Manifest(str(folder), str(root / "ckpt"), "head", key=key)
    manifest_path(preds).write_text(json.dumps(manifest.to_json()), encoding="utf-8")
    return preds


def classify_and_label(tmp_path: Path, preds: Path, support: Path, message: str) -> tuple[list[str], list[list[str]]]:
    """`fewshot classify` and `fewshot label` on `preds`, each saying `message`: the queries classify answered and the
    photos label wrote."""
    common = ("--support", support, "--backbone", "pixels:8", "--no-cache", "--threshold", "-1")
    code, said = invoke("classify", "--query", preds, "--out", tmp_path / "r.csv", *common)
    assert code == 0 and message in said, said
    queries = [row["query"] for row in csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8"))]
    code, said = invoke("label", "--predictions", preds, "--out", tmp_path / "l.jsonl", *common)
    assert code == 0 and message in said and "replaced by the image's" not in said, said
    lines = (tmp_path / "l.jsonl").read_text(encoding="utf-8").splitlines()
    return queries, [json.loads(line)["images"] for line in lines]


def test_a_photo_replaced_since_predict_is_left_out_naming_its_line_and_the_rest_answered(tmp_path):
    preds = predicted(tmp_path)
    support = photos(tmp_path / "support", {"线缆": 2, "标签贴纸": 2})
    Image.new("RGB", (64, 48), (250, 250, 10)).save(tmp_path / "photos" / "a.jpg", quality=95)  # another photo, same size
    changed = f"{preds}:1: {tmp_path / 'photos' / 'a.jpg'} changed since it was predicted (its SHA-256 in preds.jsonl.predict.json)"
    assert classify_and_label(tmp_path, preds, support, changed) == ([f"{preds}:2 objects[0]"], [["photos/b.jpg"]])
