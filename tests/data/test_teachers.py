"""Coverage-greedy teacher pool and seeded split."""

from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.data.split import split_indices
from bbuvl.data.teachers import coverage, select_teachers


def rec(labels, boxes=None, size=(100, 100)):
    boxes = boxes or [[10, 10, 20, 20]] * len(labels)
    return ImageRecord(images=["x.jpg"], width=size[0], height=size[1],
                       objects=[ObjectAnn(bbox_2d=b, desc=l) for l, b in zip(labels, boxes)])


def test_new_labels_are_chosen_first():
    pool = [rec(["线缆"])] * 5 + [rec(["标签贴纸", "线缆"]), rec(["挡风板/已安装"])]
    chosen = select_teachers(pool, k=2, seed=0)
    assert set(chosen) == {5, 6}


def test_then_density_before_spatial_and_size_buckets_in_that_order_whatever_the_seed():
    small = [[5, 5, 10, 10]]
    big_right = [[60, 60, 100, 100]]  # another 3x3 cell and another size bucket, same density
    pool = [rec(["线缆", "标签贴纸"], small * 2),  # two new labels: first
            rec(["线缆"], small),  # nothing new once the first is in: last
            rec(["线缆"], big_right),  # new cell and size: third
            rec(["线缆"] * 12, small * 12)]  # new density bucket, which outranks cell and size: second
    # Every step has one best photo, so the order is the rule's, never the tie-breaking shuffle's
    # (a selector picking at random passes one seed in 24).
    for seed in range(6):
        assert select_teachers(pool, k=4, seed=seed) == [0, 3, 2, 1]


def test_coverage_buckets():
    c = coverage(rec(["线缆"] * 4, [[0, 0, 50, 50]] * 4))
    assert c.density == 1 and c.spatial == 0 and c.sizes == frozenset({2})


def test_selection_is_seeded_and_bounded():
    pool = [rec(["线缆"]) for _ in range(20)]
    assert select_teachers(pool, 5, seed=3) == select_teachers(pool, 5, seed=3)
    assert len(select_teachers(pool, 50, seed=3)) == 20
    assert select_teachers([], 5) == [] and select_teachers(pool, 0) == []


def test_split_is_seeded_disjoint_and_complete():
    tr, va = split_indices(50, 0.2, seed=7)
    assert (tr, va) == split_indices(50, 0.2, seed=7)
    assert len(va) == 10 and sorted(tr + va) == list(range(50))
    assert split_indices(50, 0.2, seed=8) != (tr, va)
    assert len(split_indices(3, 0.01, 0)[1]) == 1  # at least one validation photo
    assert split_indices(1, 0.5, 0) == ([0], [])


def test_data_teachers_never_writes_over_the_validation_file_it_reads_even_with_overwrite(tmp_path):
    # The validation file beside FILE is read to keep its photos out of the pool: FILE named val.jsonl replaced it.
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from bbuvl.cli.data import app

    lines = {}
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        for i, n in enumerate(names):
            Image.new("RGB", (64, 48), (60 * i, 90, 20 if split == "train" else 200)).save(tmp_path / f"{n}.jpg", "JPEG")
        lines[split] = "".join(json.dumps({"images": [f"{n}.jpg"], "width": 64, "height": 48,
                                           "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": "线缆"}]}) + "\n"
                               for n in names)
        (tmp_path / f"{split}.jsonl").write_text(lines[split], encoding="utf-8")
    result = CliRunner().invoke(app, ["teachers", str(tmp_path / "train.jsonl"), str(tmp_path / "val.jsonl"), "--overwrite"])
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'val.jsonl'}: is also the input val.jsonl beside FILE" in " ".join(result.output.split())
    assert (tmp_path / "val.jsonl").read_text(encoding="utf-8") == lines["val"]
    result = CliRunner().invoke(app, ["teachers", str(tmp_path / "train.jsonl"), str(tmp_path / "teachers.jsonl")])
    assert result.exit_code == 0 and len((tmp_path / "teachers.jsonl").read_text().splitlines()) == 2, result.output


