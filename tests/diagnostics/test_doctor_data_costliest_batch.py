"""`doctor data`'s costliest batch is the one training builds: each photo resized to the budget on its own, a sample
that names its teachers drawing none from the pool, and a student over the budget left out under data.oversize skip."""

from __future__ import annotations

import shutil

from PIL import Image

from bbuvl.config import load_config
from bbuvl.data.schema import Sample, read_records, write_dataset
from bbuvl.diagnostics.data_doctor import diagnose_data

BIG = (672, 504)  # 24 x 18 = 432 merged patches at max_pixels: over a budget of 200


def _enlarge(folder, record):
    """`record` on a copy of its photo resized to BIG (a teacher of the pool may share the file), boxes scaled with it."""
    s, image = BIG[0] / record.width, record.image.replace(".jpg", "_big.jpg")
    Image.open(folder / record.image).resize(BIG).save(folder / image, quality=90)
    return record.model_copy(update={"images": [image], "width": BIG[0], "height": BIG[1], "objects": [
        o.model_copy(update={"bbox_2d": [v * s for v in o.bbox_2d]}) for o in record.objects]})


def _config(tmp_path, folder, oversize):
    path = tmp_path / "run.yaml"
    path.write_text(f"model: {{family: qwen2_5_vl, min_pixels: 12544, max_vision_tokens: 200}}\n"
                    f"data: {{train: {folder / 'train.jsonl'}, val: {folder / 'val.jsonl'}, teachers: {folder / 'teachers.jsonl'},"
                    f" oversize: {oversize}, teacher_ratio: 0.5, num_teachers: 1}}\n"
                    "training: {per_device_batch_size: 1}\n", encoding="utf-8")
    return load_config(path)


def _one_sample_naming_its_teachers(small_dataset, tmp_path):  # noqa: ANN001, ANN202 - paths
    """A copy of the dataset and a file of one sample: two of its training photos enlarged as the teachers of a third."""
    folder = tmp_path / "data"
    shutil.copytree(small_dataset, folder)
    train = [_enlarge(folder, r) for r in read_records(folder / "train.jsonl")[:3]]
    explicit = folder / "explicit.jsonl"
    write_dataset(explicit, [Sample(teachers=train[:2], student=train[2])])
    return folder, explicit


def test_a_sample_naming_its_teachers_costs_each_photo_resized_and_no_pool_teacher(small_dataset, tmp_path):
    folder, explicit = _one_sample_naming_its_teachers(small_dataset, tmp_path)
    cfg = _config(tmp_path, folder, "resize")
    resized = cfg.model.frame(offline=True).vision_tokens(BIG)  # what one photo becomes in training
    assert resized <= 200 < 3 * resized
    report = diagnose_data(explicit, cfg)
    # it said 248: the three photos' sum clipped to one photo's budget (200), plus a 48-token pool teacher it never draws
    assert report.worst_batch == 3 * resized


def test_under_oversize_skip_a_student_over_the_budget_is_not_in_any_batch(small_dataset, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(small_dataset, folder)
    train = read_records(folder / "train.jsonl")
    train[0] = _enlarge(folder, train[0])
    write_dataset(folder / "train.jsonl", train)
    report = diagnose_data(folder / "train.jsonl", _config(tmp_path, folder, "skip"))
    assert report.worst_batch == 48 + 48  # a 224x168 student and one teacher; it counted the skipped 432-token photo


def test_the_table_says_its_over_budget_count_is_of_photos_not_samples(small_dataset, tmp_path):
    from typer.testing import CliRunner

    from bbuvl.cli.doctor import app

    folder, explicit = _one_sample_naming_its_teachers(small_dataset, tmp_path)
    _config(tmp_path, folder, "resize")
    result = CliRunner().invoke(app, ["data", str(explicit), "-c", str(tmp_path / "run.yaml")], terminal_width=200)
    # one sample, three photos over the budget: the column read "over 200 | 3" beside "samples | 1"
    row = next(line for line in result.output.splitlines() if "explicit.jsonl" in line)
    assert "photos over 200" in result.output and row.split()[-2:] == ["3", "│"]
