"""A run's output folder: what --overwrite removes, and what it says it removed."""

import logging

from bbuvl.train.run_dir import check_output_dir, clear_previous_run


def prepare_output_dir(out, resume: bool, overwrite: bool) -> None:
    """What `train` does to its output folder before anything loads: refuse another run, or clear it."""
    clear_previous_run(out, check_output_dir(out, resume, overwrite))


def test_a_new_folder_is_prepared_without_a_word_about_removing_a_run(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        prepare_output_dir(tmp_path / "new", resume=False, overwrite=False)
        prepare_output_dir(tmp_path / "new", resume=False, overwrite=True)
    assert "--overwrite" not in caplog.text


def test_overwrite_removes_the_previous_run_and_names_what_it_removed(tmp_path, caplog):
    out = tmp_path / "run"
    (out / "checkpoint-5").mkdir(parents=True)
    (out / "run.json").write_text("{}", encoding="utf-8")
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        prepare_output_dir(out, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert "checkpoint-5, run.json" in caplog.text
