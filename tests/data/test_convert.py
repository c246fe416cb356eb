"""Vendor export -> canonical dataset (bbuvl.data.convert and `bbuvl data convert`)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image, ImageDraw, ImageOps
from typer.testing import CliRunner

from bbuvl.cli.common import command_group
from bbuvl.cli.data_convert import convert
from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.data.coords import CoordinateContract, scale_box
from bbuvl.data.images import IMAGE_SUFFIXES
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import read_records
from bbuvl.synthetic.dataset import synthesize
from bbuvl.outputs import LEDGER

RED = (220, 30, 30)
GREY = (128, 128, 128)
SIZE = (160, 96)  # raw pixel grid of every test photo (width, height)
OBJ = (30, 20, 70, 50)  # where the red object is drawn on the raw grid
SCREW = "连接点（螺丝）/BBU安装螺丝/连接正确"  # platform spelling; canonical is 螺丝连接点/BBU安装螺丝/连接正确


# --- building a vendor export in tmp_path ------------------------------------------------------


_DRAWN = itertools.count(1)


def drawn(size=SIZE, box=OBJ, mode="RGB", bg=GREY, fg=RED) -> Image.Image:
    img = Image.new(mode, size, bg)
    ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=fg)
    # Each photo its own: convert keeps one of photos stored alike (one photo exported under two names).
    ImageDraw.Draw(img).line([(0, size[1] - 1), (size[0] - 1, size[1] - 1)], fill=_mark(mode, next(_DRAWN)))
    return img


def _mark(mode: str, n: int):
    """A light grey of shade `n` in `mode`: never red nor dark, so no test's search for the drawn object finds it."""
    shade = 150 + 7 * n % 80
    return {"L": shade, "RGBA": (shade, shade, shade, 255), "CMYK": (0, 0, 0, 255 - shade)}.get(mode, (shade, shade, shade))


def save_jpeg(img: Image.Image, path: Path, orientation: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    img.save(path, "JPEG", quality=95, **kwargs)


def red_bbox(img: Image.Image) -> list[int]:
    """Bounding box [x1, y1, x2, y2) of the red pixels: where the drawn object really is."""
    a = np.asarray(img.convert("RGB")).astype(int)
    mask = (a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100)
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def displayed_red_bbox(path: Path) -> tuple[list[int], tuple[int, int]]:
    """Where a viewer that honours EXIF shows the object, and the displayed size."""
    with Image.open(path) as im:
        shown = ImageOps.exif_transpose(im)
        return red_bbox(shown), shown.size


def rect(box) -> list[list[float]]:
    x1, y1, x2, y2 = box
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]


def feature(box, zh_label=None, en_label=None, **extra_zh) -> dict:
    props: dict = {}
    if en_label:
        props["content"] = {"label": en_label}
    if zh_label:
        props["contentZh"] = {"标签": zh_label, **extra_zh}
    return {"type": "Feature", "geometry": {"type": "ExtentPolygon", "coordinates": [rect(box)]}, "properties": props}


def shape_a(path: Path, features: list[dict], info: tuple[int, int] | None) -> None:
    data = {"tagInfo": {"dataId": path.stem}, "version": "2.1",
            "markResult": {"type": "FeatureCollection", "features": features},
            "statistics": {"count": len(features)}, "workload": {"annotator": "A-1"}, "quality": {"passed": True}}
    if info:
        data["info"] = {"width": info[0], "height": info[1], "depth": 3}
    write_json(path, data)


