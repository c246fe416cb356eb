"""Near-copies (data/near_copies.py): one photo a tool saved again is one photo to `data split`, `data check` and
`data convert`; distinct photos of the synthetic scenes are never taken for one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bbuvl.data.check import check_dataset
from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.data.layout import ERRORS, TRAIN, VAL
from bbuvl.data.images import ImageError
from bbuvl.data.near_copies import (NEAR_COPY_LEVELS, TURNED_LEVELS, copy_groups, near_copies,
                                     photo_print)
from bbuvl.data.schema import DatasetError, ObjectAnn, read_records, resolve_image, write_dataset
from bbuvl.data.split import split_photos
from bbuvl.synthetic.dataset import synthesize
from bbuvl.synthetic.shapes import synthesize_shapes

KINDS = ("jpeg q60", "png", "half size", "turn into pixels")


def save_copy(photo: Path, kind: str, dest: Path) -> Path:
    """A tool's copy of `photo` of `kind`, written to `dest` (its suffix set by the kind)."""
    rgb = Image.open(photo).convert("RGB")
    if kind == "jpeg q60":
        rgb.save(dest := dest.with_suffix(".jpg"), "JPEG", quality=60)
    elif kind == "png":
        rgb.save(dest := dest.with_suffix(".png"), "PNG")
    elif kind == "half size":  # a phone's "send as smaller photo"
        rgb.resize((rgb.width // 2, rgb.height // 2), Image.Resampling.LANCZOS).save(dest := dest.with_suffix(".jpg"),
                                                                                       "JPEG", quality=85)
    else:  # the photo as a camera stores it (grid turned, EXIF 6), and a tool's copy with the turn in its pixels
        exif = Image.Exif()
        exif[0x0112] = 6
        rgb.transpose(Image.Transpose.ROTATE_90).save(photo, "JPEG", quality=95, exif=exif)
        rgb.save(dest := dest.with_suffix(".jpg"), "JPEG", quality=90)
    return dest


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    """Small datasets of distinct synthetic photos: the equipment room (wide and close-up) and the shapes scene."""
    root = tmp_path_factory.mktemp("scenes")
    synthesize(root / "room", 8, 0, seed=5, size=(320, 240), num_teachers=0)
    synthesize(root / "closeup", 6, 0, seed=5, size=(320, 240), num_teachers=0, framing="closeup")
    synthesize_shapes(root / "shapes", 12, 0, seed=5, size=(224, 224), num_teachers=0)
    return {name: root / name / TRAIN for name in ("room", "closeup", "shapes")}


@pytest.mark.parametrize("kind", KINDS)
def test_a_photo_a_tool_saved_again_is_a_near_copy_of_it(scenes, tmp_path, kind):
    photo = shutil.copy(resolve_image(scenes["room"], read_records(scenes["room"])[0].image), tmp_path / "a.jpg")
    copy = save_copy(Path(photo), kind, tmp_path / "b")
    assert [(n.first, n.second) for n in near_copies([photo_print(photo), photo_print(copy)])] == [(0, 1)]


@pytest.mark.parametrize("scene", ["room", "closeup", "shapes"])
def test_distinct_photos_of_one_synthetic_scene_are_never_near_copies(scenes, scene):
    prints = [photo_print(resolve_image(scenes[scene], r.image)) for r in read_records(scenes[scene])]
    assert all(p is not None for p in prints)
    assert near_copies(prints) == []


def test_a_photo_without_detail_is_a_copy_of_nothing(tmp_path):
    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "cap.jpg")
    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "wall.png")
    assert photo_print(tmp_path / "cap.jpg") is None
    assert near_copies([photo_print(tmp_path / "cap.jpg"), photo_print(tmp_path / "wall.png")]) == []


def test_copies_of_a_copy_are_one_group():
    assert copy_groups(5, [(0, 3), (3, 4)]) == [[0, 3, 4], [1], [2]]


def with_copies(jsonl: Path, out: Path) -> tuple[Path, list[str]]:
    """`jsonl`'s photos in `out`/all.jsonl, with three tools' copies of its first photo on lines of their own."""
    records = read_records(jsonl)
    (out / "images").mkdir(parents=True)
    lines, names = [], []
    for r in records:
        shutil.copy(resolve_image(jsonl, r.image), out / r.image)
        lines.append(r)
    first = records[0]
    for kind in ("jpeg q60", "png", "half size"):
        copy = save_copy(out / first.image, kind, out / "images" / f"copy {kind}")
        scale = 0.5 if kind == "half size" else 1.0
        w, h = Image.open(copy).size
        objects = [ObjectAnn(bbox_2d=[v * scale for v in o.bbox_2d], desc=o.desc) for o in first.objects]
        lines.append(first.model_copy(update={"images": [f"images/{copy.name}"], "width": w, "height": h,
                                              "objects": objects, "id": copy.stem}))
        names.append(f"images/{copy.name}")
    write_dataset(out / "all.jsonl", lines)
    return out / "all.jsonl", [first.image, *names]


