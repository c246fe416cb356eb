"""A dataset made on Linux is copied to Windows: the names `bbuvl data convert|tile|import-coco` write are ones every
system holds, and the names a user's own dataset refers to are warned about by `data check` and `data export-coco`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.data.names import portability_problem
from tests.data.test_hostile_inputs import LABEL, photo, record, run, vendor_text

UNPORTABLE = ("a:b", "CON", "why?", "nul.old")  # each a name Windows refuses, or a device there


def written_names(folder: Path) -> list[str]:
    """Every file under `folder`, relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_convert_writes_names_windows_can_hold_and_their_records_follow(tmp_path: Path):
    src = tmp_path / "export"
    for i, stem in enumerate((*UNPORTABLE, "a_b")):  # `a_b` is also what `a:b` becomes: it keeps its own file
        photo(src / f"{stem}.jpg", colour=(50 * i, 90, 20))
        (src / f"{stem}.json").write_text(vendor_text(), encoding="utf-8")
    out = tmp_path / "out"
    code, text = run("convert", src, out, "--workers", "1", "--val-ratio", "0")
    assert code == 0, text
    images = written_names(out / "images")
    assert [n for n in images if portability_problem(n)] == [], images
    assert {"CON_.jpg", "nul_.old.jpg", "why_.jpg", "a_b.jpg"} <= set(images) and len(images) == 5
    kept = [json.loads(line)["images"][0] for line in (out / "train.jsonl").open(encoding="utf-8")]
    assert sorted(kept) == [f"images/{n}" for n in images]
    code, text = run("check", out)
    assert code == 0 and "Windows" not in text, text


def import_coco(tmp_path: Path, names: list[str]) -> tuple[Path, int, str]:
    """`data import-coco` of a COCO file naming `names` (photos already in tmp_path/pics), one box each."""
    coco = {"images": [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 5, 26, 35]} for i in range(len(names))],
            "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")
    out = tmp_path / "out"
    code, text = run("import-coco", tmp_path / "coco.json", tmp_path / "pics", out, "--val-ratio", "0")
    return out, code, text


def test_import_coco_copies_photos_under_names_windows_can_hold(tmp_path: Path):
    names = ["site./a:1.jpg", "AUX.jpg", "ok.jpg"]
    for i, name in enumerate(names):
        photo(tmp_path / "pics" / name, colour=(80 * i, 10, 10))
    out, code, text = import_coco(tmp_path, names)
    assert code == 0, text
    assert written_names(out / "images") == ["AUX_.jpg", "ok.jpg", "site_/a_1.jpg"]
    code, text = run("check", out)
    assert code == 0 and "Windows" not in text, text


def test_check_and_export_coco_warn_of_a_users_photo_name_windows_cannot_hold(tmp_path: Path):
    photo(tmp_path / "a:b.jpg")
    photo(tmp_path / "sub." / "ok.jpg", colour=(0, 0, 200))
    photo(tmp_path / "fine.jpg", colour=(0, 200, 0))
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(record(n) for n in ("a:b.jpg", "sub./ok.jpg", "fine.jpg")) + "\n", encoding="utf-8")
    code, text = run("check", jsonl)
    text = " ".join(text.split())
    assert code == 0 and "2 warning(s)" in text, text
    assert f"{jsonl}:1: image a:b.jpg: 'a:b.jpg' holds ':', which Windows refuses in a file name" in text
    assert f"{jsonl}:2: image sub./ok.jpg: 'sub.' ends in a dot or a space, which Windows drops" in text
    code, text = run("export-coco", jsonl, tmp_path / "coco.json")
    assert code == 0 and "warning: file_name a:b.jpg: 'a:b.jpg' holds ':'" in " ".join(text.split()), text
    # the COCO file names the photos as they are: renaming them is the user's call
    assert [im["file_name"] for im in json.loads((tmp_path / "coco.json").read_text(encoding="utf-8"))["images"]] == \
        ["a:b.jpg", "sub./ok.jpg", "fine.jpg"]
    # tiling writes photos of its own: those are named so Windows holds them
    code, text = run("tile", jsonl, tmp_path / "tiles", "--grid", "2x1")
    assert code == 0, text
    tiles = written_names(tmp_path / "tiles" / "images")
    assert len(tiles) == 6 and [n for n in tiles if portability_problem(n)] == [], tiles
    code, text = run("check", tmp_path / "tiles")
    assert code == 0 and "Windows" not in text, text


