"""`doctor data`: the over-budget, size-mismatched, rotated and unlabelled samples planted in a broken copy are named."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.doctor import app
from bbuvl.config import load_config
from bbuvl.data.images import EXIF_ORIENTATION
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import read_records, write_dataset
from bbuvl.diagnostics.data_doctor import diagnose_data

SETTINGS = {"model": {"family": "qwen2_5_vl", "min_pixels": 12544, "max_vision_tokens": 200}, "training": {"per_device_batch_size": 2}}


def _config_file(folder, tmp_path):
    data = {**SETTINGS, "data": {"train": str(folder / "train.jsonl"), "val": str(folder / "val.jsonl"),
                                 "teachers": str(folder / "teachers.jsonl")}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture()
def broken(small_dataset, tmp_path):
    """A copy of the synthetic dataset with four planted faults; returns (folder, {fault: (file, line, image)})."""
    folder = tmp_path / "broken"
    shutil.copytree(small_dataset, folder)
    train = read_records(folder / "train.jsonl")
    # 1. a photo far over the vision-token budget : 1400x1050, boxes scaled with it
    big = train[2]
    s = 1400 / big.width
    Image.open(folder / big.image).resize((1400, 1050)).save(folder / big.image, quality=90)
    train[2] = big.model_copy(update={"width": 1400, "height": 1050, "objects": [
        o.model_copy(update={"bbox_2d": [v * s for v in o.bbox_2d]}) for o in big.objects]})
    # 2. a record whose width is not the image's
    train[3] = train[3].model_copy(update={"width": train[3].width + 6})
    # 3. an EXIF-rotated file: pixels stored sideways with orientation 6, upright size = the record's
    rotated = Image.open(folder / train[5].image)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    rotated.transpose(Image.Transpose.ROTATE_90).save(folder / train[5].image, exif=exif, quality=90)
    write_dataset(folder / "train.jsonl", train)
    # 4. a teacher answer with a label the prompt (train + val labels) never names
    used = {o.desc for name in ("train.jsonl", "val.jsonl") for r in read_records(folder / name) for o in r.objects}
    stranger = next(label for label in Hierarchy.load().labels() if label not in used)
    teachers = read_records(folder / "teachers.jsonl")
    teachers[0] = teachers[0].model_copy(update={"objects": [teachers[0].objects[0].model_copy(update={"desc": stranger})]})
    write_dataset(folder / "teachers.jsonl", teachers)
    faults = {"over budget": ("train.jsonl", 3, train[2].image), "size": ("train.jsonl", 4, train[3].image),
              "rotated": ("train.jsonl", 6, train[5].image), "label": ("teachers.jsonl", 1, stranger)}
    return folder, faults


def _found(report, file, line, *words):
    return [p for p in report.problems if p.file.endswith(file) and p.line == line and all(w in p.message for w in words)]


def test_doctor_data_names_each_planted_fault(broken, tmp_path):
    folder, faults = broken
    cfg = load_config(_config_file(folder, tmp_path))
    report = diagnose_data(folder, cfg)
    file, line, image = faults["over budget"]
    assert _found(report, file, line, image, "vision tokens", "max_vision_tokens=200")
    assert max(report.tokens[0].per_sample) > 1000 and report.tokens[0].over_budget == 1
    file, line, image = faults["size"]
    assert [p.severity for p in _found(report, file, line, image, "do not match")] == ["error"]
    file, line, image = faults["rotated"]
    assert [p.severity for p in _found(report, file, line, image, "EXIF-rotated", "orientation 6")] == ["warning"]
    file, line, label = faults["label"]
    assert [p.severity for p in _found(report, file, line, label, "not in the prompt vocabulary")] == ["error"]
    planted = {(f, ln) for f, ln, _ in faults.values()}
    assert {(p.file.rsplit("/", 1)[-1], p.line) for p in report.problems if p.line} == planted  # nothing else


def test_doctor_data_cli_exits_1_and_prints_the_faults(broken, tmp_path):
    folder, faults = broken
    out = tmp_path / "findings.json"
    result = CliRunner().invoke(app, ["data", str(folder), "--config", str(_config_file(folder, tmp_path)), "--json", str(out)])
    assert result.exit_code == 1, result.output
    for _, _, name in faults.values():
        assert name in result.output.replace("\n", "")
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert sum(p["severity"] == "error" for p in saved["problems"]) == 2


def test_clean_dataset_has_no_findings_and_counts_tokens_per_batch(small_dataset, tmp_path):
    cfg = load_config(_config_file(small_dataset, tmp_path))
    report = diagnose_data(small_dataset, cfg)
    assert report.problems == []
    per_photo = (224 // 28) * (168 // 28)  # a 224x168 photo is its own model frame: 8 x 6 merged patches
    assert {t for s in report.tokens for t in s.per_sample} == {per_photo}
    # two students, each with one teacher drawn (teacher_ratio > 0)
    assert report.worst_batch == 2 * per_photo + 2 * per_photo


def test_a_budget_that_a_batch_could_overflow_is_an_error_naming_the_value_that_fits(small_dataset, tmp_path):
    cfg = load_config(_config_file(small_dataset, tmp_path))
    cfg.model.max_vision_tokens_per_batch = 10  # the loaded config checks each section; training checks the batch
    [problem] = diagnose_data(small_dataset, cfg).problems
    assert problem.severity == "error" and "model.max_vision_tokens_per_batch (10)" in problem.message
    assert "raise it to" in problem.message and "`bbuvl train` refuses this config" in problem.message


def test_a_budget_problem_names_the_configs_line_of_the_key_at_fault_not_the_dataset(small_dataset, tmp_path):
    config = _config_file(small_dataset, tmp_path)
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["model"]["max_vision_tokens_per_batch"] = 10
    config.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    line = next(i for i, text in enumerate(config.read_text(encoding="utf-8").splitlines(), 1)
                if text.strip().startswith("max_vision_tokens_per_batch:"))
    out = tmp_path / "findings.json"
    result = CliRunner().invoke(app, ["data", str(small_dataset), "--config", str(config), "--json", str(out)])
    assert result.exit_code == 1, result.output
    [problem] = json.loads(out.read_text(encoding="utf-8"))["problems"]
    assert (problem["file"], problem["line"]) == (str(config), line)  # it named the dataset folder, at no line
    assert "model.max_vision_tokens_per_batch (10)" in problem["message"]


def test_one_jsonl_file_is_costed_with_the_runs_teacher_pool(small_dataset, tmp_path):
    cfg = load_config(_config_file(small_dataset, tmp_path))
    report = diagnose_data(small_dataset / "train.jsonl", cfg)
    assert [t.file for t in report.tokens] == [str(small_dataset / "train.jsonl")]
    assert report.worst_batch == 4 * 48  # two 48-token students, each with one 48-token teacher from data.teachers


def test_doctor_data_lists_the_answers_max_length_will_cut_as_training_measures_them(small_dataset, tiny_model_dir, tmp_path):
    """A dense photo's answer beyond data.max_length is a warning naming file and line; the same count training logs."""
    import json as _json

    from PIL import Image

    from bbuvl.config import load_config
    from bbuvl.diagnostics.data_doctor import diagnose_data

    Image.new("RGB", (224, 224), (90, 120, 60)).save(tmp_path / "dense.png")
    boxes = [[c * 11.0, r * 11.0, c * 11.0 + 5, r * 11.0 + 5] for r in range(20) for c in range(10)]
    lines = [{"images": ["dense.png"], "width": 224, "height": 224, "objects": [{"bbox_2d": b, "desc": "线缆"} for b in boxes]},
             {"images": ["dense.png"], "width": 224, "height": 224, "objects": [{"bbox_2d": boxes[0], "desc": "线缆"}]}]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(_json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    overrides = [f"model.path={tiny_model_dir}", "model.min_pixels=12544", "model.max_pixels=50176",
                 f"data.train={data}", "data.val=null", "data.teachers=null"]
    report = diagnose_data(data, load_config(None, overrides + ["data.max_length=1024"]))
    cut = [p for p in report.problems if "cut to" in p.message]
    assert [(p.file, p.line, p.severity) for p in cut] == [(str(data), 1, "warning")]
    assert "of 200 objects are taught" in cut[0].message and "1 answer(s) will be cut" in report.lengths
    roomy = diagnose_data(data, load_config(None, overrides + ["data.max_length=100000"]))
    assert not [p for p in roomy.problems if "cut to" in p.message] and "0 answer(s) will be cut" in roomy.lengths
    tight = diagnose_data(data, load_config(None, overrides + ["data.max_length=64"]))
    assert any(p.severity == "error" and p.file == str(data) and p.line == 1 and "before its answer" in p.message
               for p in tight.problems)
    hub = diagnose_data(data, load_config(None, [o for o in overrides if not o.startswith("model.path")] + ["model.family=qwen2_5_vl"]))
    assert hub.lengths.startswith("answer lengths not checked")


@pytest.fixture()
def no_network(monkeypatch):
    """The hub switch the user may have left on is off, and any name lookup is recorded and refused."""
    import socket

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    asked: list[str] = []

    def refuse(host, *args, **kwargs):
        asked.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, "no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return asked


@pytest.mark.parametrize("model_path", ["org/not-downloaded-yet", "{tmp}/not-built-yet", "{tmp}"])
def test_doctor_data_without_the_model_checks_the_rest_offline_and_says_what_it_skipped(
        broken, tmp_path, no_network, model_path):
    """No model (a hub id not in the cache, a folder not built yet, a folder without config.json): the size mismatch is
    still named, the checks that need the model are skipped in one line that says why and how, and nothing is
    looked up on the network."""
    folder, faults = broken
    config = _config_file(folder, tmp_path)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["model"] = {k: v for k, v in data["model"].items() if k != "family"} | {"path": model_path.format(tmp=tmp_path)}
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    report = diagnose_data(folder, load_config(config))
    file, line, image = faults["size"]
    assert [p.severity for p in _found(report, file, line, image, "do not match")] == ["error"]
    file, line, label = faults["label"]
    assert _found(report, file, line, label, "not in the prompt vocabulary")
    assert not report.counted and not any("vision tokens" in p.message for p in report.problems)
    assert report.lengths.startswith("skipped, as they need the model") and "model.family" in report.lengths

    result = CliRunner().invoke(app, ["data", str(folder), "--config", str(config)])
    assert result.exit_code == 1, result.output
    text = result.output.replace("\n", "")
    assert image in text and text.count("skipped, as they need the model") == 1
    assert "Retrying" not in result.output and "vision tokens at" not in result.output
    assert no_network == []


def test_doctor_data_counts_vision_tokens_by_the_named_family_without_the_model(broken, tmp_path, no_network):
    """model.family named, model not there: vision tokens are counted; only answer lengths wait for the tokenizer."""
    folder, faults = broken
    cfg = load_config(_config_file(folder, tmp_path), ["model.path=org/not-downloaded-yet"])
    report = diagnose_data(folder, cfg)
    file, line, image = faults["over budget"]
    assert report.counted and _found(report, file, line, image, "vision tokens", "max_vision_tokens=200")
    assert report.lengths.startswith("answer lengths not checked") and "download" in report.lengths
    assert no_network == []


def test_an_empty_dataset_file_is_an_error_and_an_empty_optional_one_in_a_folder_a_warning(small_dataset, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n  \n", encoding="utf-8")
    result = CliRunner().invoke(app, ["data", str(tmp_path / "empty.jsonl")])
    assert result.exit_code == 1 and "no photos: the file is empty" in " ".join(result.output.split()), result.output
    folder = tmp_path / "ds"
    shutil.copytree(small_dataset, folder)
    (folder / "teachers.jsonl").write_text("", encoding="utf-8")
    report = diagnose_data(folder, load_config(None, ["model.family=qwen2_5_vl"]))
    [empty] = [p for p in report.problems if "no photos" in p.message]
    assert empty.file == str(folder / "teachers.jsonl") and empty.severity == "warning"


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_checkpoint_that_is_no_folder_is_refused_as_such(small_dataset, tmp_path, kind):
    checkpoint = tmp_path / "ckpt"
    if kind == "file":
        checkpoint.write_text("not a checkpoint", encoding="utf-8")
    result = CliRunner().invoke(app, ["data", str(small_dataset), "--checkpoint", str(checkpoint)])
    said = "a file, not a checkpoint folder" if kind == "file" else "no such checkpoint folder"
    assert result.exit_code == 2 and said in " ".join(result.output.split()) and "Errno" not in result.output, result.output


def test_what_training_refuses_in_a_record_is_an_error_naming_file_and_line(tmp_path):
    from bbuvl.train.dataset import read_training_rows

    Image.new("RGB", (40, 30), (90, 120, 60)).save(tmp_path / "a.png")
    Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "b.png")
    ok = {"images": ["a.png"], "width": 40, "height": 30, "objects": [{"bbox_2d": [0, 0, 10, 10], "desc": "线缆"}]}
    for name, colour in (("c", (200, 40, 40)), ("d", (40, 200, 40)), ("e", (40, 40, 200))):  # a photo a line: one photo
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"{name}.png")  # twice is an error of its own (data check's)
    lines = [ok, {**ok, "images": ["c.png"], "objects": [{"bbox_2d": [0, 0, 100, 100], "desc": "线缆"}]},
             {**ok, "images": ["d.png"], "objects": [{"bbox_2d": [5, 5, 5, 9], "desc": "线缆"}]},
             {**ok, "images": ["e.png"], "objects": [ok["objects"][0], ok["objects"][0]]},
             {"teachers": [{**ok, "images": ["b.png"]}], "student": {**ok, "images": ["b.png"]}}]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    with pytest.raises(ValueError, match="lies outside"):
        read_training_rows(data)
    out = tmp_path / "findings.json"
    result = CliRunner().invoke(app, ["data", str(data), "--json", str(out)])
    # Before: doctor data found nothing in a file `bbuvl train` refuses at its start.
    assert result.exit_code == 1, result.output
    found = {(p["line"], p["message"].split(":")[0]) for p in json.loads(out.read_text(encoding="utf-8"))["problems"]
             if p["severity"] == "error" and p["file"] == str(data)}
    assert found == {(2, "objects[0]"), (3, "objects[0]"), (4, "objects[0] and objects[1]"), (5, "teachers[0]")}, found
    said = "".join(result.output.split())  # the console is 80 columns wide: a long path wraps inside itself
    assert "".join(f"{data}:2: objects[0]: box [0, 0, 100, 100] lies outside the 40x30 image".split()) in said, said