def shape_b(path: Path, items: list[tuple[list[float], dict]], info: tuple[int, int] | None) -> None:
    data: dict = {"dataList": [{"coordinates": [[b[0], b[1]], [b[2], b[3]]], "properties": p} for b, p in items]}
    if info:
        data["info"] = {"width": info[0], "height": info[1]}
    write_json(path, data)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def build_export(src: Path) -> None:
    """A messy export: both shapes, EXIF rotations both ways, odd image modes and broken files."""
    # a: Chinese shape, a remark, plus one small overshoot (clipped), one duplicate, one box off the image.
    save_jpeg(drawn(), src / "site1" / "a_plain.jpg")
    shape_a(src / "site1" / "a_plain.json", [
        feature(OBJ, SCREW, 备注="拧紧"),
        feature(OBJ, SCREW),  # exact duplicate
        feature((150, 80, 163, 98), "挡风板/已安装"),  # 3 px past the edge: clipped
        feature((500, 500, 600, 600), "线缆"),  # entirely outside: error line
    ], info=SIZE)
    # b: old shape, JSON in a separate folder, PNG; one unknown label.
    drawn().save(src / "b_old.png")
    shape_b(src / "ann" / "b_old.json", [
        (list(OBJ), {"object_type": "bbu", "property": "zte"}),
        ([5, 5, 20, 20], {"object_type": "spaceship", "property": "zte"}),
    ], info=SIZE)
    # c/e: EXIF-rotated, annotated on the raw grid (info = raw size).
    for stem, orientation in (("c_rot6_raw", 6), ("e_rot8_raw", 8)):
        save_jpeg(drawn(), src / f"{stem}.jpg", orientation)
        shape_a(src / f"{stem}.json", [feature(OBJ, "挡风板/未安装")], info=SIZE)
    # d: rotated 6, annotated as displayed, old shape without info.
    save_jpeg(drawn(), src / "d_rot6_disp.jpg", 6)
    box, _ = displayed_red_bbox(src / "d_rot6_disp.jpg")
    shape_b(src / "d_rot6_disp.json", [(box, {"label": "cabinet_space", "question": "full"})], info=None)
    # f: rotated 8, annotated as displayed at twice the resolution.
    save_jpeg(drawn(), src / "f_rot8_disp.jpg", 8)
    box, shown = displayed_red_bbox(src / "f_rot8_disp.jpg")
    shape_a(src / "f_rot8_disp.json", [feature([2 * v for v in box], en_label="label")],
            info=(2 * shown[0], 2 * shown[1]))
    # g: PNG with alpha (transparent background), h: CMYK JPEG, i: greyscale PNG.
    drawn(mode="RGBA", bg=(0, 0, 0, 0), fg=RED + (255,)).save(src / "g_alpha.png")
    shape_a(src / "g_alpha.json", [feature(OBJ, "标签")], info=SIZE)
    save_jpeg(drawn(mode="CMYK", bg=(0, 0, 0, 127), fg=(0, 230, 230, 0)), src / "h_cmyk.jpg")
    shape_a(src / "h_cmyk.json", [feature(OBJ, "BBU品牌/华为")], info=SIZE)
    drawn(mode="L", bg=200, fg=20).save(src / "i_grey.png")
    shape_a(src / "i_grey.json", [feature(OBJ, "线缆")], info=SIZE)
    # Broken: truncated JPEG, JSON that is not JSON, wrong size ratio, orphans, an ambiguous stem.
    save_jpeg(drawn(), src / "j_trunc.jpg")
    data = (src / "j_trunc.jpg").read_bytes()
    (src / "j_trunc.jpg").write_bytes(data[: len(data) // 2])
    shape_a(src / "j_trunc.json", [feature(OBJ, "线缆")], info=SIZE)
    save_jpeg(drawn(), src / "k_notjson.jpg")
    (src / "k_notjson.json").write_text('{"markResult": {"features": [', encoding="utf-8")
    save_jpeg(drawn(), src / "l_ratio.jpg")
    shape_a(src / "l_ratio.json", [feature(OBJ, "线缆")], info=(100, 100))
    shape_a(src / "m_orphan.json", [feature(OBJ, "线缆")], info=SIZE)
    save_jpeg(drawn(), src / "n_lonely.jpg")
    # One JSON, and an image of its name in each of two other folders: which one it annotates is a guess.
    save_jpeg(drawn(), src / "site2" / "o_dup.jpg")
    drawn().save(src / "site1" / "o_dup.png")
    shape_a(src / "o_dup.json", [feature(OBJ, "线缆")], info=SIZE)


GOOD = ["a_plain", "b_old", "c_rot6_raw", "d_rot6_disp", "e_rot8_raw", "f_rot8_disp", "g_alpha", "h_cmyk", "i_grey"]
BAD = {"j_trunc": "cannot decode image", "k_notjson": "not valid JSON", "l_ratio": "does not match image",
       "m_orphan": "no image named", "n_lonely": "no annotation JSON", "o_dup": "ambiguous stem"}


def cli_app() -> typer.Typer:
    # Only our command: the sibling `data` commands are developed separately.
    app = command_group()  # a group, so `convert` stays a subcommand as under `bbuvl data`; its outputs are released
    app.command("convert")(convert)
    return app


def run_cli(*args: str):
    return CliRunner().invoke(cli_app(), ["convert", *map(str, args)])


def records_by_id(out: Path) -> dict:
    return {r.id: r for name in ("train.jsonl", "val.jsonl") for r in read_records(out / name)}


def errors(out: Path) -> list[dict]:
    """The lines of errors.jsonl but those naming a near-copy: the photos here are drawn alike (one red box on grey),
    so each is a near-copy of the first; those lines are tests/data/test_near_copies.py's."""
    lines = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    return [e for e in lines if "near_copy_of" not in e]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("export")
    build_export(src)
    return src


@pytest.fixture(scope="module")
def converted(export, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    result = run_cli(export, out, "--workers", "1", "--teachers", "3")
    return out, result


# --- the acceptance test -----------------------------------------------------------------------


def test_cli_converts_every_good_object_lists_every_bad_one_and_prints_a_summary(converted):
    out, result = converted
    assert result.exit_code == 0, result.output
    assert "photos converted" in result.output and "errors.jsonl" in result.output
    recs = records_by_id(out)
    assert sorted(recs) == GOOD
    errs = errors(out)
    file_errors = {Path(e["file"]).stem: e["reason"] for e in errs if e["object"] is None}
    assert set(file_errors) == set(BAD)
    for stem, reason in BAD.items():
        assert reason in file_errors[stem], file_errors[stem]
    object_errors = {(e["file"], e["object"]): e for e in errs if e["object"] is not None}
    assert set(object_errors) == {("site1/a_plain.json", 3), ("ann/b_old.json", 1)}
    assert "outside" in object_errors[("site1/a_plain.json", 3)]["reason"]
    assert object_errors[("ann/b_old.json", 1)]["label"] == "spaceship/zte"
    assert "unknown category 'spaceship'" in object_errors[("ann/b_old.json", 1)]["reason"]

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    # o_dup's two images are two photos lost, each counted (they were counted one)
    assert summary["photos"] == {"found": 16, "converted": 9, "failed": 7, "folded": 0, "folded_with_other_boxes": 0,
                                 "with_dropped_objects": 2}
    assert summary["annotations"]["converted"] == 10
    assert summary["annotations"]["dropped"] == 2
    assert summary["annotations"]["duplicates"] == 1
    assert summary["annotations"]["clipped"] == 1
    # d_rot6_disp gives no size, and its box lies within both grids: displayed is assumed, and said
    assert summary["exif"] == {"rotated": 4, "annotated_on_raw": 2, "annotated_on_displayed": 2, "assumed_displayed": 1}
    assert summary["categories"]["螺丝连接点"] == 1


def test_every_box_lands_on_the_drawn_object_in_the_stored_upright_image(converted):
    out, _ = converted
    for stem, rec in records_by_id(out).items():
        img = Image.open(out / rec.image)
        assert img.format == "JPEG" and img.mode == "RGB", stem
        assert img.getexif().get(0x0112, 1) == 1, stem  # upright as stored: no rotation left to apply
        assert img.size == (rec.width, rec.height), stem
        if stem in ("c_rot6_raw", "d_rot6_disp", "e_rot8_raw", "f_rot8_disp"):
            assert img.size == (SIZE[1], SIZE[0]), stem
        if stem == "i_grey":
            continue  # no red in it: checked below
        obj = next(o for o in rec.objects if o.bbox_2d[2] - o.bbox_2d[0] > 20)
        assert obj.bbox_2d == pytest.approx(red_bbox(img), abs=2), stem


@pytest.mark.parametrize("raw", [(100, 99), (197, 200)])
def test_a_square_annotation_of_a_nearly_square_turned_photo_lands_on_its_object_as_displayed(tmp_path, raw):
    # Its shape is as near the photo's raw grid as the displayed one: the sizes cannot tell which it was drawn on, so
    # it is read as displayed and counted as assumed. Read on the raw grid, as rounding had chosen for 100x99, its box
    # was turned a quarter away from the object.
    save_jpeg(drawn(size=raw, box=(10, 5, 40, 25)), tmp_path / "export" / "turned.jpg", orientation=6)
    shown, shown_size = displayed_red_bbox(tmp_path / "export" / "turned.jpg")
    frame = 100 / shown_size[0], 100 / shown_size[1]  # the annotator's 100x100 view of it
    box = [shown[0] * frame[0], shown[1] * frame[1], shown[2] * frame[0], shown[3] * frame[1]]
    shape_a(tmp_path / "export" / "turned.json", [feature(box, SCREW)], (100, 100))
    summary = convert_dataset(tmp_path / "export", tmp_path / "out", ConvertOptions(val_ratio=0.0))
    [rec] = records_by_id(tmp_path / "out").values()
    assert rec.objects[0].bbox_2d == pytest.approx(shown, abs=1)
    assert summary["exif"] == {"rotated": 1, "annotated_on_raw": 0, "annotated_on_displayed": 1, "assumed_displayed": 1}


def test_odd_image_modes_are_stored_as_plain_rgb(converted):
    out, _ = converted
    recs = records_by_id(out)
    alpha = Image.open(out / recs["g_alpha"].image)
    assert alpha.getpixel((2, 2)) == pytest.approx((255, 255, 255), abs=3)  # transparent -> white, not black
    cmyk = Image.open(out / recs["h_cmyk"].image)
    assert cmyk.getpixel((50, 35)) == pytest.approx((255, 25, 25), abs=12)
    grey = np.asarray(Image.open(out / recs["i_grey"].image)).astype(int)
    ys, xs = np.nonzero(grey[..., 0] < 100)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == pytest.approx(recs["i_grey"].objects[0].bbox_2d, abs=2)


def test_labels_are_canonical_with_the_state_kept_and_remarks_as_extra(converted):
    out, _ = converted
    recs = records_by_id(out)
    a = recs["a_plain"].objects
    assert [o.desc for o in a] == ["螺丝连接点/BBU安装螺丝/连接正确", "挡风板/已安装"]
    assert a[0].extra == {"备注": "拧紧"}
    assert a[1].bbox_2d == [150, 80, 160, 96]  # clipped to the image
    assert [o.desc for o in recs["b_old"].objects] == ["bbu基带处理单元/中兴"]
    assert recs["d_rot6_disp"].objects[0].desc == "机柜空间/满载"
    assert recs["f_rot8_disp"].objects[0].desc == "标签贴纸"
    assert recs["h_cmyk"].objects[0].desc == "bbu基带处理单元/华为"
    assert recs["a_plain"].source == "site1/a_plain.json"


def test_cli_exits_1_when_nothing_could_be_converted(tmp_path):
    src = tmp_path / "src"
    save_jpeg(drawn(), src / "x.jpg")
    (src / "x.json").write_text("not json", encoding="utf-8")
    shape_a(src / "y.json", [feature(OBJ, "线缆")], info=SIZE)
    result = run_cli(src, tmp_path / "out", "--workers", "1")
    assert result.exit_code == 1
    assert [Path(e["file"]).stem for e in errors(tmp_path / "out")] == ["x", "y"]
    assert not (tmp_path / "out" / "train.jsonl").exists()


# --- labels ------------------------------------------------------------------------------------


def one_photo(src: Path, features: list[dict], stem: str = "p") -> None:
    save_jpeg(drawn(), src / f"{stem}.jpg")
    shape_a(src / f"{stem}.json", features, info=SIZE)


def test_state_is_validated_never_dropped(tmp_path):
    src = tmp_path / "src"
    one_photo(src, [
        feature(OBJ, "连接点（螺丝）/CPRI光缆和BBU连接点/安装正确"),  # platform synonym of the state
        feature((80, 10, 90, 20), "连接点（螺丝）/BBU安装螺丝"),  # state missing: an error, not a shorter label
        feature((80, 30, 90, 40), "连接点（螺丝）/BBU安装螺丝/拧歪了"),  # unknown state: an error
    ])
    summary = convert_dataset(src, tmp_path / "out", ConvertOptions(val_ratio=0))
    (rec,) = read_records(tmp_path / "out" / "train.jsonl")
    assert [o.desc for o in rec.objects] == ["螺丝连接点/CPRI光缆和BBU连接点/连接正确"]
    errs = errors(tmp_path / "out")
    assert [e["object"] for e in errs] == [1, 2]
    assert "lacks a state" in errs[0]["reason"] and "unknown state '拧歪了'" in errs[1]["reason"]
    assert summary["annotations"]["dropped"] == 2


def test_box_far_past_the_edge_or_degenerate_is_an_error_a_slight_overshoot_is_clipped(tmp_path):
    src = tmp_path / "src"
    one_photo(src, [
        feature((-4, 10, 40, 50), "线缆"),  # 4 px past the left edge (tolerance max(4 px, 2%)): clipped
        feature((100, 10, 190, 50), "线缆"),  # 30 px past the right edge: wrong coordinates
        feature((60, 60, 60.5, 90), "线缆"),  # half a pixel wide
        feature((150, 90, 170, 110), "线缆"),  # 10 px past the right edge, 14 px past the bottom
    ])
    summary = convert_dataset(src, tmp_path / "out", ConvertOptions(val_ratio=0))
    (rec,) = read_records(tmp_path / "out" / "train.jsonl")
    assert [o.bbox_2d for o in rec.objects] == [[0, 10, 40, 50]]
    reasons = {e["object"]: e["reason"] for e in errors(tmp_path / "out")}
    assert "extends 30.0 px beyond the 160x96 image along x" in reasons[1]
    assert "degenerate" in reasons[2]
    assert "extends 10.0 px beyond the 160x96 image along x" in reasons[3]
    assert summary["annotations"]["clipped"] == 1


def test_photo_whose_objects_all_fail_is_dropped_not_kept_empty(tmp_path):
    src = tmp_path / "src"
    one_photo(src, [feature(OBJ, "spaceship")], stem="bad")
    one_photo(src, [], stem="empty")  # annotated and nothing found: a real negative photo
    summary = convert_dataset(src, tmp_path / "out", ConvertOptions(val_ratio=0))
    assert [r.id for r in read_records(tmp_path / "out" / "train.jsonl")] == ["empty"]
    assert summary["photos"]["failed"] == 1
    assert any("none of its 1 objects" in e["reason"] for e in errors(tmp_path / "out"))


def test_user_token_map_and_hierarchy_files_are_used(tmp_path):
    src = tmp_path / "src"
    one_photo(src, [feature(OBJ, "风挡/已安装"), feature((80, 10, 120, 40), "电源/正常")])
    token_map = tmp_path / "tokens.json"
    write_json(token_map, {"tokens": {"风挡": "挡风板"}})
    hierarchy = json.loads(Path(Hierarchy.load().source).read_text(encoding="utf-8"))
    hierarchy["categories"]["电源"] = {"gloss": "power supply", "attributes": {"正常": {"gloss": "normal"}}}
    write_json(tmp_path / "h.json", hierarchy)
    opts = ConvertOptions(val_ratio=0, token_map=token_map, hierarchy=tmp_path / "h.json", lang="en")
    convert_dataset(src, tmp_path / "out", opts)
    (rec,) = read_records(tmp_path / "out" / "train.jsonl")
    assert [o.desc for o in rec.objects] == ["power supply/normal", "air baffle/installed"]  # sorted by y1


def test_lang_en_writes_the_hierarchy_glosses(export, converted, tmp_path):
    out_zh, _ = converted
    result = run_cli(export, tmp_path / "en", "--workers", "1", "--teachers", "3", "--lang", "en")
    assert result.exit_code == 0, result.output
    zh, en = records_by_id(out_zh), records_by_id(tmp_path / "en")
    h = Hierarchy.load()
    for stem in GOOD:
        assert [o.desc for o in en[stem].objects] == [h.english(o.desc) for o in zh[stem].objects]
        assert [o.bbox_2d for o in en[stem].objects] == [o.bbox_2d for o in zh[stem].objects]
    assert all(o.desc.isascii() for r in en.values() for o in r.objects)


# --- determinism, resizing, layout -------------------------------------------------------------


def test_two_workers_write_exactly_what_one_worker_writes(export, converted, tmp_path):
    out1, _ = converted
    out2 = tmp_path / "w2"
    convert_dataset(export, out2, ConvertOptions(workers=2, teachers=3))
    files1 = sorted(p.relative_to(out1) for p in out1.rglob("*") if p.is_file() and p.name != LEDGER)  # only the CLI keeps one
    files2 = sorted(p.relative_to(out2) for p in out2.rglob("*") if p.is_file())
    assert files1 == files2
    for rel in files1:
        a, b = (out1 / rel).read_bytes(), (out2 / rel).read_bytes()
        if rel.name == "summary.json":  # names its source folder; identical otherwise
            a, b = json.loads(a), json.loads(b)
        assert a == b, rel


def test_resize_stores_model_frame_images_with_boxes_scaled(export, converted, tmp_path):
    out1, _ = converted
    contract = CoordinateContract(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 12)
    result = run_cli(export, tmp_path / "rs", "--workers", "1", "--resize", "--teachers", "3",
                     "--min-pixels", contract.min_pixels, "--max-pixels", contract.max_pixels)
    assert result.exit_code == 0, result.output
    plain, resized = records_by_id(out1), records_by_id(tmp_path / "rs")
    for stem in GOOD:
        stored = plain[stem].size
        model = contract.model_size(stored)
        assert model != stored
        rec = resized[stem]
        assert Image.open(tmp_path / "rs" / rec.image).size == model == rec.size
        for p, r in zip(plain[stem].objects, rec.objects):
            assert r.bbox_2d == pytest.approx(scale_box(p.bbox_2d, stored, model), abs=0.01)
    img = Image.open(tmp_path / "rs" / resized["c_rot6_raw"].image)
    assert resized["c_rot6_raw"].objects[0].bbox_2d == pytest.approx(red_bbox(img), abs=2)
    summary = json.loads((tmp_path / "rs" / "summary.json").read_text(encoding="utf-8"))
    assert summary["resized_to_model_frame"] == contract.to_dict()


@pytest.mark.parametrize("source", ["--config", "--checkpoint"])
def test_resize_reads_the_frame_from_a_config_or_a_checkpoint(export, converted, tmp_path, source):
    """The frame (pixel bounds and token budget) is typed once, in the run config, and convert follows it."""
    frame = CoordinateContract(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 40, max_vision_tokens=9)
    if source == "--config":
        where = tmp_path / "run.yaml"
        where.write_text(f"model:\n  family: qwen2_5_vl\n  min_pixels: {frame.min_pixels}\n  max_pixels: {frame.max_pixels}\n"
                         f"  max_vision_tokens: {frame.max_vision_tokens}\n", encoding="utf-8")
    else:
        where = tmp_path / "checkpoint"
        where.mkdir()
        frame.save(where)
    result = run_cli(export, tmp_path / "rs", "--workers", "1", "--resize", "--teachers", "3", source, where)
    assert result.exit_code == 0, result.output
    plain, resized = records_by_id(converted[0]), records_by_id(tmp_path / "rs")
    for stem in GOOD:
        assert resized[stem].size == frame.model_size(plain[stem].size)
        assert frame.vision_tokens(plain[stem].size) <= 9


def test_frame_options_without_resize_are_refused(export, tmp_path):
    result = run_cli(export, tmp_path / "rs", "--min-pixels", 3136)
    assert result.exit_code != 0 and "--resize" in result.output


def test_output_folder_inside_the_source_is_not_read_back(tmp_path):
    src = tmp_path / "src"
    one_photo(src, [feature(OBJ, "线缆")])
    first = convert_dataset(src, src / "dataset", ConvertOptions(val_ratio=0))
    second = convert_dataset(src, src / "dataset", ConvertOptions(val_ratio=0))
    assert first["photos"] == second["photos"] == {"found": 1, "converted": 1, "failed": 0, "folded": 0,
                                                   "folded_with_other_boxes": 0, "with_dropped_objects": 0}
    assert (src / "dataset" / "teachers.jsonl").exists() and (src / "dataset" / "labels.json").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_synthetic_vendor_export_converts_back_to_the_exact_ground_truth(tmp_path):
    # The same seed renders the same scenes as a platform export and as a canonical dataset.
    synthesize(tmp_path / "vendor", 36, 4, seed=3, size=(320, 240), fmt="vendor")
    synthesize(tmp_path / "truth", 36, 4, seed=3, size=(320, 240), fmt="jsonl")
    summary = convert_dataset(tmp_path / "vendor", tmp_path / "out", ConvertOptions())
    assert summary["exif"]["annotated_on_raw"] >= 1 and summary["exif"]["annotated_on_displayed"] >= 1
    truth, got = records_by_id(tmp_path / "truth"), records_by_id(tmp_path / "out")
    assert got.keys() == truth.keys()
    for stem, rec in truth.items():
        assert got[stem].size == rec.size, stem
        expected = sorted(rec.objects, key=lambda o: (o.desc, o.bbox_2d))
        converted = sorted(got[stem].objects, key=lambda o: (o.desc, o.bbox_2d))
        assert [o.desc for o in converted] == [o.desc for o in expected], stem
        for a, b in zip(converted, expected):
            assert a.bbox_2d == pytest.approx(b.bbox_2d, abs=0.01), stem


def test_lang_en_counts_categories_by_their_gloss(tmp_path):
    src = tmp_path / "src"
    one_photo(src, [feature(OBJ, SCREW), feature((80, 10, 120, 40), "挡风板/已安装")])
    summary = convert_dataset(src, tmp_path / "out", ConvertOptions(val_ratio=0, lang="en"))
    h = Hierarchy.load()
    assert summary["categories"] == {h.categories["螺丝连接点"].gloss: 1, h.categories["挡风板"].gloss: 1}


def test_source_inside_the_output_folder_is_read_and_overwriting_the_photos_is_refused(tmp_path):
    one_photo(tmp_path / "raw", [feature(OBJ, "线缆")])
    summary = convert_dataset(tmp_path / "raw", tmp_path, ConvertOptions(val_ratio=0))
    assert summary["photos"]["converted"] == 1
    with pytest.raises(ValueError, match="overwrite the photos"):
        convert_dataset(tmp_path / "raw", tmp_path / "raw", ConvertOptions())
    with pytest.raises(ValueError, match="overwrite the photos"):
        convert_dataset(tmp_path / "images", tmp_path, ConvertOptions())


def test_a_json_nested_thousands_deep_or_with_a_number_past_any_float_is_an_error_line_not_a_crash(tmp_path):
    src = tmp_path / "src"
    one_photo(src, [feature(OBJ, "线缆")], stem="good")
    save_jpeg(drawn(), src / "deep.jpg")
    (src / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    one_photo(src, [feature(OBJ, "线缆"), feature((80, 10, 120, 40), "线缆")], stem="long")
    text = (src / "long.json").read_text(encoding="utf-8")
    (src / "long.json").write_text(text.replace("120", "1" + "0" * 5000, 1), encoding="utf-8")
    one_photo(src, [feature(OBJ, "线缆")], stem="wide")
    (src / "wide.json").write_text((src / "wide.json").read_text(encoding="utf-8").replace(
        f'"width": {SIZE[0]}', '"width": 1' + "0" * 400), encoding="utf-8")
    result = run_cli(src, tmp_path / "out", "--workers", "1", "--val-ratio", "0")
    assert result.exit_code == 0, result.output
    assert sorted(records_by_id(tmp_path / "out")) == ["good", "long"]
    reasons = {(e["file"], e["object"]): e["reason"] for e in errors(tmp_path / "out")}
    assert reasons == {("deep.json", None): "not valid JSON: nested too deep to read (thousands of [ or {)",
                       ("long.json", 1): "coordinate [inf, 10.0] is not finite",
                       ("wide.json", None): "wide.json: 'info' size infx96 is not a positive finite size"}


def test_a_file_given_as_the_export_folder_is_named_as_a_file(tmp_path):
    export = tmp_path / "export.json"
    export.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="export.json: a file; give the folder of the platform's export"):
        convert_dataset(export, tmp_path / "out", ConvertOptions())
    assert not (tmp_path / "out").exists()


def test_photos_whose_names_differ_only_in_case_are_stored_under_names_distinct_on_every_system(tmp_path):
    # `A.jpg` and `a.jpg` are one file on macOS and Windows: a dataset copied there would lose a photo.
    src = tmp_path / "src"
    for stem, box in (("A", OBJ), ("a", (90, 40, 130, 80))):
        save_jpeg(drawn(box=box), src / stem / f"{stem}.jpg")
        shape_a(src / stem / f"{stem}.json", [feature(box, "线缆")], info=SIZE)
    convert_dataset(src, tmp_path / "out", ConvertOptions(val_ratio=0))
    records = records_by_id(tmp_path / "out")
    assert sorted(records) == ["A", "a"]
    names = [records[stem].image for stem in ("A", "a")]
    assert names[0] == "images/A.jpg" and len({n.casefold() for n in names}) == 2, names
    for stem in ("A", "a"):
        with Image.open(tmp_path / "out" / records[stem].image) as im:
            assert red_bbox(im) == pytest.approx(records[stem].objects[0].bbox_2d, abs=1), stem


def test_an_export_whose_photos_are_all_one_views_copies_is_refused_as_data_split_refuses_it(tmp_path):
    # Written, its val.jsonl held no photo and the command exited 0: only the summary's "0" said so.
    src = tmp_path / "export"
    save_jpeg(drawn(), src / "a.jpg")
    first = Image.open(src / "a.jpg")
    first.save(src / "a_sent.png", "PNG")  # a copy a tool saved again: other bytes, the same pixels seen small
    first.save(src / "a_small.jpg", "JPEG", quality=50)
    for stem in ("a", "a_sent", "a_small"):
        shape_a(src / f"{stem}.json", [feature(OBJ, "线缆")], info=SIZE)
    with pytest.raises(ValueError, match=r"^.*export: its 3 photos converted are all one photo's near-copies .*"
                                         r"a\.jpg, a_sent\.png, a_small\.jpg\).*--val-ratio 0"):
        convert_dataset(src, tmp_path / "out", ConvertOptions(val_ratio=0.2))
    assert not any((tmp_path / "out" / name).exists() for name in ("train.jsonl", "val.jsonl", "errors.jsonl"))
    result = run_cli(src, tmp_path / "cli", "--val-ratio", "0.2")
    assert result.exit_code != 0 and "--val-ratio 0" in result.output, result.output
    assert not (tmp_path / "cli" / "val.jsonl").exists()
    summary = convert_dataset(src, tmp_path / "out", ConvertOptions(val_ratio=0))
    assert summary["images"]["train"] == 3 and summary["near_copies"] == {"photos": 2, "groups": 1}


def test_an_annotation_named_after_the_photos_whole_name_is_that_photos(tmp_path):
    # `IMG_0.jpg.json` beside `IMG_0.jpg`, as several labelling tools write them: "no image named 'IMG_0.jpg'" with the
    # photo beside it, and "image has no annotation JSON", each photo counted twice and failed twice
    src = tmp_path / "src"
    for stem in ("IMG_0", "IMG_1"):
        save_jpeg(drawn(), src / f"{stem}.jpg")
        shape_a(src / f"{stem}.jpg.json", [feature(OBJ, "线缆")], info=SIZE)
    shape_a(src / "IMG_2.png.json", [feature(OBJ, "线缆")], info=SIZE)  # no IMG_2.png: still its own error
    summary = convert_dataset(src, tmp_path / "out", ConvertOptions(val_ratio=0))
    assert sorted(r.id for r in read_records(tmp_path / "out" / "train.jsonl")) == ["IMG_0", "IMG_1"]
    assert [e["reason"] for e in errors(tmp_path / "out")] == [
        f"no image named 'IMG_2.png' ({'/'.join(sorted(IMAGE_SUFFIXES))}) anywhere under {src.resolve()}"]
    assert summary["photos"]["found"] == 3
