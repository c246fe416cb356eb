"""Class 7: labels and file names are compared the way people type them; what is unknown says what is near."""

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.check import check_dataset
from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.data.labels import Hierarchy, TokenMap
from bbuvl.data.layout import label_counts, read_vocabulary
from bbuvl.data.schema import ImageRecord, read_records

SCREW = "螺丝连接点/BBU安装螺丝/连接正确"
BBU = "bbu基带处理单元/华为"


def photo(path: Path, size=(64, 48), fmt="PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path, fmt)
    return path


def record(image: str, *labels: str) -> dict:
    return {"images": [image], "width": 64, "height": 48,
            "objects": [{"bbox_2d": [2 + 10 * i, 2, 9 + 10 * i, 20], "desc": d} for i, d in enumerate(labels)]}


def write_jsonl(path: Path, rows: list[dict], bom: bool = False) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def test_check_accepts_labels_typed_with_invisible_or_full_width_characters(tmp_path):
    photo(tmp_path / "images" / "a.png")
    train = write_jsonl(tmp_path / "train.jsonl", [record("images/a.png", "螺丝\u200b连接点／BBU安装螺丝／连接正确",
                                                          "螺丝连接点/ＢＢＵ安装螺丝/连接正确")])
    problems = check_dataset(train)
    assert [p.severity for p in problems] == ["warning"], problems
    assert "objects[1]: label '螺丝连接点/ＢＢＵ安装螺丝/连接正确' counts as the hierarchy's '螺丝连接点/BBU安装螺丝/连接正确'" \
        in problems[0].message
    assert read_records(train)[0].objects[0].desc == SCREW  # invisible characters never reach training


def test_an_unknown_label_names_the_nearest_known_one_with_invisible_characters_escaped(tmp_path):
    photo(tmp_path / "images" / "a.png")
    train = write_jsonl(tmp_path / "train.jsonl", [record("images/a.png", "螺丝连接点/BBU安装螺丝/连接\u3000正确")])
    r = CliRunner().invoke(app, ["data", "check", str(train)])
    out = " ".join(r.output.split())
    assert r.exit_code != 0
    assert "unknown state '连接\\u3000正确'" in out and f"nearest known label: '{SCREW}'" in out
    assert "extra '\\u3000'" in out


def test_a_dataset_jsonl_may_start_with_a_bom(tmp_path):
    photo(tmp_path / "images" / "a.png")
    train = write_jsonl(tmp_path / "train.jsonl", [record("images/a.png", SCREW), record("images/a.png", BBU)], bom=True)
    assert [r.objects[0].desc for r in read_records(train)] == [SCREW, BBU]
    assert not [p for p in check_dataset(train) if p.severity == "error" and "same photo" not in p.message]


def test_labels_json_and_hierarchy_may_start_with_a_bom(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_bytes(b"\xef\xbb\xbf" + json.dumps({"labels": {SCREW: 2, BBU: 1}}, ensure_ascii=False).encode("utf-8"))
    assert read_vocabulary(labels) == [SCREW, BBU]
    hierarchy = tmp_path / "hierarchy.json"
    hierarchy.write_bytes(b"\xef\xbb\xbf" + json.dumps({"categories": {"线缆": {"attributes": {}}}}).encode("utf-8"))
    assert Hierarchy.load(hierarchy).is_valid("线缆")


def test_a_vocabulary_keeps_one_spelling_of_each_label(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([SCREW, "螺丝连接点／BBU安装螺丝／连接正确", BBU, BBU + "\u200b"], ensure_ascii=False),
                      encoding="utf-8")
    assert read_vocabulary(labels) == [SCREW, BBU]


def test_a_custom_hierarchy_keeps_its_own_spelling(tmp_path):
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"categories": {"线缆（光纤）": {"attributes": {"café": {"states": {}}}}}},
                               ensure_ascii=False), encoding="utf-8")
    h = Hierarchy.load(path)
    assert h.canonical("线缆(光纤)／cafe\u0301") == "线缆（光纤）/café"
    assert TokenMap({"连接点（螺丝）": "螺丝连接点"}).map_token("连接点(螺丝)\u200b") == "螺丝连接点"