def test_a_finding_about_a_whole_file_names_no_line_zero(tmp_path):
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    result = CliRunner().invoke(app, ["data", str(tmp_path / "empty.jsonl")])
    said = "".join(result.output.split())  # the console is 80 columns wide: a long path wraps inside itself
    # Before: 'empty.jsonl:0: no photos', a line the file does not have.
    assert result.exit_code == 1 and f"error{tmp_path / 'empty.jsonl'}:nophotos" in said, said


def test_a_dataset_written_with_english_labels_has_no_label_findings(small_dataset, tmp_path):
    """`data convert --lang en` writes each label as the hierarchy's English gloss; `data check` accepts them, and
    doctor data did not: every one was 'not in the hierarchy'."""
    hierarchy = Hierarchy.load()
    folder = tmp_path / "en"
    shutil.copytree(small_dataset, folder)
    for name in ("train.jsonl", "val.jsonl", "teachers.jsonl"):
        records = read_records(folder / name)
        write_dataset(folder / name, [r.model_copy(update={"objects": [
            o.model_copy(update={"desc": hierarchy.english(o.desc)}) for o in r.objects]}) for r in records])
    english = {o.desc for r in read_records(folder / "train.jsonl") for o in r.objects}
    assert english and all(hierarchy.problem(label) for label in english)  # none is a hierarchy label as written
    report = diagnose_data(folder, load_config(_config_file(folder, tmp_path)))
    assert not [p for p in report.problems if "hierarchy" in p.message or "visual cue" in p.message], report.problems


