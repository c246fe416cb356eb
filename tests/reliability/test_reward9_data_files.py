"""The data files a GRPO reward reads are recorded by content: `open("rules.json")`, a path built from `__file__`, a
module constant naming one, `Path(...).read_text()`, and bbu-vl's shipped label files loaded through `TokenMap`,
`Hierarchy` or `Faults`. A resume with one changed is refused as a changed reward (or goes on with
--accept-reward-code); a read whose path is computed is listed with the unchecked imports and said once."""

from __future__ import annotations

import json
import logging
import textwrap

import pytest

from bbuvl.config import load_config
from bbuvl.train.run_record import (RUN_RECORD, ResumeMismatch, check_resume, record_accepted_code,
                                    write_run_record)
from tests.user_code import user_code

MODULES = ("rw9_rewards",)


@pytest.fixture()
def code(tmp_path, monkeypatch):
    """The user's code in its own folder on the import path; `write(name, text)` writes a module afresh."""
    with user_code(tmp_path / "code", monkeypatch, MODULES) as write:
        yield write


def _config(out, *overrides: str):
    return load_config(None, ["training.method=grpo", f"training.output_dir={out}",
                              "grpo.rewards.user=1", "grpo.rewards.user_function=rw9_rewards:size", *overrides])


def _entry(out):
    return json.loads((out / RUN_RECORD).read_text("utf-8"))["code"]["grpo.rewards.user_function"]