def test_labels_typed_as_a_hierarchy_saved_decomposed_or_with_joiners_spells_them_are_typed_as_it_spells_them(tmp_path):
    # A hierarchy saved on macOS spells `é` decomposed, an emoji holds a zero-width joiner: a dataset reads its labels
    # composed and without stray invisible characters, so every label typed exactly as the file spells it was said to be
    # typed otherwise ("'é' where it has 'é'"), and the hierarchy's spelling was no label any dataset could hold. The
    # joiner that makes the two emoji one picture is kept (data/text.py, `drop_invisible`).
    names = ["Cafe\u0301", "\U0001f469\u200d\U0001f527 tech"]
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"categories": {n: {"gloss": f"g{i}", "attributes": {"ok": {
        "gloss": f"ok{i}", "states": {"good": "good", "bad": {"gloss": "bad", "fault": True}}}}} for i, n in enumerate(names)}},
        ensure_ascii=False), encoding="utf-8")
    h = Hierarchy.load(path)
    photo(tmp_path / "images" / "a.png")
    train = write_jsonl(tmp_path / "train.jsonl", [record("images/a.png", *(f"{n}/ok/good" for n in names))])
    assert check_dataset(train, h) == []
    typed = [o.desc for o in read_records(train)[0].objects]
    assert h.labels()[::2] == typed == ["Caf\u00e9/ok/good", "\U0001f469\u200d\U0001f527 tech/ok/good"]
    assert sorted(h.faults) == sorted(label.replace("good", "bad") for label in typed)
    assert h.canonical("Cafe\u0301/ok/good") == typed[0] and h.english(typed[0]) == "g0/ok0/good"

    path.write_text(json.dumps({"categories": {" BBU ": {"attributes": {" a": {}}}}}), encoding="utf-8")
    assert Hierarchy.load(path).labels() == ["BBU/a"]  # what `data convert` writes, and a dataset reads back as such
    path.write_text(json.dumps({"categories": {"BBU": {"attributes": {"a": {}}}, "ＢＢＵ": {"attributes": {"b": {}}}}},
                               ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}: categories 'BBU' and 'ＢＢＵ' are one name however typed "):
        Hierarchy.load(path)


def test_a_label_or_gloss_holding_a_token_of_the_chat_format_is_refused_naming_where(tmp_path):
    # A tokenizer reads `<|image_pad|>` in any text as the photo's token: a hierarchy naming a part `c<|image_pad|>d`
    # passed `data check`, and training failed at its first step with "image block at token 57 is shorter than its grid
    # 1x6x8 says", naming no label; `<|im_end|>` in one ended every answer that wrote it half-way.
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"categories": {"c<|image_pad|>d": {}}}), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}: category 'c<\|image_pad\|>d': name 'c<\|image_pad\|>d' holds "
                                         r"'<\|image_pad\|>', a token of the model's chat format"):
        Hierarchy.load(path)
    path.write_text(json.dumps({"categories": {"c": {"gloss": "see <think>", "attributes": {}}}}), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}: category 'c': gloss 'see <think>' holds '<think>', a token of"):
        Hierarchy.load(path)

    labels = tmp_path / "labels.json"  # `predict --labels`: the prompt of a plain model folder lists them
    labels.write_text(json.dumps([BBU, "标签<|im_end|>"], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{labels}: label '标签<\|im_end\|>' holds '<\|im_end\|>', a token of"):
        read_vocabulary(labels)

    photo(tmp_path / "images" / "a.png")
    train = write_jsonl(tmp_path / "train.jsonl", [record("images/a.png", SCREW), record("images/a.png", SCREW + "<|im_end|>")])
    problems = check_dataset(train)
    assert [(p.line, p.severity) for p in problems] == [(2, "error")], problems
    assert f"label '{SCREW}<|im_end|>' holds '<|im_end|>', a token of the model's chat format" in problems[0].message


def feature(label: str) -> dict:
    return {"type": "Feature", "properties": {"contentZh": {"标签": label}},
            "geometry": {"type": "ExtentPolygon", "coordinates": [[[2, 2], [30, 2], [30, 30], [2, 30], [2, 2]]]}}


def test_convert_writes_the_hierarchys_spelling_and_escapes_invisible_characters_in_errors(tmp_path):
    src = tmp_path / "export"
    photo(src / "a.jpg", fmt="JPEG")
    labels = ["螺丝连接点／ＢＢＵ安装螺丝／连接正确\u200b", "螺丝\u200b连接点/BBU安装螺丝/连接正常"]
    (src / "a.json").write_text(json.dumps({"markResult": {"features": [feature(x) for x in labels]}},
                                           ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "ds"
    convert_dataset(src, out, ConvertOptions(val_ratio=0, teachers=0))
    assert [o.desc for o in read_records(out / "train.jsonl")[0].objects] == [SCREW]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(errors) == 1
    assert "'螺丝\\u200b连接点/BBU安装螺丝/连接正常'" in errors[0]["reason"]
    assert f"nearest known label: '{SCREW}'" in errors[0]["reason"]


def test_convert_pairs_a_json_and_a_photo_whose_names_are_composed_differently(tmp_path):
    src = tmp_path / "export"
    photo(src / "cafe\u0301.jpg", fmt="JPEG")  # NFD, as macOS names files
    (src / "caf\u00e9.json").write_text(json.dumps({"markResult": {"features": [feature(SCREW)]}}, ensure_ascii=False),
                                        encoding="utf-8")
    summary = convert_dataset(src, tmp_path / "ds", ConvertOptions(val_ratio=0, teachers=0))
    assert summary["photos"]["converted"] == 1


def test_import_coco_writes_known_labels_in_the_hierarchys_spelling(tmp_path):
    photo(tmp_path / "images" / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 2, 20, 20], "iscrowd": 0}],
            "categories": [{"id": 7, "name": "bbu基带处理单元／华为\u200b"}]}
    ann = tmp_path / "instances.json"
    ann.write_bytes(b"\xef\xbb\xbf" + json.dumps(coco, ensure_ascii=False).encode("utf-8"))
    r = CliRunner().invoke(app, ["data", "import-coco", str(ann), str(tmp_path / "images"), str(tmp_path / "ds"),
                                 "--val-ratio", "0", "--teachers", "0"])
    assert r.exit_code == 0, r.output
    assert "not in the hierarchy" not in r.output
    assert read_records(tmp_path / "ds" / "train.jsonl")[0].objects[0].desc == BBU


def test_eval_scores_a_label_typed_differently_as_the_same_label(tmp_path):
    photo(tmp_path / "images" / "a.png")
    gt = write_jsonl(tmp_path / "val.jsonl", [record("images/a.png", "ｂｂｕ基带处理单元／华为")])
    pred = write_jsonl(tmp_path / "pred.jsonl", [
        {"image": str(tmp_path / "images" / "a.png"), "width": 64, "height": 48,
         "objects": [{"bbox_2d": [2, 2, 9, 20], "label": BBU + "\u200b", "score": 0.9}], "raw": None, "error": None}])
    out = tmp_path / "metrics.json"
    r = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out)])
    assert r.exit_code == 0, r.output
    metrics = json.loads(out.read_text(encoding="utf-8"))
    assert metrics["errors"]["mislabelled"] == 0 and metrics["AP50"] == 1.0
    assert list(metrics["per_category"]) == ["ｂｂｕ基带处理单元/华为"]  # scored under the ground truth's spelling


def test_labels_json_counts_a_label_typed_two_ways_once():
    records = [ImageRecord.model_validate(record("a.png", SCREW, "螺丝连接点/ＢＢＵ安装螺丝/连接正确", BBU))]
    assert label_counts(records)["labels"] == {SCREW: 2, BBU: 1}


def test_control_characters_in_a_predictions_file_are_shown_spelled_out_never_sent_to_the_terminal(tmp_path):
    photo(tmp_path / "images" / "a.png")
    gt = write_jsonl(tmp_path / "val.jsonl", [record("images/a.png", SCREW, BBU)])
    boxes = record("images/a.png", SCREW, BBU)["objects"]
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"image": "images/a.png", "objects": [
        {"bbox_2d": o["bbox_2d"], "label": o["desc"] + "\x1b[2J\r", "score": 0.9} for o in boxes]}])
    r = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\r" not in r.output
    assert "\\x1b[2J" in r.output  # the model's label as it wrote it, readable
