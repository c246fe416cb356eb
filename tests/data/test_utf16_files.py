"""A dataset JSONL or a run config saved as UTF-16 or UTF-32 with its byte order mark (Windows Notepad's "Unicode") is
read as the JSON files are (tests/data/test_hostile_inputs.py, a COCO file saved as UTF-16): both were refused as "not
UTF-8 text (byte 0xff at column 1)", the encoding unsaid."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.schema import read_records
from tests.data.test_hostile_inputs import LABEL, photo, record

ENCODINGS = {"utf-16": lambda t: t.encode("utf-16"), "utf-16-be": lambda t: b"\xfe\xff" + t.encode("utf-16-be"),
             "utf-32": lambda t: t.encode("utf-32")}


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_dataset_saved_as_utf16_or_utf32_is_checked_and_split_as_its_utf8_copy(tmp_path, encoding):
    photo(tmp_path / "images" / "a.jpg")
    photo(tmp_path / "images" / "b.jpg", colour=(10, 10, 200))
    data = tmp_path / "d.jsonl"
    data.write_bytes(ENCODINGS[encoding](record("images/a.jpg") + "\r\n" + record("images/b.jpg") + "\r\n"))
    code, said = invoke("data", "check", data)
    assert code == 0 and "no errors" in said, said
    code, said = invoke("data", "split", data, tmp_path / "split", "--val-ratio", "0.5", "--teachers", "0")
    assert code == 0, said
    labels = [o.desc for name in ("train.jsonl", "val.jsonl") for r in read_records(tmp_path / "split" / name) for o in r.objects]
    assert labels == [LABEL, LABEL]


def test_a_broken_line_of_a_utf16_dataset_is_named_by_its_number(tmp_path):
    photo(tmp_path / "a.jpg")
    data = tmp_path / "d.jsonl"
    data.write_bytes(ENCODINGS["utf-16"](record("a.jpg") + "\n" + record("a.jpg")[:-1] + "\n"))
    code, said = invoke("data", "check", data)
    assert code == 1 and f"{data}:2: invalid JSON" in said and ":1:" not in said, said


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_config_saved_as_utf16_or_utf32_is_read(tmp_path, encoding):
    config = tmp_path / "run.yaml"
    config.write_bytes(ENCODINGS[encoding]("# 训练\ntraining:\n  seed: 7\n"))
    code, said = invoke("config", "print", config)
    assert code == 0 and "seed: 7" in said, said