def test_files_a_reward_reads_by_a_literal_path_are_recorded_and_one_changed_is_refused_as_changed_code(
        code, tmp_path, monkeypatch):
    """Rules kept in a JSON file beside the reward, a constant naming one and a file read from the working folder were
    not recorded: a resume with the rules edited went on, the run's rewards paid by two rule sets. A file the reward
    writes (its own log) is no input."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "weights.txt").write_text("0.5\n", encoding="utf-8")
    rules = tmp_path / "code" / "rules.json"
    rules.write_text('{"scale": 0.1}', encoding="utf-8")
    (tmp_path / "code" / "kinds.json").write_text('["a"]', encoding="utf-8")
    code("rw9_rewards.py", """\
        import json
        from pathlib import Path

        KINDS = Path(__file__).parent / "kinds.json"


        def size(truth, answer):
            scale = json.load(open(Path(__file__).parent / "rules.json"))["scale"]
            weight = float(Path("weights.txt").read_text())
            with open("reward.log", "a") as log:
                log.write("scored\\n")
            return scale * weight * len(json.loads(KINDS.read_text())) * len(answer)
        """)
    out = tmp_path / "grpo"
    cfg = _config(out)
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    read = _entry(out)["data_files"]
    assert {k: v["file"] for k, v in read.items()} == {
        "rw9_rewards: KINDS": str(tmp_path / "code" / "kinds.json"),
        "rw9_rewards: Path('weights.txt')": str(work / "weights.txt"),
        "rw9_rewards: Path(__file__).parent / 'rules.json'": str(rules)}
    assert "unchecked_imports" not in _entry(out)
    check_resume(cfg, out / "checkpoint-2")

    rules.write_text('{"scale": 0.2}', encoding="utf-8")
    with pytest.raises(ResumeMismatch, match=r"rw9_rewards:size: the file rw9_rewards reads as "
                                             r"Path\(__file__\).parent / "
                                             rf"'rules.json', '{rules}', changed since the run started.*"
                                             r"pass --accept-reward-code"):
        check_resume(cfg, out / "checkpoint-2")
    accepted = check_resume(cfg, out / "checkpoint-2", accept_code=True)
    assert len(accepted) == 1 and str(rules) in accepted[0]
    record_accepted_code(out, cfg, 2, accepted)
    check_resume(cfg, out / "checkpoint-2")  # the next resume checks against the rules it went on with

    (work / "weights.txt").unlink()
    with pytest.raises(ResumeMismatch, match=rf"reads as Path\('weights.txt'\), '{work / 'weights.txt'}', cannot be "
                                             "read now"):
        check_resume(cfg, out / "checkpoint-2")
    record = json.loads((out / RUN_RECORD).read_text("utf-8"))
    del record["code"]["grpo.rewards.user_function"]["data_files"]
    (out / RUN_RECORD).write_text(json.dumps(record), encoding="utf-8")
    check_resume(cfg, out / "checkpoint-2")  # a record from before files read were: unchecked, as before


def test_a_relative_file_resumed_from_another_working_folder_is_compared_by_content_and_named_in_both(
        code, tmp_path, monkeypatch):
    """`open("rules.json")` reads the working folder's file: the same command run from a folder holding other rules
    is another reward, named with both files; one holding a copy of the same rules resumes."""
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, scale in ((first, "0.1"), (second, "0.3")):
        folder.mkdir()
        (folder / "rules.json").write_text(f'{{"scale": {scale}}}', encoding="utf-8")
    code("rw9_rewards.py", """\
        import json


        def size(truth, answer):
            with open("rules.json", encoding="utf-8") as f:
                return json.load(f)["scale"] * len(answer)
        """)
    out = tmp_path / "grpo"
    cfg = _config(out)
    monkeypatch.chdir(first)
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    monkeypatch.chdir(second)
    with pytest.raises(ResumeMismatch, match=rf"reads as 'rules.json', '{first / 'rules.json'}' \(now "
                                             rf"'{second / 'rules.json'}'\), changed since the run started"):
        check_resume(cfg, out / "checkpoint-2")
    (second / "rules.json").write_bytes((first / "rules.json").read_bytes())
    check_resume(cfg, out / "checkpoint-2")


def test_a_file_read_by_a_computed_path_is_listed_with_the_unchecked_imports_and_said_once(code, tmp_path, caplog):
    """`open(f"rules_{kind}.json")` names a file no record can: the run said nothing, and an edit to it resumed unseen.
    The record lists the call with its module and line, and the log says it once a process."""
    code("rw9_rewards.py", """\
        import json


        def size(truth, answer, kind="a"):
            return json.load(open(f"rules_{kind}.json"))["scale"] * len(answer)
        """)
    out = tmp_path / "grpo"
    cfg = _config(out)
    with caplog.at_level(logging.WARNING, logger="bbuvl.train.run_record"):
        write_run_record(out, cfg)
        (out / "checkpoint-2").mkdir()
        check_resume(cfg, out / "checkpoint-2")
    call = "rw9_rewards line 5: open(f'rules_{kind}.json')"
    assert _entry(out)["unchecked_imports"] == [call] and _entry(out)["data_files"] == {}
    said = [r.getMessage() for r in caplog.records if "computed at run time" in r.getMessage()]
    assert len(said) == 1 and call in said[0] and "the file or environment variable it reads" in said[0], caplog.text


def test_the_shipped_token_map_a_reward_loads_is_recorded_and_an_upgrade_that_changed_it_is_named(code, tmp_path):
    """A reward paying for faults found judges labels through `Faults.load()`: the shipped token map (and hierarchy)
    decide which answered labels are faults, and an upgrade of bbu-vl that changed them resumed with other rewards
    in silence. The token map is recorded by its tree; the hierarchy only when the run's own record does not hold it
    (data.hierarchy set to a file of the user's)."""
    code("rw9_rewards.py", """\
        from bbuvl.data.faults import Faults

        FAULTS = Faults.load()


        def size(truth, answer):
            return sum(FAULTS.is_fault(a.label) for a in answer) / max(1, len(answer))
        """)
    out = tmp_path / "grpo"
    cfg = _config(out)
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    read = _entry(out)["data_files"]
    assert list(read) == ["bbuvl token_map.json"] and read["bbuvl token_map.json"]["file"].endswith("token_map.json")
    check_resume(cfg, out / "checkpoint-2")

    record = json.loads((out / RUN_RECORD).read_text("utf-8"))
    record["code"]["grpo.rewards.user_function"]["data_files"]["bbuvl token_map.json"]["sha256"] = "0" * 64
    (out / RUN_RECORD).write_text(json.dumps(record), encoding="utf-8")  # as the bbu-vl it started under wrote it
    with pytest.raises(ResumeMismatch, match=r"rw9_rewards:size: bbu-vl's shipped token_map.json, '.*token_map.json', "
                                             r"changed since the run started \(bbu-vl upgraded since\?\)"):
        check_resume(cfg, out / "checkpoint-2")

    from bbuvl.data.labels import DEFAULT_HIERARCHY

    own = tmp_path / "hierarchy.json"
    own.write_bytes(DEFAULT_HIERARCHY.read_bytes())
    write_run_record(out, _config(out, f"data.hierarchy={own}"))
    assert sorted(_entry(out)["data_files"]) == ["bbuvl hierarchy.json", "bbuvl token_map.json"]


def test_a_reward_reading_its_own_source_resumes_after_a_comment_is_added(code, tmp_path):
    """A reward that reads its own file (`open(__file__)`, to log its version) had that file recorded as data, by its
    bytes: a comment added, which the code's record ignores, refused the resume. A descriptor (`open(0)`) names no
    file and is not listed as unchecked."""
    source = """\
        from pathlib import Path


        def size(truth, answer):
            version = len(open(__file__).read()) + len(Path(__file__).read_text())
            return 0.0 * version + len(answer) if answer is not None else open(0).read()
        """
    path = code("rw9_rewards.py", source)
    out = tmp_path / "grpo"
    cfg = _config(out)
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    assert _entry(out)["data_files"] == {} and "unchecked_imports" not in _entry(out)
    code("rw9_rewards.py", "# a comment\n" + textwrap.dedent(source))
    assert path.read_text(encoding="utf-8").startswith("# a comment")
    check_resume(cfg, out / "checkpoint-2")


def test_a_file_the_reward_writes_as_well_as_reads_is_listed_as_unchecked_not_compared(code, tmp_path, monkeypatch):
    """A reward keeping its own cache (`open("cache.json")` read, then written back) changes that file as the run goes:
    recorded as data, every resume of the run was refused for a change the run itself made."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache.json").write_text("{}", encoding="utf-8")
    code("rw9_rewards.py", """\
        import json
        from pathlib import Path

        CACHE = Path("cache.json")


        def size(truth, answer):
            seen = json.loads(CACHE.read_text())
            seen[str(len(answer))] = seen.get(str(len(answer)), 0) + 1
            CACHE.write_text(json.dumps(seen))
            return float(len(answer))
        """)
    out = tmp_path / "grpo"
    cfg = _config(out)
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    assert _entry(out)["data_files"] == {}
    assert _entry(out)["unchecked_imports"] == ["rw9_rewards line 8: CACHE.read_text() (a file it writes too)"]
    (tmp_path / "cache.json").write_text('{"1": 4}', encoding="utf-8")  # as the run's steps left it
    check_resume(cfg, out / "checkpoint-2")


@pytest.mark.parametrize("call", ['open("rules\\x00.json").read()', 'runpy.run_path("plug\\x00.py")'])
def test_a_path_no_file_can_have_does_not_stop_the_run_from_being_recorded(code, tmp_path, call):
    """A literal path holding a NUL (a typo in an escape), read as data or loaded as code, made recording the reward's
    code raise 'embedded null byte', and the run stopped at its start with a traceback; the call fails only when it
    runs."""
    code("rw9_rewards.py", f"""\
        import runpy


        def size(truth, answer):
            if not answer:
                return {call}
            return float(len(answer))
        """)
    out = tmp_path / "grpo"
    cfg = _config(out)
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    assert _entry(out)["data_files"] == {} and _entry(out)["modules"] == {} and "unchecked_imports" not in _entry(out)
    check_resume(cfg, out / "checkpoint-2")


def test_a_picture_or_array_the_reward_loads_through_a_library_is_recorded(code, tmp_path):
    """A reward comparing answers with a template photo (`Image.open`) or a table of weights (`np.load`) read them
    through a library's reader: neither was recorded, and a resume with the template replaced went on."""
    from PIL import Image

    template = tmp_path / "code" / "template.png"
    Image.new("RGB", (4, 4), "white").save(template)
    import numpy as np

    np.save(tmp_path / "code" / "weights.npy", np.ones(3))
    code("rw9_rewards.py", """\
        from pathlib import Path

        import numpy as np
        from PIL import Image

        HERE = Path(__file__).parent


        def size(truth, answer):
            width = Image.open(HERE / "template.png").width
            return float(np.load(HERE / "weights.npy").sum()) * width * len(answer)
        """)
    out = tmp_path / "grpo"
    cfg = _config(out)
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    assert sorted(_entry(out)["data_files"]) == ["rw9_rewards: HERE / 'template.png'", "rw9_rewards: HERE / 'weights.npy'"]
    Image.new("RGB", (4, 4), "black").save(template)
    with pytest.raises(ResumeMismatch, match=rf"reads as HERE / 'template.png', '{template}', changed since the run"):
        check_resume(cfg, out / "checkpoint-2")
