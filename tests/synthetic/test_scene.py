"""Synthetic photos: deterministic, valid, drawn where the boxes say, and exported like the platform does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image, ImageOps
from typer.testing import CliRunner

from bbuvl.cli.data_synth import synth
from bbuvl.data.coords import box_inside, box_is_degenerate, orient_box
from bbuvl.data.images import EXIF_ORIENTATION
from bbuvl.data.labels import SEP, Hierarchy, TokenMap
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.synthetic.camera import render_scene
from bbuvl.synthetic.dataset import image_seed, synthesize
from bbuvl.synthetic.export import PlatformNames
from bbuvl.synthetic.scene import ALL_LABELS, MAX_OBJECTS

SIZE = (320, 240)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def jsonl_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "jsonl"
    synthesize(out, 8, 2, seed=3, size=SIZE, num_teachers=3)
    return out


@pytest.fixture(scope="module")
def vendor_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "vendor"
    synthesize(out, 36, 4, seed=3, size=SIZE, fmt="vendor")
    return out


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, list]]:
    return [(np.asarray(img).astype(np.int32), objs) for img, objs in (render_scene(image_seed(0, "train", i), SIZE) for i in range(40))]


# --- determinism ---------------------------------------------------------------------------------


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_same_seed_writes_byte_identical_files_whatever_the_number_of_workers(jsonl_set, tmp_path):
    synthesize(tmp_path / "again", 8, 2, seed=3, size=SIZE, num_teachers=3, workers=2)
    assert file_hashes(tmp_path / "again") == file_hashes(jsonl_set)
    assert len(file_hashes(jsonl_set)) == 10 + 5  # photos + train/val/teachers jsonl, labels.json, summary.json


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_vendor_export_is_byte_identical_for_a_seed(tmp_path):
    synthesize(tmp_path / "a", 12, 0, seed=5, size=SIZE, fmt="vendor")
    synthesize(tmp_path / "b", 12, 0, seed=5, size=SIZE, fmt="vendor", workers=2)
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")


def test_different_seeds_give_different_photos(jsonl_set, tmp_path):
    synthesize(tmp_path / "other", 8, 2, seed=4, size=SIZE, num_teachers=3)
    a, b = file_hashes(jsonl_set), file_hashes(tmp_path / "other")
    photos = [k for k in a if k.startswith("images/")]
    assert all(a[k] != b[k] for k in photos)
    assert len({a[k] for k in photos}) == len(photos)  # and the photos of one run all differ


def test_render_scene_depends_only_on_its_seed():
    img1, objs1 = render_scene(11, SIZE)
    render_scene(12, SIZE)
    img2, objs2 = render_scene(11, SIZE)
    assert img1.tobytes() == img2.tobytes() and objs1 == objs2
    assert img1.size == SIZE and img1.mode == "RGB"


# --- the canonical dataset -----------------------------------------------------------------------


def test_every_record_is_valid_with_boxes_inside_their_photo_and_known_labels(jsonl_set):
    hierarchy = Hierarchy.load()
    for split, n in (("train", 8), ("val", 2)):
        records = read_records(jsonl_set / f"{split}.jsonl")
        assert len(records) == n
        for rec in records:
            with Image.open(resolve_image(jsonl_set / f"{split}.jsonl", rec.image)) as im:
                assert im.size == rec.size == SIZE
            assert 3 <= len(rec.objects) <= MAX_OBJECTS
            assert [o.bbox_2d[1::-1] for o in rec.objects] == sorted(o.bbox_2d[1::-1] for o in rec.objects)
            for o in rec.objects:
                assert hierarchy.is_valid(o.desc), o.desc
                assert box_inside(o.bbox_2d, rec.size) and not box_is_degenerate(o.bbox_2d, min_side=3), (rec.image, o)
                assert all(round(v, 1) == v for v in o.bbox_2d)
    summary = json.loads((jsonl_set / "summary.json").read_text(encoding="utf-8"))
    assert summary["images"] == {"train": 8, "val": 2, "teachers": 3} and summary["seed"] == 3


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_forty_photos_show_every_label_of_the_hierarchy(scenes):
    assert set(ALL_LABELS) == set(Hierarchy.load().labels())
    seen = {o.desc for _, objs in scenes for o in objs}
    assert seen == set(Hierarchy.load().labels())


def test_connection_points_are_big_enough_to_see_after_the_model_downsizes_the_photo(scenes):
    for _, objs in scenes:
        for o in objs:
            if o.desc.startswith("螺丝连接点"):
                x1, y1, x2, y2 = o.bbox_2d
                assert min(x2 - x1, y2 - y1) >= 0.03 * SIZE[0], o


def test_boxes_of_different_parts_barely_overlap_except_inside_a_bbu_or_the_cabinet_space(scenes):
    containers = ("bbu基带处理单元", "机柜空间")
    for _, objs in scenes:
        parts = [o for o in objs if not o.desc.startswith(containers)]
        for i, a in enumerate(parts):
            for b in parts[i + 1:]:
                ix = max(0.0, min(a.bbox_2d[2], b.bbox_2d[2]) - max(a.bbox_2d[0], b.bbox_2d[0]))
                iy = max(0.0, min(a.bbox_2d[3], b.bbox_2d[3]) - max(a.bbox_2d[1], b.bbox_2d[1]))
                smaller = min((o.bbox_2d[2] - o.bbox_2d[0]) * (o.bbox_2d[3] - o.bbox_2d[1]) for o in (a, b))
                assert ix * iy <= 0.2 * smaller, (a, b)


def crop(pixels: np.ndarray, box: list[float]) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return pixels[y1:y2, x1:x2].reshape(-1, 3)


def test_objects_are_drawn_where_their_boxes_say(scenes):
    stickers_yellow, n_stickers = 0, 0
    for pixels, objs in scenes:
        mean = pixels.mean()
        for o in objs:
            c = crop(pixels, o.bbox_2d)
            r, g, b = c[:, 0], c[:, 1], c[:, 2]
            if o.desc.startswith("bbu基带处理单元"):
                assert c.std() > 15, o  # a panel with ports, logo and ears, not a flat wall
            elif o.desc == "标签贴纸":
                n_stickers += 1
                stickers_yellow += ((r > b + 60) & (g > b + 40)).mean() > 0.3
            elif SEP + "CPRI" in o.desc:
                assert ((b > r + 60) & (b > g + 20)).mean() > 0.1, o  # blue head
                assert ((c.max(1) - c.min(1) < 45) & (c.mean(1) > 0.8 * mean + 40)).mean() > 0.15, o  # white body
            elif "ODF" in o.desc:
                assert ((g > r + 30) & (g > b + 10)).mean() > 0.15, o  # green pigtail plug
            elif o.desc == "挡风板/未安装":
                assert c.mean() < 0.6 * mean, o  # an empty dark slot
            elif o.desc == "挡风板/已安装":
                assert c.std() > 5, o  # a ribbed plate
    assert n_stickers >= 10 and stickers_yellow >= 0.7 * n_stickers


def test_wrong_connections_are_drawn_differently_from_correct_ones(scenes):
    # The same kind of part in its two states must not look alike: compare the darkness inside the box
    # (an empty hole or an exposed port is black) over all photos.
    dark = {True: [], False: []}
    for pixels, objs in scenes:
        for o in objs:
            if o.desc.startswith("螺丝连接点/CPRI"):
                c = crop(pixels, o.bbox_2d)
                dark[o.desc.endswith("连接正确")].append((c.mean(1) < 0.35 * pixels.mean()).mean())
    assert np.mean(dark[False]) > 2 * np.mean(dark[True])


# --- the platform export -------------------------------------------------------------------------


def test_platform_names_invert_the_shipped_token_map():
    names = PlatformNames()
    assert names.zh("螺丝连接点/BBU安装螺丝/连接正确") == "连接点（螺丝）/BBU安装螺丝/连接正确"
    assert names.zh("螺丝连接点/BBU安装螺丝/连接正确", alt_state=True) == "连接点（螺丝）/BBU安装螺丝/安装正确"
    assert SEP.join(names.en("螺丝连接点/BBU安装螺丝/连接正确")) == "connection_point/install_screw/install_screw_true"
    assert names.zh("标签贴纸") == "标签"
    assert names.zh("bbu基带处理单元/华为") == "BBU品牌/华为" and names.en("bbu基带处理单元/华为") == ["bbu", "huawei"]


def test_a_token_map_that_cannot_express_a_label_is_refused():
    broken = TokenMap({"线缆": "电缆"}, source="broken.json")  # the canonical name itself now maps elsewhere
    with pytest.raises(ValueError, match="broken.json"):
        PlatformNames(broken)


def ring(coords) -> list[list[float]]:
    while isinstance(coords[0][0], list):
        coords = coords[0]
    return coords


def vendor_objects(doc: dict, tokens: TokenMap) -> list[tuple[list[float], str, str]]:
    """(box, label from English names, label from Chinese names) per object, read the way a converter would."""
    out = []
    if "dataList" in doc:
        for item in doc["dataList"]:
            (x1, y1), (x2, y2) = item["coordinates"]
            props = item["properties"]
            keys = ("object_type", "property", "extra_info") if "object_type" in props else ("label", "question", "question_ex")
            label = tokens.map_path([props[k] for k in keys])
            out.append(([x1, y1, x2, y2], label, label))
        return out
    for f in doc["markResult"]["features"]:
        pts = ring(f["geometry"]["coordinates"])
        assert f["geometry"]["type"] == "ExtentPolygon" and len(pts) == 5 and pts[0] == pts[-1]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        props = f["properties"]
        out.append(([min(xs), min(ys), max(xs), max(ys)], tokens.map_path(props["content"]["label"]), tokens.map_path(props["contentZh"]["标签"])))
    return out


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_vendor_export_holds_the_same_scenes_under_platform_names(vendor_set):
    tokens = TokenMap.load()
    shapes, keys = set(), set()
    docs = sorted((vendor_set / "annotations").glob("*.json"))
    assert [p.stem for p in docs] == sorted(p.stem for p in (vendor_set / "images").glob("*.jpg")) and len(docs) == 40
    for path in docs:
        doc = json.loads(path.read_text(encoding="utf-8"))
        shapes.add("dataList" if "dataList" in doc else "FeatureCollection")
        assert {"info", "statistics", "workload", "quality"} <= doc.keys() and doc["info"]["depth"] == 3
        if "markResult" in doc:
            assert {"tagInfo", "version"} <= doc.keys()
            keys |= {k for f in doc["markResult"]["features"] for k in f["properties"]["contentZh"]}
        split, i = path.stem.split("_")
        _, truth = render_scene(image_seed(3, split, int(i)), SIZE)
        with Image.open(vendor_set / "images" / f"{path.stem}.jpg") as im:
            rotated = im.getexif().get(EXIF_ORIENTATION, 1) != 1
        if rotated:
            continue  # checked pixel by pixel below
        got = vendor_objects(doc, tokens)
        assert [label_en for _, label_en, _ in got] == [o.desc for o in truth] == [label_zh for _, _, label_zh in got], path
        for (box, _, _), o in zip(got, truth):
            assert box == pytest.approx(o.bbox_2d, abs=0.01)
    assert shapes == {"dataList", "FeatureCollection"}
    assert "备注" in keys  # free-text remarks beside the label


def test_unrotated_vendor_photos_are_the_same_files_as_the_canonical_dataset(vendor_set, jsonl_set):
    same = [p.name for p in (jsonl_set / "images").glob("*.jpg")]
    for name in same:
        with Image.open(vendor_set / "images" / name) as im:
            if im.getexif().get(EXIF_ORIENTATION, 1) != 1:
                continue
        assert (vendor_set / "images" / name).read_bytes() == (jsonl_set / "images" / name).read_bytes(), name


def test_exif_rotated_vendor_photos_show_upright_and_their_boxes_cover_the_right_pixels(vendor_set):
    tokens = TokenMap.load()
    frames = set()
    for path in sorted((vendor_set / "annotations").glob("*.json")):
        with Image.open(vendor_set / "images" / f"{path.stem}.jpg") as im:
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
            if orientation == 1:
                continue
            raw_size = im.size
            shown = np.asarray(ImageOps.exif_transpose(im)).astype(np.int32)
        split, i = path.stem.split("_")
        upright, truth = render_scene(image_seed(3, split, int(i)), SIZE)
        assert raw_size == SIZE[::-1] and shown.shape[1::-1] == SIZE
        assert np.abs(shown - np.asarray(upright).astype(np.int32)).mean() < 4  # only JPEG differences
        doc = json.loads(path.read_text(encoding="utf-8"))
        info = (doc["info"]["width"], doc["info"]["height"])
        frame = "raw" if info == raw_size else "displayed"
        assert info in (raw_size, SIZE)
        frames.add((orientation, frame))
        for (box, label, _), o in zip(vendor_objects(doc, tokens), truth):
            displayed = orient_box(box, raw_size, orientation) if frame == "raw" else box
            assert label == o.desc and displayed == pytest.approx(o.bbox_2d, abs=0.01)
            if o.desc.startswith("bbu基带处理单元"):
                ref = crop(np.asarray(upright).astype(np.int32), o.bbox_2d)
                assert np.abs(crop(shown, displayed) - ref).mean() < 6
    assert frames == {(6, "displayed"), (8, "displayed"), (6, "raw"), (8, "raw")}


# --- bad input and the command -------------------------------------------------------------------


def test_a_folder_holding_files_of_another_run_is_refused(tmp_path):
    synthesize(tmp_path / "d", 3, 0, seed=1, size=SIZE)
    synthesize(tmp_path / "d", 3, 0, seed=1, size=SIZE)  # rewriting the same files is fine
    with pytest.raises(ValueError, match=r"train_00002\.jpg"):
        synthesize(tmp_path / "d", 2, 0, seed=1, size=SIZE)


@pytest.mark.parametrize("kwargs, message", [
    ({"size": (64, 48)}, "too small"),
    ({"fmt": "coco"}, "format"),
    ({"n_train": 0, "n_val": 0}, "positive number"),
])
def test_impossible_requests_fail_with_a_clear_message(tmp_path, kwargs, message):
    args = {"n_train": 2, "n_val": 0, "size": SIZE} | kwargs
    with pytest.raises(ValueError, match=message):
        synthesize(tmp_path / "x", args.pop("n_train"), args.pop("n_val"), **args)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is invoked by name as under `bbuvl data`
    app.command("synth")(synth)
    return app


def test_synth_command_writes_a_dataset_and_prints_its_summary(tmp_path):
    result = CliRunner().invoke(cli(), ["synth", str(tmp_path / "d"), "--n-train", "4", "--n-val", "1", "--size", "200x150", "--seed", "2", "--teachers", "2"])
    assert result.exit_code == 0, result.output
    assert len(read_records(tmp_path / "d" / "train.jsonl")) == 4 and len(read_records(tmp_path / "d" / "teachers.jsonl")) == 2
    assert "螺丝连接点" in result.output and str(tmp_path / "d") in result.output.replace("\n", "")


def test_synth_command_writes_a_vendor_export(tmp_path):
    result = CliRunner().invoke(cli(), ["synth", str(tmp_path / "v"), "--n-train", "3", "--n-val", "1", "--size", "200x150", "--format", "vendor"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "v" / "annotations").glob("*.json"))) == 4 and "FeatureCollection" in result.output


@pytest.mark.parametrize("args, message", [(["--format", "coco"], "--format"), (["--size", "640by480"], "WIDTHxHEIGHT"), (["--size", "50x50"], "too small")])
def test_synth_command_rejects_bad_options_with_exit_code_2(tmp_path, args, message):
    result = CliRunner().invoke(cli(), ["synth", str(tmp_path / "d"), *args])
    assert result.exit_code == 2 and message in result.output
