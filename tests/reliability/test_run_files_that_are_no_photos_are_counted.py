"""Files in a predict folder that are no photo type read here (a phone's .heic, a .gif, notes beside the photos) were
left out of the run without a word: "done: 40 predicted" of 50 files. Now predict says how many it left, by suffix,
before any model loads; a folder with none to read says what it holds instead."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.data.images import skipped_note
from bbuvl.infer.batch import photo_names
from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


def photos(folder: Path, *names: str) -> Path:
    """`folder` holding the named files: photos for photo suffixes, a few bytes for the rest."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if Path(name).suffix.lower() in (".jpg", ".png"):
            Image.new("RGB", (64, 48), (90, 120, 30)).save(path)
        else:
            path.write_bytes(b"\0\0\0\x18ftypheic")
    return folder


def test_the_files_left_out_are_counted_by_suffix_and_hidden_ones_are_not(tmp_path):
    folder = photos(tmp_path / "site", "a.jpg", "sub/b.png", "IMG_1.HEIC", "sub/IMG_2.heic", "notes.txt", "README",
                    ".DS_Store", "sub/.hidden.gif")
    skipped: Counter[str] = Counter()
    assert photo_names(folder, skipped) == ["a.jpg", "sub/b.png"]
    assert skipped == Counter({".heic": 2, ".txt": 1, "": 1})
    note = skipped_note(folder, skipped)
    assert note is not None and note.startswith(f"4 files in {folder} are not read as photos (.heic 2, ")
    assert "no suffix 1" in note and ".jpg" in note
    assert skipped_note(folder, Counter()) is None


def test_hidden_files_and_folders_are_no_photos_of_the_run(tmp_path):
    # Before: a card copied from a Mac gave an error line for each `._IMG_1.jpg` companion, and a notebook's
    # `.ipynb_checkpoints/` copies were predicted beside the photos.
    folder = photos(tmp_path / "site", "IMG_1.jpg", "sub/IMG_2.jpg", ".ipynb_checkpoints/IMG_1-checkpoint.jpg",
                    "sub/.thumbs/IMG_2.jpg")
    (folder / "._IMG_1.jpg").write_bytes(b"\0\5\x16\7" + bytes(4092))
    skipped: Counter[str] = Counter()
    assert photo_names(folder, skipped) == ["IMG_1.jpg", "sub/IMG_2.jpg"] and not skipped


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_names_what_it_leaves_out_and_predicts_the_rest(trained_checkpoint, tmp_path):
    folder = photos(tmp_path / "site", "a.jpg", "IMG_1.heic", "IMG_2.heic")
    out = tmp_path / "pred.jsonl"
    result = invoke(["predict", "-c", trained_checkpoint, "-i", folder, "-o", out, "--mode", "head", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"note: 2 files in {folder} are not read as photos (.heic 2)" in text
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1


def test_a_folder_of_no_readable_photo_says_what_it_holds(trained_checkpoint, tmp_path):
    folder = photos(tmp_path / "site", "IMG_1.heic", "IMG_2.heic", "clip.mov")
    # Before: "no photos in this folder (looked for ...)", the .heic files not named.
    refused(invoke(["predict", "-c", trained_checkpoint, "-i", folder, "-o", tmp_path / "pred.jsonl", "--device", "cpu"]),
            "no photos in this folder", "it holds .heic 2, .mov 1")
    assert not (tmp_path / "pred.jsonl").exists()
