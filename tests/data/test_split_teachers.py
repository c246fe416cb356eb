"""`data split` and `data teachers`: a teacher pool never holds a validation photo (its answer would be in the prompt)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.layout import TEACHERS, TRAIN, VAL
from bbuvl.data.schema import read_records, resolve_image, write_dataset
from bbuvl.synthetic.dataset import synthesize


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """8 synthetic photos in one JSONL."""
    root = tmp_path_factory.mktemp("photos")
    synthesize(root, 8, 0, seed=4, size=(160, 120), num_teachers=0)
    return root / TRAIN


def photos_of(jsonl: Path) -> set[Path]:
    return {resolve_image(jsonl, r.image).resolve() for r in read_records(jsonl)}


def split(photos: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["data", "split", str(photos), str(out), "--val-ratio", "0.25", *extra])


@pytest.mark.parametrize("seeds", [(1, 2), (3, 4)])
def test_resplitting_its_own_folder_draws_teachers_from_the_new_train_only(photos, tmp_path, seeds):
    out = tmp_path / "split"
    for seed in seeds:
        r = split(photos, out, "--seed", str(seed), "--teachers", "3")
        assert r.exit_code == 0, r.output
        teachers, train, val = photos_of(out / TEACHERS), photos_of(out / TRAIN), photos_of(out / VAL)
        assert len(teachers) == 3 and teachers <= train and not teachers & val


def test_a_stale_teacher_pool_does_not_survive_a_split_with_overwrite(photos, tmp_path):
    out = tmp_path / "split"
    out.mkdir()
    write_dataset(out / TEACHERS, read_records(photos))  # every photo: some will be validation photos
    r = split(photos, out)
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = split(photos, out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert not photos_of(out / TEACHERS) & photos_of(out / VAL)


def test_teachers_from_a_file_sharing_photos_with_the_validation_set_beside_them_are_refused(photos, tmp_path):
    r = split(photos, tmp_path, "--teachers", "0")
    assert r.exit_code == 0, r.output
    for source in (photos, tmp_path / VAL):
        r = CliRunner().invoke(app, ["data", "teachers", str(source), str(tmp_path / "pool.jsonl"), "--k", "2"])
        assert r.exit_code == 2 and "validation photos" in r.output and VAL in r.output, r.output
        assert not (tmp_path / "pool.jsonl").exists()
    r = CliRunner().invoke(app, ["data", "teachers", str(tmp_path / TRAIN), str(tmp_path / "pool.jsonl"), "--k", "2"])
    assert r.exit_code == 0, r.output
    assert photos_of(tmp_path / "pool.jsonl") <= photos_of(tmp_path / TRAIN)


def test_one_photo_split_at_a_high_val_ratio_stays_in_train_never_leaves_train_empty(photos: Path, tmp_path: Path):
    # round(1 * 0.9) sent the only photo to val: a train.jsonl of nothing, which data check and train refuse.
    one = tmp_path / "one.jsonl"
    first = read_records(photos)[0]
    write_dataset(one, [first.model_copy(update={"images": [str(resolve_image(photos, first.image))]})])
    result = CliRunner().invoke(app, ["data", "split", str(one), str(tmp_path / "parts"), "--val-ratio", "0.9"])
    assert result.exit_code == 0 and "1 train, 0 val photos" in result.output, result.output
    assert len(read_records(tmp_path / "parts" / TRAIN)) == 1
    result = CliRunner().invoke(app, ["data", "check", str(tmp_path / "parts"), "--no-decode"])
    assert result.exit_code == 0, result.output