def test_splits_teacher_pool_holds_at_most_one_of_a_photos_reencoded_copies(scenes, tmp_path):
    dataset, copies = with_copies(scenes["room"], tmp_path / "data")
    names = {c.split("/")[-1] for c in copies}
    for seed in range(4):
        split_photos(dataset, tmp_path / f"split{seed}", val_ratio=0.3, seed=seed, num_teachers=100)
        pool = [r.image.split("/")[-1] for r in read_records(tmp_path / f"split{seed}" / "teachers.jsonl")]
        train = {r.image.split("/")[-1] for r in read_records(tmp_path / f"split{seed}" / TRAIN)}
        assert len(set(pool) & names) == (1 if names <= train else 0), (seed, pool)
        assert len(pool) == len(train) - (len(names) - 1 if names <= train else 0)


def test_check_warns_of_a_reencoded_copy_in_train_and_val_naming_both(scenes, tmp_path):
    dataset, copies = with_copies(scenes["room"], tmp_path / "data")
    records = read_records(dataset)
    write_dataset(tmp_path / "data" / TRAIN, records[:-1])
    write_dataset(tmp_path / "data" / VAL, records[-1:])  # the half-size copy of train's first photo
    found = [p for p in check_dataset(tmp_path / "data") if "its pixels are those of" in p.message]
    assert [(Path(p.file).name, p.line, p.severity) for p in found] == [
        ("train.jsonl", 9, "warning"), ("train.jsonl", 10, "warning"), ("val.jsonl", 1, "warning")]
    assert copies[3] in found[2].message and f"{copies[0]} at {tmp_path / 'data' / TRAIN} line 1" in found[2].message
    assert "both training and validation" in found[2].message
    assert f"{copies[0]} at line 1" in found[0].message and "on two lines" in found[0].message


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_convert_keeps_a_reencoded_copy_names_it_and_splits_both_to_one_side(tmp_path):
    export = tmp_path / "export"
    synthesize(export, 8, 0, seed=6, size=(320, 240), fmt="vendor")
    jsons = sorted(export.rglob("*.json"))
    photo = next(p for p in export.rglob("*.jpg") if p.stem == jsons[0].stem)
    copy = save_copy(photo, "png", photo.with_name(f"{photo.stem}_sent"))
    shutil.copy(jsons[0], jsons[0].with_name(f"{photo.stem}_sent.json"))
    for seed in range(4):
        out = tmp_path / f"out{seed}"
        summary = convert_dataset(export, out, ConvertOptions(val_ratio=0.3, seed=seed, teachers=100))
        assert summary["photos"]["converted"] == 9 and summary["near_copies"] == {"photos": 1, "groups": 1}
        entries = [json.loads(line) for line in (out / ERRORS).read_text().splitlines()]
        near = [e for e in entries if "near_copy_of" in e]
        assert [(e["file"], e["near_copy_of"]) for e in near] == [(copy.relative_to(export).as_posix(),
                                                                   photo.relative_to(export).as_posix())]
        sides = [{r.id for r in read_records(out / name)} for name in (TRAIN, VAL)]
        pair = {photo.stem, copy.stem}
        assert pair <= sides[0] or pair <= sides[1], (seed, sides)
        pool = [r.id for r in read_records(out / "teachers.jsonl")]  # every training photo but one of the two copies
        assert len(pool) == len(sides[0]) - (1 if pair <= sides[0] else 0) and len(set(pool) & pair) <= 1, (seed, pool)


def test_a_16_bit_png_copy_of_a_grey_photo_is_a_near_copy(scenes, tmp_path):
    grey = Image.open(resolve_image(scenes["room"], read_records(scenes["room"])[0].image)).convert("L")
    grey.save(tmp_path / "grey.jpg", quality=90)
    Image.fromarray((np.asarray(grey).astype(np.uint16) * 257)).save(tmp_path / "grey16.png")  # read as I;16
    assert len(near_copies([photo_print(tmp_path / "grey.jpg"), photo_print(tmp_path / "grey16.png")])) == 1


