"""An SFT run that weighs faults (`loss.fault_weight`) reads its training labels through bbu-vl's shipped token map: a
label spelt as a platform spells it (`windshield/not_installed`) is a fault only as the map maps it. The run's record
holds the map and the labels it weighed, and a resume under a map that weighs other labels is refused naming them;
a run that weighs no fault (a weight of 1, GRPO) records none, and a map changed where no label of the run is read
through it resumes."""

from __future__ import annotations

import json

import pytest

from bbuvl.data.schema import read_records, resolve_image, write_dataset
from bbuvl.train.run_record import RUN_RECORD, ResumeMismatch, check_resume, write_run_record

PLATFORM = "windshield/not_installed"  # the token map's spelling of 挡风板/未安装, a fault the hierarchy marks


@pytest.fixture()
def platform_data(small_dataset, tmp_path):
    """The small dataset's training photos with one object labelled as a platform spells it."""
    src = small_dataset / "train.jsonl"
    records = [r.model_copy(update={"image": str(resolve_image(src, r.image))}) for r in read_records(src)]
    first = records[0]
    records[0] = first.model_copy(update={"objects": [first.objects[0].model_copy(update={"desc": PLATFORM}),
                                                      *first.objects[1:]]})
    path = tmp_path / "platform_train.jsonl"
    write_dataset(path, records)
    return path


def _edit_record(out, edit):
    record = json.loads((out / RUN_RECORD).read_text(encoding="utf-8"))
    edit(record)
    (out / RUN_RECORD).write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")


def test_a_run_weighing_faults_through_the_shipped_token_map_is_refused_a_resume_under_a_map_that_weighs_others(
        run_config, platform_data, tmp_path):
    """An upgrade of bbu-vl that changed the token map weighed other objects as faults in the resumed steps, with
    nothing but 'bbuvl's own files changed' said: the steps before weighed `windshield/not_installed` as the fault it
    maps to, and those after would not, or the other way round."""
    cfg = run_config(f"data.train={platform_data}", "loss.fault_weight=3")
    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)
    write_run_record(out, cfg)
    recorded = json.loads((out / RUN_RECORD).read_text(encoding="utf-8"))["token_map"]
    assert recorded["file"].endswith("token_map.json") and PLATFORM in recorded["faults"]
    check_resume(cfg, out / "checkpoint-3")

    def without_the_mapping(record):  # as a bbu-vl whose map did not map `windshield` wrote it
        record["token_map"].update(sha256="0" * 64, faults=[f for f in record["token_map"]["faults"] if f != PLATFORM])

    _edit_record(out, without_the_mapping)
    with pytest.raises(ResumeMismatch, match=r"loss.fault_weight: bbu-vl's shipped token map \('.*token_map.json'\) is "
                                             r"not the one the run started with \(bbu-vl upgraded since\?\), and it maps "
                                             rf"the training labels otherwise: '{PLATFORM}' now weighed as a fault"):
        check_resume(cfg, out / "checkpoint-3")

    write_run_record(out, cfg)
    _edit_record(out, lambda record: record["token_map"].update(sha256="0" * 64))
    check_resume(cfg, out / "checkpoint-3")  # another map, the same labels weighed: the same run
    _edit_record(out, lambda record: record.pop("token_map"))
    check_resume(cfg, out / "checkpoint-3")  # a record from before the map was: unchecked, as before


def test_a_run_weighing_no_fault_records_no_token_map(run_config, platform_data, tmp_path):
    """The map changes what a run trains only through `loss.fault_weight`: with a weight of 1, or without the head it
    weighs, an upgrade that changed it is no other run."""
    for overrides in (("loss.fault_weight=1",), ("loss.fault_weight=3", "detection.enabled=false")):
        out = tmp_path / "_".join(overrides)
        write_run_record(out, run_config(f"data.train={platform_data}", f"training.output_dir={out}", *overrides))
        assert "token_map" not in json.loads((out / RUN_RECORD).read_text(encoding="utf-8"))
