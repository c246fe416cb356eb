"""scripts/demo_out.sh: the demo empties and `make clean` removes its output folder only when the demo wrote it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "demo_out.sh"
MARK = ".bbuvl-demo"


def demo_out(command: str, folder: Path | str) -> subprocess.CompletedProcess:
    """Run the script as demo.sh and the Makefile do."""
    return subprocess.run(["bash", str(SCRIPT), command, str(folder)], capture_output=True, text=True, cwd=ROOT)


def earlier_demo(folder: Path, marked: bool = True) -> Path:
    """A folder as a demo leaves it: its stage folders with their files (and its mark, unless from before it)."""
    for stage in ("shapes", "bbu"):
        (folder / stage / "run").mkdir(parents=True)
        (folder / stage / "val_path").write_text(f"{folder}/{stage}/data/val.jsonl\n")
        (folder / stage / "run" / "history.json").write_text("[]")
    if marked:
        (folder / MARK).write_text("written by scripts/demo.sh\n")
    return folder


def everything(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fresh_creates_a_marked_folder_where_there_was_none(tmp_path: Path) -> None:
    out = tmp_path / "new" / "demo_out"
    r = demo_out("fresh", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [MARK]


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "from before the mark"])
def test_fresh_empties_an_earlier_demo(tmp_path: Path, marked: bool) -> None:
    out = earlier_demo(tmp_path / "demo_out", marked)
    r = demo_out("fresh", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [MARK]


def test_an_empty_folder_is_taken(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert demo_out("fresh", out).returncode == 0
    assert (out / MARK).is_file()


@pytest.mark.parametrize("command", ["fresh", "remove", "check"])
def test_a_folder_the_demo_did_not_write_is_refused_and_kept(tmp_path: Path, command: str) -> None:
    """A dataset, a home folder, a stage folder without the demo's file: named in the message, every file kept."""
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "a.jpg").write_bytes(b"\xff\xd8 photo")
    (home / ".bashrc").write_text("export X=1\n")
    (home / "bbu").mkdir()
    (home / "bbu" / "notes.txt").write_text("mine")
    before = everything(home)
    r = demo_out(command, home)
    assert r.returncode == 2
    assert f"error: {home} is not the demo's output folder" in r.stderr
    assert "which the demo did not write" in r.stderr and "DEMO=" in r.stderr
    assert everything(home) == before


def test_an_earlier_demo_with_a_file_of_the_users_added_is_still_the_demos_when_marked(tmp_path: Path) -> None:
    """The mark is what owns the folder: the demo wrote it and empties it as a whole, as before the mark existed."""
    out = earlier_demo(tmp_path / "demo_out")
    (out / "notes.txt").write_text("x")
    assert demo_out("check", out).returncode == 0


def test_without_the_mark_one_foreign_entry_makes_the_folder_not_the_demos(tmp_path: Path) -> None:
    out = earlier_demo(tmp_path / "demo_out", marked=False)
    (out / "notes.txt").write_text("mine")
    before = everything(out)
    r = demo_out("fresh", out)
    assert r.returncode == 2 and "'notes.txt'" in r.stderr
    assert everything(out) == before


@pytest.mark.parametrize("spelt", ["link", "link/"])
def test_a_link_is_refused_and_neither_it_nor_its_target_is_touched(tmp_path: Path, spelt: str) -> None:
    target = earlier_demo(tmp_path / "real_demo")
    link = tmp_path / "link"
    link.symlink_to(target)
    before = everything(target)
    for command in ("fresh", "remove"):
        r = demo_out(command, str(tmp_path / spelt))
        assert r.returncode == 2 and "symbolic link" in r.stderr, r.stderr
    assert link.is_symlink() and everything(target) == before


def test_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "demo_out"
    f.write_text("not a folder")
    r = demo_out("fresh", f)
    assert r.returncode == 2 and "a file, not a folder" in r.stderr
    assert f.read_text() == "not a folder"


def test_remove_takes_the_demos_folder_and_nothing_when_absent(tmp_path: Path) -> None:
    out = earlier_demo(tmp_path / "demo_out")
    assert demo_out("remove", out).returncode == 0
    assert not out.exists()
    assert demo_out("remove", out).returncode == 0


def test_an_empty_name_is_refused(tmp_path: Path) -> None:
    r = demo_out("fresh", "")
    assert r.returncode == 2 and "is empty" in r.stderr


def test_make_clean_keeps_a_folder_the_demo_did_not_write(tmp_path: Path) -> None:
    """`make clean DEMO=<a folder of the user's>` stops before removing anything, the venv included."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.jsonl").write_text("{}\n")
    # --no-print-directory: under `make test` the outer make's level would add "Entering directory" lines
    r = subprocess.run(["make", "-n", "--no-print-directory", "clean", f"DEMO={mine}"], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert "demo_out.sh remove" in lines[0] and str(mine) in lines[0], lines  # the check runs first
    r = subprocess.run(["bash", "-c", lines[0]], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and (mine / "data.jsonl").exists()


@pytest.mark.parametrize("script", ["demo.sh", "demo_rl.sh"])
def test_the_demos_refuse_a_folder_they_did_not_write_before_anything_else(tmp_path: Path, script: str) -> None:
    """`BBUVL_DEMO_OUT=<a folder of the user's> make demo` used to start with `rm -rf` on it."""
    mine = tmp_path / "mine"
    (mine / "shapes").mkdir(parents=True)
    (mine / "shapes" / "labels.json").write_text("{}")
    before = everything(mine)
    r = subprocess.run(["bash", str(ROOT / "scripts" / script)], capture_output=True, text=True, cwd=ROOT,
                       env={"PATH": "/usr/bin:/bin", "BBUVL_DEMO_OUT": str(mine)}, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"{mine} is not the demo's output folder" in r.stderr
    assert everything(mine) == before