def test_split_of_photos_all_copies_of_one_is_refused_not_written_with_an_empty_val(scenes, tmp_path):
    dataset, copies = with_copies(scenes["room"], tmp_path / "data")
    write_dataset(dataset, [r for r in read_records(dataset) if r.image in copies])
    with pytest.raises(DatasetError, match="all one photo's near-copies or tiles .*--val-ratio 0"):
        split_photos(dataset, tmp_path / "split", val_ratio=0.3)
    assert not (tmp_path / "split").exists()
    assert split_photos(dataset, tmp_path / "split", val_ratio=0).train == 4


def test_a_truncated_png_is_compared_with_nothing_and_split_and_check_go_on(scenes, tmp_path):
    dataset, _ = with_copies(scenes["room"], tmp_path / "data")
    png = tmp_path / "data" / "images" / "copy png.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])  # its EXIF is read after its pixels: decoding them
    with pytest.raises(ImageError, match="copy png.png: cannot decode image"):
        photo_print(png)
    result = split_photos(dataset, tmp_path / "split", val_ratio=0.3)
    assert result.train + result.val == 11 and all("images/copy png.png" not in g for g in result.near_copies)
    problems = check_dataset(dataset, decode_images=False)
    assert not any("copy png.png: its pixels" in p.message for p in problems)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_fixed_cameras_many_shots_of_one_view_are_one_group_in_a_pair_or_two_a_photo():
    rng = np.random.default_rng(0)
    view = rng.uniform(40, 200, (8, 8, 3)).astype(np.float32)
    shots = [view + rng.integers(-3, 4, view.shape).astype(np.float32) for _ in range(1500)]
    pairs = near_copies(shots, block=256)
    assert len(pairs) < 2 * len(shots)  # all 1,124,250 pairs were listed
    assert copy_groups(len(shots), [(p.first, p.second) for p in pairs]) == [list(range(len(shots)))]
    assert {p.second: p.first for p in pairs if p.first == 0}.keys() == set(range(1, len(shots)))  # each one's earliest


def test_a_photo_alike_two_photos_alike_neither_joins_them_in_one_group():
    left = np.full((8, 8, 3), 100, dtype=np.float32)
    left[0, 0] = 20  # detail enough to be compared
    middle, right = left + 6, left + 12
    pairs = near_copies([left, right, middle])
    assert [(p.first, p.second) for p in pairs] == [(0, 2), (1, 2)]
    assert copy_groups(3, [(p.first, p.second) for p in pairs]) == [[0, 1, 2]]


# What each of Pillow's transposes makes of a photo, as near_copies names it (TURNS).
TURNED = {Image.Transpose.ROTATE_90: "turned 90 degrees anticlockwise", Image.Transpose.ROTATE_180: "turned 180 degrees",
          Image.Transpose.ROTATE_270: "turned 90 degrees clockwise", Image.Transpose.FLIP_LEFT_RIGHT: "mirrored left to right",
          Image.Transpose.FLIP_TOP_BOTTOM: "mirrored top to bottom",
          Image.Transpose.TRANSPOSE: "mirrored across its falling diagonal",
          Image.Transpose.TRANSVERSE: "mirrored across its rising diagonal"}


def test_a_photo_mirrored_or_turned_in_its_pixels_is_a_near_copy_that_says_how(scenes, tmp_path):
    photo = resolve_image(scenes["room"], read_records(scenes["room"])[0].image)
    rgb = Image.open(photo).convert("RGB")
    for transpose, how in TURNED.items():
        rgb.transpose(transpose).save(tmp_path / "copy.jpg", quality=80)  # no EXIF: the turn is in the pixels
        found = near_copies([photo_print(photo), photo_print(tmp_path / "copy.jpg")])
        assert [(n.first, n.second, n.how) for n in found] == [(0, 1, how)], transpose
    assert near_copies([photo_print(photo), photo_print(photo)])[0].how == ""  # as taken, not "mirrored"


