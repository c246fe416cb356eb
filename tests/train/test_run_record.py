"""run.json: a resume continues only the run it records, the number of processes it ran on included."""

import pytest

from bbuvl.train.run_record import ResumeMismatch, check_resume, write_run_record


def test_a_resume_on_another_number_of_processes_is_refused_naming_both(run_config, tmp_path, monkeypatch):
    """A run started on 2 processes resumed on 1 without a word: each step then averaged half the samples, in
    another order, while a change of training.per_device_batch_size, the same change per process, is refused."""
    cfg = run_config()
    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    write_run_record(out, cfg)
    check_resume(cfg, out / "checkpoint-3")
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(ResumeMismatch, match=r"differs from .*run.json .*: processes \(WORLD_SIZE\) 2 \(now 1\)"):
        check_resume(cfg, out / "checkpoint-3")


def test_a_run_record_with_no_count_of_processes_resumes_and_a_bad_count_is_a_damaged_record(run_config, tmp_path):
    """A record written before processes were counted says nothing of them; a count that is no count is damage."""
    import json

    cfg = run_config()
    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)
    write_run_record(out, cfg)
    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    del record["processes"]
    (out / "run.json").write_text(json.dumps(record), encoding="utf-8")
    check_resume(cfg, out / "checkpoint-3")
    record["processes"] = "two"
    (out / "run.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ResumeMismatch, match=r"run.json: damaged run record \(ValueError: processes is 'two'"):
        check_resume(cfg, out / "checkpoint-3")


def _older_tree(tmp_path, edit):
    """The shipped label tree as an older or newer bbu-vl might ship it: `edit(tree)` changes the parsed file."""
    import json

    from bbuvl.data.labels import DEFAULT_HIERARCHY

    tree = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    edit(tree)
    path = tmp_path / "hierarchy_then.json"
    path.write_text(json.dumps(tree, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def _as_shipped_then(out, tree_file):
    """run.json as the bbu-vl that shipped `tree_file` wrote it for a run on its built-in tree (data.hierarchy null)."""
    import json

    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert record["inputs"]["data.hierarchy"]["path"] == str(tree_file.resolve())
    record["config"]["data"]["hierarchy"] = None
    record["inputs"]["data.hierarchy"]["builtin"] = True
    (out / "run.json").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")


def test_a_run_on_the_shipped_hierarchy_records_it_and_a_resume_on_an_upgrade_that_changed_it_names_the_labels(
        run_config, tmp_path):
    """A run with data.hierarchy null recorded nothing of the tree it trained on, so a resume after an upgrade that
    changed the shipped tree went on with other labels' levels, faults and prompt without a word."""
    import json

    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)
    write_run_record(out, run_config())
    entry = json.loads((out / "run.json").read_text(encoding="utf-8"))["inputs"]["data.hierarchy"]
    assert entry["builtin"] is True and entry["tree"] and entry["labels"]
    check_resume(run_config(), out / "checkpoint-3")  # the same bbu-vl: the same tree

    def drop_a_state(tree):
        states = tree["categories"]["螺丝连接点"]["attributes"]
        states[next(iter(states))]["states"]["old_state"] = {"gloss": "a state this release no longer has"}

    then = _older_tree(tmp_path, drop_a_state)
    write_run_record(out, run_config(f"data.hierarchy={then}"))
    _as_shipped_then(out, then)
    with pytest.raises(ResumeMismatch, match=r"data.hierarchy: the built-in label tree of this bbu-vl \(.*hierarchy.json'\) "
                                             r"is not the one the run started with \(bbu-vl upgraded since\?\): label "
                                             r"'螺丝连接点/BBU安装螺丝/old_state' no longer in it; .*pass the tree it started with as "
                                             r"data.hierarchy \(the hierarchy.json of the bbu-vl it started with\)"):
        check_resume(run_config(), out / "checkpoint-3")
    check_resume(run_config(f"data.hierarchy={then}"), out / "checkpoint-3")  # the tree it started with, as a file


def test_a_shipped_tree_reworded_or_reformatted_is_named_as_such_and_a_copy_of_it_as_a_file_resumes(run_config, tmp_path):
    """A gloss reworded changes the prompt, not the labels: said so; the shipped tree copied into a file of other
    formatting (data.hierarchy set to it on resume) is the same tree; a record from before the shipped tree was recorded
    resumes unchecked, as before."""
    import json

    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)
    then = _older_tree(tmp_path, lambda tree: tree["categories"]["螺丝连接点"].update(gloss="a bolt, as worded then"))
    write_run_record(out, run_config(f"data.hierarchy={then}"))
    _as_shipped_then(out, then)
    with pytest.raises(ResumeMismatch, match=r"the same labels and faults, other words \(glosses or cues"):
        check_resume(run_config(), out / "checkpoint-3")

    write_run_record(out, run_config())
    copy = _older_tree(tmp_path, lambda tree: tree.update(_doc="reworded documentation"))
    copy.write_text(json.dumps(json.loads(copy.read_text(encoding="utf-8")), ensure_ascii=False), encoding="utf-8")
    check_resume(run_config(f"data.hierarchy={copy}"), out / "checkpoint-3")

    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    del record["inputs"]["data.hierarchy"]
    (out / "run.json").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    check_resume(run_config(), out / "checkpoint-3")


def test_overwrite_is_offered_for_a_run_in_its_own_folder_and_not_beside_resume_from_another(run_config, tmp_path):
    # Before: resumed from another folder's checkpoint, the refusal offered --overwrite, which `train` then refused
    # beside --resume-from ("pass one of them"): a way out that led nowhere
    cfg = run_config()
    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)
    write_run_record(out, cfg)
    with pytest.raises(ResumeMismatch, match="or pass --overwrite to replace this run"):
        check_resume(run_config("training.lr.llm=0.01"), out / "checkpoint-3")
    with pytest.raises(ResumeMismatch) as e:
        check_resume(run_config("training.lr.llm=0.01", f"training.output_dir={tmp_path / 'new'}"), out / "checkpoint-3")
    assert "--overwrite" not in str(e.value) and "Start a new run without --resume-from" in str(e.value)


def test_a_run_started_in_a_folder_named_in_gbk_is_recorded_and_resumes(tmp_path, monkeypatch):
    """The record names its inputs by their full paths: from a folder named in GBK bytes (an archive from a Chinese
    Windows, unpacked here) they held lone surrogates, and the run failed writing run.json. They are kept as JSON
    escapes, which read back as the same paths."""
    import os
    from pathlib import Path

    from bbuvl.config import load_config
    from bbuvl.synthetic.dataset import synthesize

    work = tmp_path / os.fsdecode("数据".encode("gbk"))
    synthesize(work / "ds", 2, 0, seed=1, size=(160, 120), num_teachers=0)
    monkeypatch.chdir(work)
    cfg = load_config(None, ["data.train=ds/train.jsonl", "data.val=null", "data.teachers=null",
                             "training.output_dir=run"])
    (Path("run") / "checkpoint-1").mkdir(parents=True)
    write_run_record(Path("run"), cfg)
    assert "\\udcca\\udcfd\\udcbe\\udcdd" in (Path("run") / "run.json").read_text(encoding="utf-8")
    check_resume(cfg, Path("run") / "checkpoint-1")
