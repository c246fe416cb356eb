"""`check_dataset` and `bbuvl data check` find every planted defect at its JSONL line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import data_tools
from bbuvl.data.boxes import box_iou
from bbuvl.data.check import Problem, check_dataset, unmatched_objects
from bbuvl.data.schema import ObjectAnn

SCREW = "螺丝连接点/BBU安装螺丝/连接正确"
BBU = "bbu基带处理单元/华为"
STICKER = "标签贴纸"


def write_jpeg(path: Path, size: tuple[int, int] = (320, 240), orientation: int = 1) -> Path:
    """A noisy JPEG (noise keeps it large enough that truncating it cuts image data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.effect_noise(size, 60).convert("RGB")
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    img.save(path, quality=90, exif=exif)
    return path


def record(image: str, size: tuple[int, int] = (320, 240), objects: list | None = None) -> dict:
    """A canonical record; the default objects are valid and sorted by (y1, x1)."""
    if objects is None:
        objects = [{"bbox_2d": [10, 10, 60, 50], "desc": BBU}, {"bbox_2d": [100, 120, 130, 150], "desc": SCREW}]
    return {"images": [image], "width": size[0], "height": size[1], "objects": objects}


def write_jsonl(path: Path, lines: list[dict | str]) -> Path:
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l, ensure_ascii=False)) + "\n" for l in lines),
                    encoding="utf-8")
    return path


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    """A valid dataset folder: 4 train photos (one EXIF-rotated, recorded upright), 1 val, 1 teacher."""
    root = tmp_path / "clean"
    for i in range(5):
        write_jpeg(root / "images" / f"{i}.jpg")
    write_jpeg(root / "images" / "rotated.jpg", orientation=6)  # raw 320x240, upright 240x320
    train = [record(f"images/{i}.jpg") for i in range(4)] + [record("images/rotated.jpg", (240, 320))]
    write_jsonl(root / "train.jsonl", train)
    write_jsonl(root / "val.jsonl", [record("images/4.jpg", objects=[])])
    write_jsonl(root / "teachers.jsonl", [{"teachers": [train[0]], "student": train[1]}])
    return root


# line number -> a phrase the problem on that line must contain
PLANTED = {
    2: "invalid JSON",
    3: "missing key 'width'",
    4: "did you mean 'desc'",
    5: "image file not found",
    6: "cannot decode image",
    7: "width/height 300x200 do not match image images/0.jpg, which is 320x240",
    8: "EXIF-rotated",
    9: "lies outside the 320x240 image",
    10: "is degenerate",
    11: "unknown category '机柜门'",
    12: "duplicate box",
    13: "nearly the same box",
}