def with_turned_copies(jsonl: Path, out: Path) -> tuple[Path, list[str]]:
    """`jsonl`'s photos in `out`/all.jsonl, with its first photo mirrored (PNG) and turned a quarter clockwise (JPEG)
    on lines of their own, their boxes moved with their pixels."""
    records = read_records(jsonl)
    (out / "images").mkdir(parents=True)
    for r in records:
        shutil.copy(resolve_image(jsonl, r.image), out / r.image)
    first = records[0]
    rgb = Image.open(out / first.image).convert("RGB")
    w, h = rgb.size
    rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(out / "images" / "mirrored.png")
    rgb.transpose(Image.Transpose.ROTATE_270).save(out / "images" / "turned.jpg", quality=90)
    mirrored = [ObjectAnn(bbox_2d=[w - x2, y1, w - x1, y2], desc=o.desc) for o in first.objects
                for x1, y1, x2, y2 in [o.bbox_2d]]
    turned = [ObjectAnn(bbox_2d=[h - y2, x1, h - y1, x2], desc=o.desc) for o in first.objects
              for x1, y1, x2, y2 in [o.bbox_2d]]
    copies = [first.model_copy(update={"images": ["images/mirrored.png"], "objects": mirrored, "id": "mirrored"}),
              first.model_copy(update={"images": ["images/turned.jpg"], "width": h, "height": w, "objects": turned,
                                       "id": "turned"})]
    write_dataset(out / "all.jsonl", [*records, *copies])
    return out / "all.jsonl", [first.image, "images/mirrored.png", "images/turned.jpg"]