def test_a_photo_named_in_another_letter_case_is_not_found_and_the_file_that_is_there_is_named(tmp_path: Path):
    # A dataset made on Windows or macOS names `IMG_1.JPG` for `IMG_1.jpg` and worked there: "image file not found"
    # alone sent the user looking for a missing photo.
    photo(tmp_path / "pics" / "IMG_1.jpg")
    photo(tmp_path / "pics" / "ok.jpg", colour=(0, 0, 200))
    jsonl = tmp_path / "pics" / "d.jsonl"
    jsonl.write_text(record("img_1.JPG") + "\n" + record("missing.jpg") + "\n", encoding="utf-8")
    code, text = run("check", jsonl)
    text = " ".join(text.split())
    assert code == 1, text
    assert (f"{jsonl}:1: image img_1.JPG: image file not found (IMG_1.jpg is there: only the letter case differs, which "
            "Windows and macOS ignore)") in text
    assert f"{jsonl}:2: image missing.jpg: image file not found" in text and "missing.jpg: image file not found (" not in text
    coco = {"images": [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(["IMG_1.JPG", "ok.jpg"])],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 5, 26, 35]} for i in range(2)],
            "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")
    code, text = run("import-coco", tmp_path / "coco.json", tmp_path / "pics", tmp_path / "out", "--val-ratio", "0")
    assert code == 0, text
    [entry] = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").open(encoding="utf-8")]
    assert entry["reason"] == "image file not found (IMG_1.jpg is there: only the letter case differs, which Windows " \
        "and macOS ignore)"


def test_import_coco_never_writes_two_photos_whose_names_differ_only_in_letter_case(tmp_path: Path):
    # `A.jpg` and `a.jpg` were copied as two files: one file on Windows and macOS, where the second replaced the first
    # and its records showed the other photo's pixels.
    photo(tmp_path / "pics" / "A.jpg")
    photo(tmp_path / "pics" / "a.jpg", colour=(0, 0, 200))
    out, code, text = import_coco(tmp_path, ["A.jpg", "a.jpg"])
    assert code == 0, text
    written = written_names(out / "images")
    assert len(written) == 2 and len({n.casefold() for n in written}) == 2, written
    code, text = run("check", out)
    assert code == 0, text


def test_check_warns_of_two_photos_whose_names_differ_only_in_letter_case(tmp_path: Path):
    photo(tmp_path / "A.jpg")
    photo(tmp_path / "a.jpg", colour=(0, 0, 200))
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(record("A.jpg") + "\n" + record("a.jpg") + "\n" + record("./A.jpg") + "\n", encoding="utf-8")
    code, text = run("check", jsonl)
    text = " ".join(text.split())
    assert code == 1, text  # line 3 is line 1's photo again: an error of its own
    assert (f"{jsonl}:2: image a.jpg: differs from A.jpg (line 1) only in letter case: one file on Windows and macOS"
            in text), text
    assert f"{jsonl}:3: image ./A.jpg: differs" not in text