def test_a_photo_cut_short_is_an_error_as_data_check_and_training_find_it(small_dataset, tmp_path):
    folder = tmp_path / "cut"
    shutil.copytree(small_dataset, folder)
    record = read_records(folder / "train.jsonl")[1]
    photo = folder / record.image
    photo.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])  # a copy stopped half-way: its header whole
    report = diagnose_data(folder, load_config(_config_file(folder, tmp_path)))
    # Before: its header alone was read, and it passed; training skipped it mid-run.
    found = _found(report, "train.jsonl", 2, record.image)
    assert [p.severity for p in found] == ["error"] and "truncated" in found[0].message, found


def test_without_the_runs_config_the_unchecked_labels_are_said(small_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default config's data/train.jsonl is not here
    report = diagnose_data(small_dataset / "train.jsonl", load_config(None))
    # Before: "0 in the prompt vocabulary" alone, the label check skipped without a word.
    [said] = [p for p in report.problems if p.file == "<prompt>"]
    assert said.severity == "warning" and said.message.startswith("the data's labels were not checked against the prompt")
    assert "data.train data/train.jsonl and data.val data/val.jsonl: no such file here" in said.message


@pytest.mark.parametrize("how", ["path", "content"])
def test_the_same_photo_twice_is_the_error_data_check_finds_and_the_json_holds_the_counts_printed(small_dataset, tmp_path,
                                                                                                 how):
    from bbuvl.data.check import check_dataset

    data = tmp_path / "dup.jsonl"
    lines = (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()
    first = read_records(small_dataset / "val.jsonl")[0]
    again = first.model_copy(update={"images": [str(small_dataset / first.image)]})
    if how == "content":  # the same bytes under another name
        shutil.copy(small_dataset / first.image, tmp_path / "copy.jpg")
        again = again.model_copy(update={"images": ["copy.jpg"]})
    lines = [json.dumps({**json.loads(line), "images": [str(small_dataset / json.loads(line)["images"][0])]})
             for line in lines]
    data.write_text("\n".join([*lines, again.model_dump_json(exclude_none=True)]) + "\n", encoding="utf-8")
    out = tmp_path / "findings.json"
    result = CliRunner().invoke(app, ["data", str(data), "--config", str(_config_file(small_dataset, tmp_path)),
                                      "--json", str(out)])
    # Before: "doctor data: 0 error(s)", exit 0, where `data check` (and training) refuse the file.
    assert result.exit_code == 1, result.output
    checked = [(p.line, p.message) for p in check_dataset(data) if p.severity == "error"]
    assert checked and [(p["line"], p["message"]) for p in json.loads(out.read_text(encoding="utf-8"))["problems"]
                        if p["severity"] == "error"] == checked
    assert "the same photo twice" in checked[0][1] and checked[0][0] == len(lines) + 1
    saved = json.loads(out.read_text(encoding="utf-8"))
    printed = result.output.strip().splitlines()[-1]
    assert printed == f"doctor data: {saved['errors']} error(s), {saved['warnings']} warning(s)", (printed, saved)
    assert saved["errors"] == sum(p["severity"] == "error" for p in saved["problems"])


def test_boxes_written_0_to_1000_on_large_photos_are_named_as_data_check_names_them(small_dataset, tmp_path):
    from bbuvl.data.check import check_dataset

    records = read_records(small_dataset / "train.jsonl")
    large = []
    for i, r in enumerate(records):  # each photo 1600 px wide, its boxes written 0-1000 of each side
        Image.open(small_dataset / r.image).resize((1600, 1200)).save(tmp_path / f"{i}.jpg")
        large.append(r.model_copy(update={"images": [f"{i}.jpg"], "width": 1600, "height": 1200, "objects": [
            o.model_copy(update={"bbox_2d": [round(v / s * 1000) for v, s in zip(o.bbox_2d, (r.width, r.height) * 2)]})
            for o in r.objects]}))
    data = tmp_path / "train.jsonl"
    write_dataset(data, large)
    report = diagnose_data(data, load_config(_config_file(small_dataset, tmp_path)))
    # Before: 0 errors, 0 warnings; every box fits in the photo's top-left corner.
    [said] = [p for p in report.problems if "0-1000 of each side" in p.message]
    assert said.severity == "warning" and said in check_dataset(data)


def test_a_photo_holding_more_objects_than_the_heads_queries_is_a_warning_naming_its_line(small_dataset, tmp_path):
    folder = tmp_path / "crowded"
    shutil.copytree(small_dataset, folder)
    train = read_records(folder / "train.jsonl")
    box = train[1].objects[0]
    train[1] = train[1].model_copy(update={"objects": [box.model_copy(update={"bbox_2d": [2 + 5 * i, 2, 6 + 5 * i, 9]})
                                                       for i in range(12)]})
    write_dataset(folder / "train.jsonl", train)
    cfg = load_config(_config_file(folder, tmp_path), ["detection.num_queries=10"])
    [found] = _found(diagnose_data(folder, cfg), "train.jsonl", 2, "12 objects", "detection.num_queries (10)")
    assert found.severity == "warning" and "raise detection.num_queries to at least 12" in found.message
    assert not _found(diagnose_data(folder, load_config(_config_file(folder, tmp_path), ["detection.enabled=false"])),
                      "train.jsonl", 2, "num_queries")