def test_data_teachers_refuses_a_training_file_whose_photos_are_not_where_its_paths_lead(tmp_path):
    # A train.jsonl copied out of its folder: every teacher was written relocated to a photo that is not there, and
    # data check refused the pool the command had just written.
    import json

    import pytest
    from PIL import Image

    from bbuvl.data.schema import DatasetError, read_records
    from bbuvl.data.teachers import write_teacher_pool

    (tmp_path / "ds" / "images").mkdir(parents=True)
    Image.new("RGB", (64, 48), (60, 90, 20)).save(tmp_path / "ds" / "images" / "a.jpg", "JPEG")
    line = json.dumps({"images": ["images/a.jpg"], "width": 64, "height": 48,
                       "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": "线缆"}]}) + "\n"
    (tmp_path / "ds" / "train.jsonl").write_text(line, encoding="utf-8")
    (tmp_path / "copy.jsonl").write_text(line, encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        write_teacher_pool(tmp_path / "copy.jsonl", tmp_path / "ds" / "teachers.jsonl")
    assert str(e.value).startswith(f"{tmp_path / 'copy.jsonl'}:1: image images/a.jpg: no such file at "), e.value
    assert not (tmp_path / "ds" / "teachers.jsonl").exists()
    write_teacher_pool(tmp_path / "ds" / "train.jsonl", tmp_path / "ds" / "teachers.jsonl")
    assert [r.image for r in read_records(tmp_path / "ds" / "teachers.jsonl")] == ["images/a.jpg"]


def test_at_most_one_photo_of_each_near_copy_group_is_chosen_whatever_the_seed():
    pool = [rec(["线缆"]), rec(["线缆"]), rec(["标签贴纸"]), rec(["挡风板/已安装"]), rec(["线缆"])]
    for seed in range(8):
        chosen = select_teachers(pool, k=5, seed=seed, together=[[0, 1, 4]])
        assert set(chosen) - {0, 1, 4} == {2, 3} and len(set(chosen) & {0, 1, 4}) == 1, (seed, chosen)


def test_the_teacher_pool_of_a_file_with_a_photos_reencoded_copies_keeps_one_and_names_the_others(tmp_path):
    # A copy saved again as PNG or at another JPEG quality has other bytes, so two teachers of a pool were one photo.
    import json

    from PIL import Image, ImageDraw

    from bbuvl.data.schema import read_records
    from bbuvl.data.teachers import choose_teacher_pool, write_teacher_pool

    (tmp_path / "ds" / "images").mkdir(parents=True)
    lines = []
    for n, (x, colour) in enumerate([(4, (200, 40, 40)), (30, (40, 200, 40)), (16, (40, 40, 200))]):
        photo = Image.new("RGB", (64, 48), (90, 90, 90))
        ImageDraw.Draw(photo).rectangle([x, 8, x + 20, 36], fill=colour)
        photo.save(tmp_path / "ds" / "images" / f"p{n}.jpg", "JPEG", quality=95)
        lines.append((f"p{n}.jpg", x))
    first = Image.open(tmp_path / "ds" / "images" / "p0.jpg")
    first.save(tmp_path / "ds" / "images" / "p0 sent.png", "PNG")
    first.save(tmp_path / "ds" / "images" / "p0 small.jpg", "JPEG", quality=40)
    lines += [("p0 sent.png", 4), ("p0 small.jpg", 4)]
    (tmp_path / "ds" / "train.jsonl").write_text("".join(
        json.dumps({"images": [f"images/{name}"], "width": 64, "height": 48,
                    "objects": [{"bbox_2d": [x, 8, x + 20, 36], "desc": "线缆"}]}) + "\n" for name, x in lines),
        encoding="utf-8")
    for seed in range(4):
        pool = choose_teacher_pool(tmp_path / "ds" / "train.jsonl", tmp_path / "ds" / "teachers.jsonl", k=10, seed=seed)
        written = [r.image for r in read_records(tmp_path / "ds" / "teachers.jsonl")]
        copies = {"images/p0.jpg", "images/p0 sent.png", "images/p0 small.jpg"}
        assert len(written) == 3 and len(set(written) & copies) == 1, (seed, written)
        kept = next(i for i in pool.chosen if pool.records[i].image in copies)
        assert sorted(pool.skipped) == sorted({0, 3, 4} - {kept}) and set(pool.skipped.values()) == {kept}
    records, chosen = write_teacher_pool(tmp_path / "ds" / "train.jsonl", tmp_path / "ds" / "teachers.jsonl", k=10)
    assert len(records) == 5 and len(chosen) == 3
    from typer.testing import CliRunner

    from bbuvl.cli import app

    r = CliRunner().invoke(app, ["data", "teachers", str(tmp_path / "ds" / "train.jsonl"),
                                 str(tmp_path / "ds" / "teachers2.jsonl")], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    assert "2 photo(s) not taken as teachers: near-copies of a teacher chosen" in " ".join(r.output.split()), r.output


def test_a_training_photo_that_is_a_validation_photos_near_copy_is_left_out_of_the_pool_and_named(tmp_path):
    # Another JPEG quality or a mirror image has other bytes and another path: the pool showed a validation photo's
    # answer in training prompts, whatever the seed.
    import json

    from PIL import Image, ImageDraw, ImageOps

    from bbuvl.data.schema import read_records
    from bbuvl.data.teachers import choose_teacher_pool

    (tmp_path / "ds" / "images").mkdir(parents=True)

    def photo(name, x, colour):
        image = Image.new("RGB", (64, 48), (90, 90, 90))
        ImageDraw.Draw(image).rectangle([x, 8, x + 20, 36], fill=colour)
        image.save(tmp_path / "ds" / "images" / name, "JPEG", quality=95)
        return image

    def line(name, x):
        return json.dumps({"images": [f"images/{name}"], "width": 64, "height": 48,
                           "objects": [{"bbox_2d": [x, 8, x + 20, 36], "desc": "线缆"}]}) + "\n"

    photo("other.jpg", 30, (200, 200, 40))
    held = photo("held.jpg", 4, (200, 40, 40))
    held.save(tmp_path / "ds" / "images" / "held q40.jpg", "JPEG", quality=40)
    ImageOps.mirror(held).save(tmp_path / "ds" / "images" / "held [mirror].png", "PNG")
    photo("p1.jpg", 30, (40, 200, 40))
    photo("p2.jpg", 16, (40, 40, 200))
    (tmp_path / "ds" / "val.jsonl").write_text(line("other.jpg", 30) + line("held.jpg", 4), encoding="utf-8")
    (tmp_path / "ds" / "train.jsonl").write_text(
        line("p1.jpg", 30) + line("held q40.jpg", 4) + line("held [mirror].png", 40) + line("p2.jpg", 16),
        encoding="utf-8")
    for seed in range(4):
        pool = choose_teacher_pool(tmp_path / "ds" / "train.jsonl", tmp_path / "ds" / "teachers.jsonl", k=10, seed=seed)
        written = sorted(r.image for r in read_records(tmp_path / "ds" / "teachers.jsonl"))
        assert written == ["images/p1.jpg", "images/p2.jpg"], (seed, written)
        assert pool.held_out == {1: (2, "images/held.jpg"), 2: (2, "images/held.jpg")} and not pool.skipped


def test_a_training_file_of_validation_photos_near_copies_only_is_refused_not_written_as_an_empty_pool(tmp_path):
    # Every photo left out, the pool was an empty teachers.jsonl (which data check refuses) written with exit 0.
    import json

    import pytest
    from PIL import Image, ImageDraw

    from bbuvl.data.teachers import choose_teacher_pool

    held = Image.new("RGB", (64, 48), (90, 90, 90))
    ImageDraw.Draw(held).rectangle([4, 8, 24, 36], fill=(200, 40, 40))
    held.save(tmp_path / "held.jpg", "JPEG", quality=95)
    held.save(tmp_path / "held again.jpg", "JPEG", quality=50)
    for name in ("val", "train"):
        image = "held.jpg" if name == "val" else "held again.jpg"
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"images": [image], "width": 64, "height": 48, "objects": [
            {"bbox_2d": [4, 8, 24, 36], "desc": "线缆"}]}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as e:
        choose_teacher_pool(tmp_path / "train.jsonl", tmp_path / "teachers.jsonl")
    assert str(e.value).startswith(f"{tmp_path / 'train.jsonl'}: its 1 photo(s) are all near-copies of validation "
                                   f"photos in {tmp_path / 'val.jsonl'} (e.g. held again.jpg, a copy of held.jpg, line 1)")
    assert not (tmp_path / "teachers.jsonl").exists()


def test_a_teacher_pool_written_through_a_link_to_another_folder_names_photos_that_are_there(tmp_path):
    # The file is written where the link leads; its paths were relative to the link's folder, and data check refused
    # every teacher the command had just written.
    import json
    import os

    from PIL import Image

    from bbuvl.data.schema import read_records, resolve_image
    from bbuvl.data.teachers import write_teacher_pool

    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "pools" / "shared").mkdir(parents=True)
    Image.new("RGB", (64, 48), (60, 90, 20)).save(tmp_path / "ds" / "images" / "a.jpg", "JPEG")
    (tmp_path / "ds" / "train.jsonl").write_text(json.dumps({"images": ["images/a.jpg"], "width": 64, "height": 48,
        "objects": [{"bbox_2d": [4, 5, 30, 40], "desc": "线缆"}]}) + "\n", encoding="utf-8")
    (tmp_path / "pools" / "shared" / "teachers.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "pools" / "link.jsonl").symlink_to("shared/teachers.jsonl")
    write_teacher_pool(tmp_path / "ds" / "train.jsonl", tmp_path / "pools" / "link.jsonl")
    written = tmp_path / "pools" / "shared" / "teachers.jsonl"
    assert (tmp_path / "pools" / "link.jsonl").is_symlink()
    assert [os.path.normpath(resolve_image(written, r.image)) for r in read_records(written)] == [
        str(tmp_path / "ds" / "images" / "a.jpg")]


def test_data_teachers_says_how_many_photos_it_left_out_as_validation_photos_near_copies(tmp_path):
    import json

    from PIL import Image, ImageDraw, ImageOps
    from typer.testing import CliRunner

    from bbuvl.cli import app

    (tmp_path / "images").mkdir()
    held = Image.new("RGB", (64, 48), (90, 90, 90))
    ImageDraw.Draw(held).rectangle([4, 8, 24, 36], fill=(200, 40, 40))
    held.save(tmp_path / "images" / "held.jpg", "JPEG", quality=95)
    ImageOps.mirror(held).save(tmp_path / "images" / "held [m].png", "PNG")
    other = Image.new("RGB", (64, 48), (40, 40, 200))
    ImageDraw.Draw(other).rectangle([30, 8, 50, 36], fill=(40, 200, 40))
    other.save(tmp_path / "images" / "p1.jpg", "JPEG")

    def line(name):
        return json.dumps({"images": [f"images/{name}"], "width": 64, "height": 48,
                           "objects": [{"bbox_2d": [4, 8, 24, 36], "desc": "线缆"}]}) + "\n"

    (tmp_path / "val.jsonl").write_text(line("held.jpg"), encoding="utf-8")
    (tmp_path / "train.jsonl").write_text(line("p1.jpg") + line("held [m].png"), encoding="utf-8")
    r = CliRunner().invoke(app, ["data", "teachers", str(tmp_path / "train.jsonl"), str(tmp_path / "teachers.jsonl")],
                           env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    assert (f"1 photo(s) not taken as teachers: near-copies of validation photos in {tmp_path / 'val.jsonl'}, whose "
            "answers a teacher shows in training prompts (e.g. images/held [m].png, a copy of images/held.jpg, line 1)"
            in " ".join(r.output.split())), r.output
    assert "1 teachers from 2 photos" in r.output
