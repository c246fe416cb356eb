"""Streaming embedding: crops with margins, order kept, bad images reported by name and skipped, nothing else lost."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bbuvl.fewshot.backbones import PixelBackbone
from bbuvl.fewshot.embed import EmbedReport, ImageItem, crop_box, embed_items


def test_crop_box_grows_by_the_margin_and_stays_inside_the_image():
    assert crop_box([10, 20, 30, 60], 0.1, (100, 100)) == pytest.approx([8, 16, 32, 64])
    assert crop_box([0, 0, 50, 10], 0.5, (60, 100)) == pytest.approx([0, 0, 60, 15])


def test_corrupt_and_missing_images_are_reported_and_the_rest_embedded(tmp_path):
    good = []
    for i in range(5):
        good.append(tmp_path / f"ok{i}.png")
        Image.new("RGB", (30, 20), (40 * i, 10, 200 - 30 * i)).save(good[-1])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good[0].read_bytes()[:60])
    missing = tmp_path / "missing.png"
    items = [ImageItem(good[0]), ImageItem(corrupt), ImageItem(good[1]), ImageItem(missing, origin="q.jsonl:7 objects[0]"),
             ImageItem(good[2]), ImageItem(truncated), ImageItem(good[3]), ImageItem(good[4])]
    report = EmbedReport()
    batches = list(embed_items(items, PixelBackbone(4), None, batch_size=3, report=report))
    kept = [item.path for b, _ in batches for item in b]
    assert kept == good  # order kept, nothing good lost
    assert sum(len(v) for _, v in batches) == 5
    assert len(report.skipped) == 3 and report.embedded == 5
    text = "\n".join(report.skipped)
    assert "corrupt.jpg" in text and "truncated.png" in text
    assert "q.jsonl:7 objects[0]" in text and "missing.png" in text and "not found" in text


def test_crops_of_one_photo_match_cropping_by_hand(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    bb = PixelBackbone(6)
    items = [ImageItem(path, (10, 10, 30, 40)), ImageItem(path, (40, 5, 70, 25), margin=0.2)]
    (_, vectors), = embed_items(items, bb, None)
    img = Image.fromarray(arr)
    np.testing.assert_allclose(vectors[0], bb.embed([img.crop((10, 10, 30, 40))])[0], atol=1e-6)
    np.testing.assert_allclose(vectors[1], bb.embed([img.crop((34, 1, 76, 29))])[0], atol=1e-6)


def test_a_box_outside_the_image_is_reported_not_embedded(tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (20, 20)).save(path)
    report = EmbedReport()
    out = list(embed_items([ImageItem(path, (30, 30, 40, 40)), ImageItem(path)], PixelBackbone(4), report=report))
    assert [len(items) for items, _ in out] == [1]
    assert "empty inside the 20x20 image" in report.skipped[0]


def test_greyscale_and_cmyk_files_are_embedded_as_rgb(tmp_path):
    grey, cmyk = tmp_path / "grey.png", tmp_path / "cmyk.jpg"
    Image.new("L", (16, 16), 90).save(grey)
    Image.new("CMYK", (16, 16), (0, 50, 100, 0)).save(cmyk)
    (_, vectors), = embed_items([ImageItem(grey), ImageItem(cmyk)], PixelBackbone(4))
    assert vectors.shape == (2, 48) and vectors.dtype == np.float32