@pytest.mark.parametrize("copied", ["reencoded", "mirrored and turned"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_split_keeps_a_photos_copies_on_one_side(copied, scenes, tmp_path):
    build = with_copies if copied == "reencoded" else with_turned_copies
    dataset, copies = build(scenes["room"], tmp_path / "data")
    for seed in range(6):
        result = split_photos(dataset, tmp_path / f"split{seed}", val_ratio=0.3, seed=seed, num_teachers=0)
        sides = [{r.image.split("/")[-1] for r in read_records(tmp_path / f"split{seed}" / name)} for name in (TRAIN, VAL)]
        names = {c.split("/")[-1] for c in copies}
        assert names <= sides[0] or names <= sides[1], (seed, sides)
        assert result.near_copies == [copies]


def test_check_warns_of_a_turned_copy_in_val_naming_both_and_how_it_lies(scenes, tmp_path):
    dataset, copies = with_turned_copies(scenes["room"], tmp_path / "data")
    records = read_records(dataset)
    write_dataset(tmp_path / "data" / TRAIN, records[:-1])
    write_dataset(tmp_path / "data" / VAL, records[-1:])  # train's first photo turned a quarter clockwise
    problems = check_dataset(tmp_path / "data")
    assert not [p for p in problems if p.severity == "error"], problems
    found = [p for p in problems if "its pixels are those of" in p.message]
    assert [(Path(p.file).name, p.line) for p in found] == [("train.jsonl", 9), ("val.jsonl", 1)]
    assert f"{copies[0]} mirrored left to right at line 1" in found[0].message
    assert f"{copies[0]} turned 90 degrees clockwise at {tmp_path / 'data' / TRAIN} line 1" in found[1].message
    assert "both training and validation" in found[1].message


def test_a_fixed_cameras_shots_with_their_mirror_images_saved_beside_them_are_one_group():
    rng = np.random.default_rng(0)
    view = rng.uniform(40, 200, (8, 8, 3)).astype(np.float32)
    shots = [view + rng.integers(-3, 4, view.shape).astype(np.float32) for _ in range(600)]
    shots = [s if i % 2 else s[:, ::-1].copy() for i, s in enumerate(shots)]  # flips saved as augmentation
    pairs = near_copies(shots, block=256)
    assert copy_groups(len(shots), [(p.first, p.second) for p in pairs]) == [list(range(len(shots)))]
    assert len(pairs) < 2 * len(shots)


def test_check_warns_of_a_teacher_whose_pixels_are_a_validation_photos_or_its_own_students(scenes, tmp_path):
    dataset, copies = with_copies(scenes["room"], tmp_path / "data")
    records = read_records(dataset)  # 8 photos, then train's first photo saved again: JPEG q60, PNG, half size
    folder = tmp_path / "data"
    val = records[9]  # the PNG copy of records[0], validated
    lines = [{"student": records[1].model_dump(exclude_none=True), "teachers": [records[0].model_dump(exclude_none=True)]},
             {"student": records[2].model_dump(exclude_none=True), "teachers": [records[3].model_dump(exclude_none=True),
                                                                                 records[10].model_dump(exclude_none=True)]},
             {"student": records[8].model_dump(exclude_none=True), "teachers": [records[0].model_dump(exclude_none=True)]},
             {"student": records[4].model_dump(exclude_none=True), "teachers": [records[5].model_dump(exclude_none=True)]}]
    (folder / TRAIN).write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    write_dataset(folder / VAL, [val])
    problems = check_dataset(folder)
    assert not [p for p in problems if p.severity == "error"], problems
    found = [(Path(p.file).name, p.line, p.message) for p in problems if "teachers[" in p.message]
    assert [(name, line, message.split(":")[0]) for name, line, message in found] == [
        ("train.jsonl", 1, "teachers[0]"), ("train.jsonl", 2, "teachers[1]"), ("train.jsonl", 3, "teachers[0]"),
        ("train.jsonl", 3, "teachers[0]")]
    to_val = f"the photo of {folder / VAL} line 1, a validation photo"
    assert f"image {copies[0]}: its pixels are those of {copies[2]}, {to_val}" in found[0][2]
    assert f"image {copies[3]}: its pixels are those of {copies[2]}, {to_val}" in found[1][2]
    assert "answer would be in a training prompt" in found[1][2]
    own = [m for _, line, m in found if line == 3]  # the q60 copy of records[0], taught by records[0] itself
    assert any(f"its pixels are those of the student photo {copies[1]}" in m and "its own prompt" in m for m in own)
    assert any(to_val in m for m in own)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_split_refuses_a_training_line_whose_teacher_is_a_near_copy_of_a_photo_it_draws_for_validation(scenes, tmp_path):
    dataset, copies = with_turned_copies(scenes["room"], tmp_path / "data")
    records = read_records(dataset)  # 8 photos, then the first mirrored and turned
    lines = [json.dumps(r.model_dump(exclude_none=True), ensure_ascii=False) for r in records[:7]]
    lines.append(json.dumps({"student": records[7].model_dump(exclude_none=True),  # taught by the first, mirrored
                             "teachers": [records[8].model_dump(exclude_none=True)]}, ensure_ascii=False))
    samples = tmp_path / "data" / "samples.jsonl"
    samples.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    refused = 0
    for seed in range(10):
        try:
            split_photos(samples, tmp_path / f"split{seed}", val_ratio=0.3, seed=seed, num_teachers=0)
        except DatasetError as e:
            refused += 1
            assert str(e).startswith(f"{samples}:8: teachers[0]: image images/mirrored.png has the pixels of line 1's "
                                     "photo mirrored left to right"), str(e)
            assert "which this split draws for validation: its answer would be in a training prompt" in str(e)
            continue
        val = {r.image.split("/")[-1] for r in read_records(tmp_path / f"split{seed}" / VAL)}
        assert copies[0].split("/")[-1] not in val or records[7].image.split("/")[-1] in val, (seed, val)
    assert 0 < refused < 10


def test_split_says_how_many_teachers_its_pool_holds_when_it_left_out_near_copies(scenes, tmp_path):
    dataset, copies = with_copies(scenes["room"], tmp_path / "data")
    result = split_photos(dataset, tmp_path / "split", val_ratio=0, num_teachers=100)
    assert result.train == 11 and result.near_copies == [copies]
    assert result.teachers == len(read_records(tmp_path / "split" / "teachers.jsonl")) == 8  # one of the 4 copies


def test_a_distinct_photo_whose_one_shape_a_turn_puts_on_anothers_is_no_copy_but_a_turned_copy_is(tmp_path):
    # Two photos of the demo's shapes scene: one red ellipse on a plain background, the second's background a few
    # levels off and its ellipse where a quarter turn puts the first's. Compared in 8 turns, such a pair came within 7
    # levels among 1,050 photos, and data check called it a copy.
    first = Image.new("RGB", (224, 224), (118, 110, 106))
    ImageDraw.Draw(first).ellipse([80, 25, 120, 106], fill=(216, 38, 38))
    second = Image.new("RGB", (224, 224), (108, 114, 100))
    ImageDraw.Draw(second).ellipse([80, 25, 120, 106], fill=(216, 38, 38))
    first.save(tmp_path / "first.png")
    second.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "second.png")
    first.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "copy.jpg", quality=30)
    prints = [photo_print(tmp_path / name) for name in ("first.png", "second.png", "copy.jpg")]
    assert NEAR_COPY_LEVELS >= float(np.abs(np.rot90(prints[1]) - prints[0]).max()) > TURNED_LEVELS
    assert [(n.first, n.second, n.how) for n in near_copies(prints)] == [(0, 2, "mirrored left to right")]
    assert near_copies(prints[:2]) == []  # the pair alone, in every turn and tone: the turn is not close enough
