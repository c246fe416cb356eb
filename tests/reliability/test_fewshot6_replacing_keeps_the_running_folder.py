"""outputs.replacing sets an output folder aside before the command writes it anew: set aside, the folder the command
ran in took with it what the command then wrote through '.', and was deleted with it (`fewshot eval --out .` said
'wrote ./' and left nothing). The running folder, or one holding it, is refused before anything moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from bbuvl.outputs import replacing


def test_replacing_the_folder_a_command_runs_in_or_one_above_is_refused_and_the_folder_kept(tmp_path, monkeypatch):
    here = tmp_path / "results" / "run"
    here.mkdir(parents=True)
    (here / "notes.txt").write_text("mine\n", encoding="utf-8")
    monkeypatch.chdir(here)
    for out in (".", ".."):
        with pytest.raises(OSError, match="is the folder this command runs in"):
            with replacing([Path(out)]):
                Path("metrics.csv").write_text("a,b\n", encoding="utf-8")
        assert sorted(p.name for p in here.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["run"]
