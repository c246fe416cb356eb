"""Canonical JSONL: validation with file:line errors, both sample forms, atomic writes."""

import json

import pytest

from bbuvl.data.schema import (
    DatasetError,
    ImageRecord,
    ObjectAnn,
    Sample,
    iter_dataset,
    read_dataset,
    read_records,
    resolve_image,
    write_dataset,
)

REC = {"images": ["images/a.jpg"], "width": 64, "height": 48,
       "objects": [{"bbox_2d": [1, 2, 10, 20], "desc": "标签贴纸"}]}


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_plain_and_teacher_student_forms_are_read(tmp_path):
    p = tmp_path / "d.jsonl"
    _write(p, [json.dumps(REC), json.dumps({"teachers": [REC], "student": REC}, ensure_ascii=False)])
    samples = read_dataset(p)
    assert samples[0].teachers == [] and samples[0].student.width == 64
    assert len(samples[1].teachers) == 1 and samples[1].student.objects[0].desc == "标签贴纸"


def test_errors_name_file_and_line_and_keep_other_lines(tmp_path):
    p = tmp_path / "d.jsonl"
    bad_key = dict(REC, objects=[{"bbox_2d": [1, 2, 3, 4], "label": "线缆"}])
    no_width = {k: v for k, v in REC.items() if k != "width"}
    inverted = dict(REC, objects=[{"bbox_2d": [10, 2, 3, 4], "desc": "线缆"}])
    _write(p, [json.dumps(REC), "{not json", json.dumps(bad_key), "", json.dumps(no_width), json.dumps(inverted), "[1, 2]"])
    rows = list(iter_dataset(p))
    assert [r.line for r in rows] == [1, 2, 3, 5, 6, 7]
    assert rows[0].sample is not None
    errs = {r.line: str(r.error) for r in rows if r.error}
    assert errs[2].startswith(f"{p}:2: invalid JSON")
    assert "unknown key 'objects.0.label' (did you mean 'desc'?)" in errs[3]
    assert "missing key 'width'" in errs[5]
    assert "is not [x1, y1, x2, y2]" in errs[6]
    assert "expected a JSON object" in errs[7]
    with pytest.raises(DatasetError, match=r"d\.jsonl:2:"):
        read_dataset(p)
    assert len(read_dataset(p, skip_invalid=True)) == 1


def test_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="cannot open"):
        list(iter_dataset(tmp_path / "none.jsonl"))


def test_write_then_read_round_trips_and_sorts(tmp_path):
    rec = ImageRecord(images=["x.jpg"], width=100, height=100, objects=[
        ObjectAnn(bbox_2d=[50, 40, 60, 50], desc="线缆"),
        ObjectAnn(bbox_2d=[10, 40, 20, 50], desc="标签贴纸", extra={"备注": "歪了"}),
        ObjectAnn(bbox_2d=[0, 5, 5, 9], desc="线缆"),
    ]).sorted()
    assert [o.bbox_2d[:2] for o in rec.objects] == [[0, 5], [10, 40], [50, 40]]
    p = tmp_path / "sub" / "o.jsonl"
    assert write_dataset(p, [rec, Sample(student=rec, teachers=[rec])]) == 2
    text = p.read_text(encoding="utf-8")
    assert "标签贴纸" in text and "歪了" in text and "null" not in text  # readable Chinese, no empty optional fields
    back = read_records(p)
    assert back[0] == rec and back[1] == rec
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_image_paths_resolve_relative_to_the_jsonl(tmp_path):
    assert resolve_image(tmp_path / "d" / "train.jsonl", "images/a.jpg") == (tmp_path / "d" / "images" / "a.jpg").resolve()


def test_a_line_that_is_not_utf8_is_an_error_of_its_line_and_the_lines_after_it_are_read(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\n".join([json.dumps(REC).encode(), b'{"images": ["caf\xe9.jpg"]}', json.dumps(REC).encode()]) + b"\n")
    rows = list(iter_dataset(p))
    assert [r.line for r in rows] == [1, 2, 3] and rows[0].sample and rows[2].sample
    assert str(rows[1].error) == f"{p}:2: not UTF-8 text (byte 0xe9 at column 17); is this a JSONL dataset file?"


def test_a_file_that_is_not_text_is_one_error_for_the_file(tmp_path):
    p = tmp_path / "photo.jsonl"
    p.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40)  # a JPEG's first bytes, then many "lines" of binary
    with pytest.raises(DatasetError, match=r"photo\.jsonl:1: not UTF-8 text \(byte 0xff at column 1\)"):
        list(iter_dataset(p))


@pytest.mark.parametrize(("number", "says"), [
    ("1" + "0" * 5000, "width: Input should be a finite number"),  # Python's int refuses > 4,300 digits
    ("1" + "0" * 400, "width: Input should be a finite number"),  # an int no float holds
])
def test_a_number_longer_than_any_float_is_an_error_naming_file_and_line(tmp_path, number, says):
    p = tmp_path / "d.jsonl"
    _write(p, [json.dumps(REC), json.dumps(REC).replace('"width": 64', f'"width": {number}')])
    rows = list(iter_dataset(p))
    assert rows[0].sample is not None and str(rows[1].error) == f"{p}:2: {says}"
    box = json.dumps(REC).replace("[1, 2, 10, 20]", f"[1, 2, {number}, 20]")
    _write(p, [box])
    with pytest.raises(DatasetError, match=r"d\.jsonl:1: .*not a finite number"):
        read_records(p)


