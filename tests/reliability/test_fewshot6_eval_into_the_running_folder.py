"""`fewshot eval --out .`: eval writes its folder anew, setting the earlier one aside first, so the folder the command
ran in was set aside, the results written into it through '.', 'wrote ./' said, and the folder deleted with them. An
--out that is the running folder, or holds it, is refused before anything is touched."""

from __future__ import annotations

from tests.fewshot.test_hostile_input import invoke, photos


def test_eval_into_the_folder_it_runs_in_or_one_above_is_refused_and_the_folder_kept(tmp_path, monkeypatch):
    support = photos(tmp_path / "support", {"a": 2, "b": 2})
    here = tmp_path / "results" / "run"
    here.mkdir(parents=True)
    (here / "notes.txt").write_text("mine\n", encoding="utf-8")
    monkeypatch.chdir(here)
    for out in (".", ".."):
        code, said = invoke("eval", "--support", support, "--query", support, "--backbone", "pixels:8", "--no-cache",
                            "--shots", "all", "--thresholds", "0.5", "--out", out, "--overwrite")
        assert code == 2 and f"--out {out}: is the folder this command runs in" in said, said
        assert (here / "notes.txt").read_text(encoding="utf-8") == "mine\n"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["run"]
