"""One photo under two paths (data/one_photo.py): one file however spelt or linked, or a copy of its image data."""

from pathlib import Path

from PIL import Image

from bbuvl.data.one_photo import SAME_CONTENT, SAME_FILE, one_photo, photos_among


def _photos(tmp_path: Path) -> Path:
    (tmp_path / "data" / "images").mkdir(parents=True)
    images = tmp_path / "data" / "images"
    for name, colour in (("a.png", (200, 30, 30)), ("b.png", (30, 30, 200))):
        Image.new("RGB", (64, 48), colour).save(images / name)
    (images / "copy_of_a.png").write_bytes((images / "a.png").read_bytes())
    (tmp_path / "linked").symlink_to(images)
    (tmp_path / "pool").mkdir()  # a teacher pool's folder beside the data's
    return images


def test_one_file_however_spelt_or_linked_and_a_copy_are_one_photo_and_another_photo_is_not(tmp_path):
    images = _photos(tmp_path)
    a = images / "a.png"
    assert one_photo(tmp_path / "pool" / ".." / "data" / "images" / "a.png", a) == SAME_FILE
    assert one_photo(tmp_path / "linked" / "a.png", a) == SAME_FILE
    assert one_photo(images / "copy_of_a.png", a) == SAME_CONTENT
    assert one_photo(images / "b.png", a) is None
    assert one_photo(images / "missing.png", a) is None
    # data check's digests decide where they hold both photos
    assert one_photo(images / "copy_of_a.png", a, {images / "copy_of_a.png": "x", a: "y"}) is None


def test_photos_among_names_each_pool_photos_students_and_reads_only_files_of_a_pool_photos_size(tmp_path):
    images = _photos(tmp_path)
    (images / "big.png").write_bytes(b"not read: no pool photo has its size" * 100)
    students = [images / "a.png", images / "b.png", images / "big.png"]
    pool = [tmp_path / "linked" / "b.png", images / "copy_of_a.png", images / "missing.png"]
    assert photos_among(pool, students) == [[(1, SAME_FILE)], [(0, SAME_CONTENT)], []]