def test_a_line_of_another_kind_names_a_few_problems_the_record_s_own_first(tmp_path):
    p = tmp_path / "d.jsonl"
    objects = [{"bbox_2d": [1, 2, 3, 4], "label": "线缆", "score": 0.5}] * 10
    _write(p, [json.dumps({"image": "a.jpg", "objects": objects}, ensure_ascii=False)])  # a prediction line
    (row,) = iter_dataset(p)
    assert row.error.message == ("missing key 'images'; missing key 'width'; missing key 'height'; "
                                 "unknown key 'image' (did you mean 'images'?); and 30 more")


def test_a_line_cut_short_is_reported_at_its_own_end_and_an_unopenable_file_without_a_line(tmp_path):
    p = tmp_path / "cut.jsonl"
    cut = json.dumps(REC)[:40]
    p.write_text(json.dumps(REC) + "\n" + cut + "\r\n", encoding="utf-8")
    rows = list(iter_dataset(p))
    assert str(rows[1].error).startswith(f"{p}:2: invalid JSON") and f"column {len(cut) + 1}" in str(rows[1].error)
    with pytest.raises(DatasetError) as missing:
        list(iter_dataset(tmp_path / "nowhere.jsonl"))
    assert str(missing.value).startswith(f"{tmp_path / 'nowhere.jsonl'}: cannot open dataset")


@pytest.mark.parametrize("field, value, said", [
    ("width", "64", '"64" is a string, not a number'),
    ("height", True, "true is a boolean, not a number"),
    ("magnified", "2", '"2" is a string, not a number'),
])
def test_a_size_typed_as_a_string_or_a_boolean_is_refused_naming_the_line(tmp_path, field, value, said):
    p = tmp_path / "d.jsonl"
    _write(p, [json.dumps(REC), json.dumps(dict(REC, **{field: value}))])
    errors = [str(r.error) for r in iter_dataset(p) if r.error]
    assert errors == [f"{p}:2: {field}: {said}"]


def test_box_coordinates_typed_as_strings_or_booleans_are_refused_not_read_as_numbers(tmp_path):
    p = tmp_path / "d.jsonl"
    _write(p, [json.dumps(dict(REC, objects=[{"bbox_2d": ["1", True, 10, 20], "desc": "线缆"}]))])
    (row,) = iter_dataset(p)
    assert str(row.error) == (f"{p}:1: objects.0.bbox_2d.0: \"1\" is a string, not a number; "
                              "objects.0.bbox_2d.1: true is a boolean, not a number")
    assert ObjectAnn(bbox_2d=[1, 2.5, 10, 20], desc="线缆").bbox_2d == [1.0, 2.5, 10.0, 20.0]  # ints stay numbers


# U+2028 and U+2029 end a line wherever text is read by lines (str.splitlines(), most editors), as a newline does
@pytest.mark.parametrize("label", ["线缆\x1b[2J", "线缆\n标签贴纸", "线\x00缆", "\t线缆", "线缆\u2028标签贴纸", "线缆\u2029"])
def test_a_label_holding_control_characters_is_refused_with_them_shown_escaped(tmp_path, label):
    p = tmp_path / "d.jsonl"
    _write(p, [json.dumps(dict(REC, objects=[{"bbox_2d": [1, 2, 10, 20], "desc": label}]))])
    (row,) = iter_dataset(p)
    message = str(row.error)
    assert message.startswith(f"{p}:1: objects.0.desc: label ") and "holds control characters" in message
    assert message.isprintable()  # the terminal is shown `\x1b`, never sent it


def test_a_line_cut_inside_a_string_says_where_the_string_starts_in_plain_words(tmp_path):
    # Python's message ends in "at": it read "Unterminated string starting at at column 13".
    p = tmp_path / "d.jsonl"
    _write(p, [json.dumps(REC), '{"images": ["a.jp'])
    rows = list(iter_dataset(p))
    assert str(rows[1].error) == (f"{p}:2: invalid JSON: Unterminated string starting at column 13; the text ends "
                                  "before its JSON does: cut short?")


def test_a_label_is_cleaned_and_refused_alike_on_every_line_it_is_on(tmp_path):
    # Each spelling is checked once (a dataset repeats a few dozen labels over 300,000 objects): its second line
    # must be cleaned, or refused, as its first was.
    p = tmp_path / "d.jsonl"
    labels = ["线\u200b缆", "线\x00缆", "线\u200b缆", "线\x00缆"]
    _write(p, [json.dumps(dict(REC, objects=[{"bbox_2d": [1, 2, 10, 20], "desc": label}])) for label in labels])
    rows = list(iter_dataset(p))
    assert [r.sample.student.objects[0].desc for r in rows if r.error is None] == ["线缆", "线缆"]
    assert [r.line for r in rows if r.error is not None and "holds control characters" in str(r.error)] == [2, 4]
