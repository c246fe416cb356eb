"""`data convert` of a platform that writes the hierarchy's English glosses (`content.label`, no Chinese), as
`data convert --lang en` writes them and `data import-coco` and `data check` read them: each object is its label,
where the token map, made for the platform's tokens, turned some of their parts and every object was dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import read_records

SIZE = (640, 480)


def export_in_english(src: Path, labels: list[str]) -> None:
    """One photo with one object of each of `labels`, named in `content.label` only, on boxes far apart."""
    features = []
    for i, label in enumerate(labels):
        x, y = 10 + (i % 6) * 100, 10 + (i // 6) * 100
        features.append({"type": "Feature", "properties": {"content": {"label": label}},
                         "geometry": {"type": "ExtentPolygon",
                                      "coordinates": [[x, y], [x + 60, y], [x + 60, y + 60], [x, y + 60], [x, y]]}})
    src.mkdir()
    (src / "p.json").write_text(json.dumps({"info": {"width": SIZE[0], "height": SIZE[1]},
                                            "markResult": {"type": "FeatureCollection", "features": features}}),
                                encoding="utf-8")
    Image.new("RGB", SIZE, (90, 100, 110)).save(src / "p.jpg", "JPEG")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_label_written_as_its_english_gloss_is_converted_as_that_label(tmp_path, lang):
    h = Hierarchy.load()
    labels = h.labels()
    export_in_english(tmp_path / "export", [h.english(label) for label in labels])

    summary = convert_dataset(tmp_path / "export", tmp_path / "out", ConvertOptions(val_ratio=0, teachers=0, lang=lang))

    assert (tmp_path / "out" / "errors.jsonl").read_text(encoding="utf-8") == ""
    assert summary["annotations"]["converted"] == len(labels)
    (record,) = read_records(tmp_path / "out" / "train.jsonl")
    written = {tuple(o.bbox_2d): o.desc for o in record.objects}
    expected = {(10.0 + (i % 6) * 100, 10.0 + (i // 6) * 100, 70.0 + (i % 6) * 100, 70.0 + (i // 6) * 100):
                (label if lang == "zh" else h.english(label)) for i, label in enumerate(labels)}
    assert written == expected


def test_a_label_of_both_languages_is_dropped_naming_its_two_spellings(tmp_path):
    export_in_english(tmp_path / "export", ["air baffle/已安装", "cable"])

    convert_dataset(tmp_path / "export", tmp_path / "out", ConvertOptions(val_ratio=0, teachers=0))

    (line,) = [json.loads(x) for x in (tmp_path / "out" / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert (line["file"], line["object"]) == ("p.json", 0)
    assert "mixes the hierarchy's names and their English glosses: '挡风板/已安装' or 'air baffle/installed'" in line["reason"]
    assert [o.desc for o in read_records(tmp_path / "out" / "train.jsonl")[0].objects] == ["线缆"]