@pytest.fixture
def broken(clean: Path, tmp_path: Path) -> Path:
    """A copy of the clean dataset whose train.jsonl has one planted defect per line from line 2 on."""
    root = tmp_path / "broken"
    shutil.copytree(clean, root)
    data = (root / "images" / "1.jpg").read_bytes()
    (root / "images" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    no_width = record("images/0.jpg")
    del no_width["width"]
    lines = [
        record("images/0.jpg"),
        '{"images": ["images/0.jpg"], "width": 320,',
        no_width,
        record("images/0.jpg", objects=[{"bbox_2d": [1, 1, 20, 20], "label": BBU}]),
        record("images/missing.jpg"),
        record("images/truncated.jpg"),
        record("images/0.jpg", (300, 200)),
        record("images/rotated.jpg", (320, 240)),
        record("images/0.jpg", objects=[{"bbox_2d": [300, 200, 340, 230], "desc": BBU}]),
        record("images/0.jpg", objects=[{"bbox_2d": [50, 50, 50.5, 90], "desc": BBU}]),
        record("images/0.jpg", objects=[{"bbox_2d": [5, 5, 40, 40], "desc": "机柜门/已关闭"}]),
        record("images/0.jpg", objects=[{"bbox_2d": [5, 5, 40, 40], "desc": BBU},
                                        {"bbox_2d": [5, 5, 40, 40], "desc": SCREW}]),
        record("images/0.jpg", objects=[{"bbox_2d": [5, 5, 100, 100], "desc": BBU},
                                        {"bbox_2d": [5, 6, 100, 100], "desc": BBU}]),
    ]
    write_jsonl(root / "train.jsonl", lines)
    return root


def test_clean_dataset_has_no_problems(clean: Path):
    assert check_dataset(clean) == []


def test_every_planted_defect_is_found_at_its_line(broken: Path):
    problems = check_dataset(broken)
    # Every planted line reuses images/0.jpg, so each is also (rightly) the same photo again: set those aside.
    errors = [p for p in problems if p.severity == "error" and "the same photo twice" not in p.message]
    assert all(p.file == str(broken / "train.jsonl") for p in errors)
    by_line = {line: [p.message for p in errors if p.line == line] for line in range(1, 14)}
    assert by_line[1] == []
    for line, phrase in PLANTED.items():
        assert len(by_line[line]) == 1, (line, by_line[line])
        assert phrase in by_line[line][0], (line, by_line[line])


def test_exif_rotated_record_is_told_apart_from_a_plain_size_mismatch(broken: Path):
    messages = {p.line: p.message for p in check_dataset(broken) if "the same photo twice" not in p.message}
    assert "EXIF orientation 6" in messages[8] and "upright as 240x320" in messages[8]
    assert "EXIF" not in messages[7]


def test_problem_prints_as_file_line_message():
    assert str(Problem("a/train.jsonl", 7, "boom")) == "a/train.jsonl:7: boom"


def test_unsorted_objects_are_a_warning_not_an_error(tmp_path: Path):
    write_jpeg(tmp_path / "a.jpg")
    objs = [{"bbox_2d": [10, 100, 50, 150], "desc": BBU}, {"bbox_2d": [10, 10, 50, 50], "desc": SCREW}]
    problems = check_dataset(write_jsonl(tmp_path / "d.jsonl", [record("a.jpg", objects=objs)]))
    assert [(p.line, p.severity) for p in problems] == [(1, "warning")]
    assert "not sorted by (y1, x1)" in problems[0].message


def test_teacher_records_of_a_sample_are_checked_and_named(tmp_path: Path):
    write_jpeg(tmp_path / "a.jpg")
    write_jpeg(tmp_path / "b.jpg")
    bad_teacher = record("gone.jpg")
    sample = {"teachers": [record("b.jpg"), bad_teacher], "student": record("a.jpg", (321, 240))}
    problems = check_dataset(write_jsonl(tmp_path / "s.jsonl", [sample]))
    assert [str(p).split(": ", 1)[1] for p in problems] == [
        "teachers[1]: image gone.jpg: image file not found",
        "student: width/height 321x240 do not match image a.jpg, which is 320x240",
    ]


def test_header_only_mode_misses_truncation_but_not_missing_files(broken: Path):
    lines = {p.line for p in check_dataset(broken, decode_images=False) if p.severity == "error"}
    assert 5 in lines and 6 not in lines


def test_a_custom_hierarchy_decides_which_labels_are_valid(tmp_path: Path):
    from bbuvl.data.labels import Hierarchy

    hfile = tmp_path / "h.json"
    hfile.write_text(json.dumps({"categories": {"机柜门": {"attributes": {"已关闭": {}}}}}, ensure_ascii=False))
    write_jpeg(tmp_path / "a.jpg")
    objs = [{"bbox_2d": [5, 5, 40, 40], "desc": "机柜门/已关闭"}, {"bbox_2d": [5, 50, 40, 90], "desc": BBU}]
    problems = check_dataset(write_jsonl(tmp_path / "d.jsonl", [record("a.jpg", objects=objs)]), Hierarchy.load(hfile))
    assert len(problems) == 1 and "objects[1]: unknown category 'bbu基带处理单元'" in problems[0].message


def test_folder_without_train_jsonl_is_an_error(tmp_path: Path):
    problems = check_dataset(tmp_path)
    assert any(p.severity == "error" and p.file.endswith("train.jsonl") for p in problems)


def test_box_iou_of_identical_disjoint_and_half_overlapping_boxes():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("check")(data_tools.check)
    app.command("noop")(lambda: None)  # two commands keep typer from collapsing the app into `check`
    return app


def test_cli_prints_file_line_for_each_defect_and_exits_1(broken: Path):
    result = CliRunner().invoke(cli(), ["check", str(broken)])
    assert result.exit_code == 1, result.output
    train = str(broken / "train.jsonl")
    printed = result.output.splitlines()
    for line, phrase in PLANTED.items():
        assert any(out.startswith(f"{train}:{line}: ") and phrase in out for out in printed), (line, result.output)


def test_cli_exits_0_on_the_clean_dataset(clean: Path):
    result = CliRunner().invoke(cli(), ["check", str(clean)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "no errors" in result.output


def test_a_sample_whose_teacher_is_its_own_student_photo_is_an_error(tmp_path: Path):
    # The prompt then shows the answer: the model learns to copy the teacher's boxes, and check said "ok".
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_jpeg(tmp_path / name)
    shutil.copy(tmp_path / "b.jpg", tmp_path / "copy_of_b.jpg")
    samples = [{"teachers": [record("c.jpg"), record("./a.jpg")], "student": record("a.jpg")},
               {"teachers": [record("copy_of_b.jpg")], "student": record("b.jpg")},
               {"teachers": [record("a.jpg")], "student": record("c.jpg")}]
    jsonl = tmp_path / "explicit.jsonl"
    jsonl.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), encoding="utf-8")
    app = typer.Typer()
    app.command()(data_tools.check)
    result = CliRunner().invoke(app, [str(jsonl), "--no-decode"])
    out = " ".join(result.output.split())
    assert result.exit_code == 1, out
    assert (f"{jsonl}:1: teachers[1]: image ./a.jpg is the student photo (the same file): its answer would be in its "
            "own prompt") in out
    assert f"{jsonl}:2: teachers[0]: image copy_of_b.jpg is the student photo (the same content as b.jpg)" in out
    assert ":3: teachers" not in out and "2 error(s)" in out


def test_two_annotation_sets_of_one_photo_are_matched_object_by_object_exactly_or_nearly_once_each():
    def obj(box: list[float], label: str = "线缆") -> ObjectAnn:
        return ObjectAnn(bbox_2d=box, desc=label)

    first = [obj([10, 10, 110, 110]), obj([10, 10, 110, 110]), obj([200, 10, 300, 60]), obj([0, 0, 50, 50], "螺丝")]
    second = [obj([200.5, 10, 300.5, 60]), obj([10, 10, 110, 110]), obj([10.5, 10, 110.5, 110]),
              obj([10.5, 10, 110.5, 110]), obj([0, 0, 50, 50], "螺丝 "), obj([0, 0, 50, 50])]
    # The box listed twice in `first` meets one exact copy and one near one; the third near copy has nothing left;
    # a label typed with a space is the same label, another label on the same box is not.
    assert unmatched_objects(first, second) == ([], [3, 5])
    assert unmatched_objects(second, first) == ([3, 5], [])
    many = [obj([x, y, x + 20, y + 15]) for x in range(0, 1000, 25) for y in range(0, 1000, 20)]  # 2,000 boxes
    moved = [obj([v + 0.2 for v in o.bbox_2d]) for o in reversed(many)]
    assert unmatched_objects(many, moved) == ([], [])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_near_duplicates_among_boxes_sharing_a_corner_are_the_pairs_every_pair_compared_finds():
    """Boxes anchored at one corner put every box in both bisection windows; compared a box at a time, 1,520 of them
    took a minute. The window's boxes are now compared at once: the same pairs as comparing every pair."""
    import random

    from bbuvl.data.boxes import box_iou
    from bbuvl.data.check import DUPLICATE_IOU, duplicate_pairs

    rng = random.Random(3)
    objs = []
    for k in range(240):
        side = 10 * 1.015 ** k  # 1.5% apart: neighbours past IoU 0.95 with each other, some
        objs.append(ObjectAnn(bbox_2d=[0.0, 0.0, round(side, 2), round(side * rng.uniform(0.98, 1.0), 2)],
                              desc="线缆" if k % 5 else "挡风板/已安装"))
    found = {(i, j) for i, j, _ in duplicate_pairs(objs)}
    every = {(i, j) for i in range(len(objs)) for j in range(i + 1, len(objs))
             if objs[i].desc == objs[j].desc and objs[i].bbox_2d != objs[j].bbox_2d
             and float(box_iou(objs[i].bbox_2d, objs[j].bbox_2d)) > DUPLICATE_IOU}
    assert found == every and every
