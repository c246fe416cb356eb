"""A GRPO reward's modules loaded at run time are recorded too: `importlib.import_module("pkg.rules")` and
`__import__` with a name in a string are followed as an `import` is, so an edit to such a module is named on resume;
a call whose module name is computed cannot be followed, and the run's record and its log say so, naming the call."""

from __future__ import annotations

import json
import logging

import pytest

from bbuvl.config import load_config
from bbuvl.train.run_record import RUN_RECORD, ResumeMismatch, check_resume, write_run_record
from tests.user_code import user_code

MODULES = ("rl7_rewards", "rl7_rules", "rl7_pkg", "rl7_pkg.deep", "rl7_pkg.near", "rl7_kinds_a")


@pytest.fixture()
def code(tmp_path, monkeypatch):
    """The user's code in its own folder on the import path; `write(name, text)` writes a module afresh."""
    (tmp_path / "code" / "rl7_pkg").mkdir(parents=True)
    with user_code(tmp_path / "code", monkeypatch, MODULES) as write:
        yield write


def _config(out, function: str):
    return load_config(None, ["training.method=grpo", f"training.output_dir={out}", "grpo.rewards.user=1",
                              f"grpo.rewards.user_function={function}"])


def test_modules_a_reward_loads_by_a_literal_name_are_recorded_and_an_edit_to_one_is_named(code, tmp_path):
    """The reward's rules came from `importlib.import_module("rl7_rules")`, a package's module from `__import__` with a
    fromlist and, inside the package, from a relative `import_module(".near", __package__)`: none was recorded, and a
    resume with any of them edited went on with rewards paid by other code."""
    code("rl7_rewards.py", """\
        import importlib


        def size(truth, answer):
            rules = importlib.import_module("rl7_rules")
            pkg = __import__("rl7_pkg", fromlist=["deep"])
            return rules.SCALE * pkg.deep.weight(len(answer))
        """)
    rules = code("rl7_rules.py", "SCALE = 0.1\n")
    code("rl7_pkg/__init__.py", "")
    code("rl7_pkg/deep.py", """\
        from importlib import import_module


        def weight(n):
            return n * import_module(".near", __package__).FACTOR
        """)
    near = code("rl7_pkg/near.py", "FACTOR = 1\n")
    out = tmp_path / "grpo"
    cfg = _config(out, "rl7_rewards:size")
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    entry = json.loads((out / RUN_RECORD).read_text("utf-8"))["code"]["grpo.rewards.user_function"]
    assert sorted(entry["modules"]) == ["rl7_pkg", "rl7_pkg.deep", "rl7_pkg.near", "rl7_rules"]
    assert "unchecked_imports" not in entry
    check_resume(cfg, out / "checkpoint-2")
    for module, path, edit in (("rl7_rules", rules, "SCALE = 0.2\n"), ("rl7_pkg.near", near, "FACTOR = 2\n")):
        before = path.read_text("utf-8")
        code(str(path.relative_to(tmp_path / "code")), edit)
        with pytest.raises(ResumeMismatch, match=rf"module {module} '.*', which it imports, changed since the run "
                                                 "started"):
            check_resume(cfg, out / "checkpoint-2")
        code(str(path.relative_to(tmp_path / "code")), before)
    check_resume(cfg, out / "checkpoint-2")


def test_a_module_name_computed_at_run_time_is_named_in_the_record_and_said_once_in_the_log(code, tmp_path, caplog):
    """`importlib.import_module(f"rl7_kinds_{kind}")` loads a module no record can name: the run said nothing, and an edit
    to it resumed unseen. The record names the call (module and line), and the log says it once a process."""
    code("rl7_rewards.py", """\
        import importlib


        def size(truth, answer, kind="a"):
            return importlib.import_module(f"rl7_kinds_{kind}").SCALE * len(answer)
        """)
    code("rl7_kinds_a.py", "SCALE = 0.1\n")
    out = tmp_path / "grpo"
    cfg = _config(out, "rl7_rewards:size")
    with caplog.at_level(logging.WARNING, logger="bbuvl.train.run_record"):
        write_run_record(out, cfg)
        (out / "checkpoint-2").mkdir()
        check_resume(cfg, out / "checkpoint-2")
    entry = json.loads((out / RUN_RECORD).read_text("utf-8"))["code"]["grpo.rewards.user_function"]
    call = "rl7_rewards line 5: importlib.import_module(f'rl7_kinds_{kind}')"
    assert entry["unchecked_imports"] == [call]
    said = [r.getMessage() for r in caplog.records if "computed at run time" in r.getMessage()]
    assert len(said) == 1 and call in said[0] and "rl7_rewards:size" in said[0], caplog.text


def test_a_file_the_reward_loads_as_code_by_a_literal_path_is_recorded_and_one_by_a_computed_path_is_named(code,
                                                                                                          tmp_path):
    """Rules kept as plug-in files (`runpy.run_path`, `importlib.util.spec_from_file_location`) are code as a module
    is: an edit to one the reward names by a literal path is named on resume; one it names by a variable is listed."""
    rules = tmp_path / "code" / "plug-ins" / "rl7 rules.py"  # a folder and a name no import could spell
    rules.parent.mkdir(parents=True)
    rules.write_text("SCALE = 0.1\n", encoding="utf-8")
    code("rl7_rewards.py", f"""\
        import importlib.util
        import runpy


        def size(truth, answer):
            return runpy.run_path({str(rules)!r})["SCALE"] * len(answer)


        def load(where):
            return importlib.util.spec_from_file_location("rl7_plugin", where)
        """)
    out = tmp_path / "grpo"
    cfg = _config(out, "rl7_rewards:size")
    write_run_record(out, cfg)
    (out / "checkpoint-2").mkdir()
    entry = json.loads((out / RUN_RECORD).read_text("utf-8"))["code"]["grpo.rewards.user_function"]
    assert entry["modules"] == {f"file {rules}": {"file": str(rules), "sha256": entry["modules"][f"file {rules}"]["sha256"]}}
    assert entry["unchecked_imports"] == ["rl7_rewards line 10: importlib.util.spec_from_file_location('rl7_plugin', where)"]
    check_resume(cfg, out / "checkpoint-2")
    rules.write_text("SCALE = 0.2\n", encoding="utf-8")
    with pytest.raises(ResumeMismatch, match=rf"rl7_rewards:size: '{rules}', which it loads as code, changed since the "
                                             "run started"):
        check_resume(cfg, out / "checkpoint-2")