def test_check_says_two_photos_differ_in_unicode_composition_and_shows_their_names_apart(tmp_path: Path):
    nfc, nfd = "caf\u00e9.jpg", "cafe\u0301.jpg"  # two files on Linux, one on macOS
    photo(tmp_path / nfc)
    photo(tmp_path / nfd, colour=(0, 0, 200))
    photo(tmp_path / "CAF\u00c9.jpg", colour=(0, 200, 0))
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(record(n) for n in (nfc, nfd, "CAF\u00c9.jpg")) + "\n", encoding="utf-8")
    code, text = run("check", jsonl)
    text = " ".join(text.split())
    assert code == 0, text
    # Before: "image café.jpg: differs from café.jpg (line 1) only in letter case", the two names printed alike.
    assert (f"{jsonl}:2: image 'cafe\\u0301.jpg': differs from 'caf\\u00e9.jpg' (line 1) only in Unicode composition "
            "(NFC/NFD): one file on macOS, where a copy keeps one of the two photos" in text), text
    assert f"{jsonl}:3: image CAF\u00c9.jpg: differs from caf\u00e9.jpg (line 1) only in letter case: one file on Windows" \
        in text, text


def test_the_letter_case_hint_follows_the_folder_and_never_names_the_missing_file_itself(tmp_path):
    from bbuvl.data.images import ImageError, load_image

    Image.new("RGB", (8, 8)).save(tmp_path / "other.jpg")
    with pytest.raises(ImageError) as missing:
        load_image(tmp_path / "img.jpg")
    assert "letter case" not in str(missing.value)
    time.sleep(0.01)  # a later modification time for the folder on every file system
    Image.new("RGB", (8, 8)).save(tmp_path / "IMG.jpg")  # the listing read above was kept: it must be read again
    with pytest.raises(ImageError, match=r"IMG\.jpg is there: only the letter case differs"):
        load_image(tmp_path / "img.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")  # its own name is there: no hint naming itself
    with pytest.raises(ImageError) as dangling:
        load_image(tmp_path / "gone.jpg")
    assert "letter case" not in str(dangling.value), dangling.value


def test_a_photo_named_by_a_url_or_a_windows_drive_path_is_said_to_be_one(tmp_path: Path):
    # A dataset exported from a web tool names `https://host/a.jpg`, one made on Windows `C:\data\b.jpg`: "image file not
    # found" alone, and for the URL a warning that Windows refuses the ':' in 'https:', sent the user looking elsewhere.
    photo(tmp_path / "ok.jpg")
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(record(name) for name in ("https://example.com/a.jpg", "s3://bucket/b.jpg",
                                                         "C:\\data\\c.jpg", "D:/data/d.jpg", "ok.jpg")) + "\n",
                     encoding="utf-8")
    code, text = run("check", jsonl)
    text = " ".join(text.split())
    assert code == 1, text
    assert (f"{jsonl}:1: image https://example.com/a.jpg: image file not found; the name is a URL (https://): photos "
            "are read from local files only, so download it and name the file") in text
    assert f"{jsonl}:2: image s3://bucket/b.jpg: image file not found; the name is a URL (s3://)" in text
    assert (f"{jsonl}:3: image C:\\data\\c.jpg: image file not found; the name is a path on a Windows drive (C:), no "
            "file here") in text
    assert f"{jsonl}:4: image D:/data/d.jpg: image file not found; the name is a path on a Windows drive (D:)" in text
    assert "Windows refuses" not in text and ":5:" not in text


def test_a_photo_name_holding_a_line_end_is_shown_on_its_problems_line(tmp_path: Path):
    # `data check` names every problem as `file:line: problem`, one a line: a photo named `new\nline.jpg` printed
    # "image new" on one line and "line.jpg: 'new\nline.jpg' holds ..." on the next, a line naming no file
    photo(tmp_path / "new\nline.jpg")
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(record("new\nline.jpg") + "\n" + record("gone\r.jpg") + "\n", encoding="utf-8")
    code, text = run("check", jsonl)
    assert "new\nline" not in text and "gone\r" not in text, text
    text = " ".join(text.split())
    assert f"{jsonl}:1: image new\\nline.jpg: 'new\\nline.jpg' holds '\\n', which Windows refuses" in text, text
    assert f"{jsonl}:2: image gone\\r.jpg: image file not found" in text, text
