"""Files predict is often given as --input by mistake: one photo (`-i site.jpg`), read as a JSONL, was 'not UTF-8 text
(byte 0xff at column 1); is this a JSONL dataset file?', and a predictions file (`-i pred.jsonl`) was 'missing key
'images'; unknown key 'image' ...; and 50 more'. Each is now named for what it is, with what to give instead."""

from __future__ import annotations

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_photo_or_a_predictions_file_as_input_is_named_for_what_it_is(trained_checkpoint, small_dataset, tmp_path):
    argv = ["predict", "-c", trained_checkpoint, "--mode", "head", "--device", "cpu"]
    photo = next((small_dataset / "images").iterdir())
    text = refused(invoke([*argv, "-i", photo, "-o", tmp_path / "one.jsonl"]),
                   f"{photo}: a photo; --input takes a folder of photos or a dataset JSONL: give its folder "
                   f"({photo.parent})")
    assert "UTF-8" not in text and not (tmp_path / "one.jsonl").exists()

    made = tmp_path / "pred.jsonl"
    first = invoke([*argv, "-i", small_dataset / "val.jsonl", "-o", made])
    assert first.exit_code == 0, first.output
    text = refused(invoke([*argv, "-i", made, "-o", tmp_path / "again.jsonl"]),
                   f"{made}: predictions written by `bbuvl predict`, not a dataset; give the photos they were predicted "
                   f"from ({small_dataset / 'val.jsonl'})")
    assert "unknown key" not in text and not (tmp_path / "again.jsonl").exists()


def test_a_quoted_pattern_as_input_is_named_as_one_with_the_folder_to_give(trained_checkpoint, small_dataset, tmp_path):
    pattern = small_dataset / "images" / "*.png"
    text = refused(invoke(["predict", "-c", trained_checkpoint, "-i", pattern, "-o", tmp_path / "p.jsonl"]),
                   f"{pattern}: no such file or folder; --input takes no pattern: give the folder of the photos "
                   f"({small_dataset / 'images'}; its subfolders are read too)")
    assert not (tmp_path / "p.jsonl").exists()
    text = refused(invoke(["predict", "-c", trained_checkpoint, "-i", tmp_path / "nothing", "-o",
                           tmp_path / "p.jsonl"]), f"{tmp_path / 'nothing'}: no such file or folder")
    assert "takes no pattern" not in text


def test_a_list_of_photo_paths_as_input_is_named_as_one_with_what_to_give(trained_checkpoint, small_dataset, tmp_path):
    photos = sorted((small_dataset / "images").iterdir())
    listed = tmp_path / "photos.txt"
    listed.write_text("\n" + "".join(f"{photo}\n" for photo in photos), encoding="utf-8")  # as `ls -d $PWD/*` writes
    text = refused(invoke(["predict", "-c", trained_checkpoint, "-i", listed, "-o", tmp_path / "p.jsonl"]),
                   f"{listed}: a list of photo paths (line 1: {photos[0]}), not a dataset JSONL; --input takes a folder "
                   "of photos or a dataset JSONL: put the photos (or links to them) in one folder and give it")
    assert "invalid JSON" not in text and not (tmp_path / "p.jsonl").exists()
