"""Class: no command writes onto one of its own inputs, or replaces a file it did not write (unless --overwrite).

The commands are taken from the CLI itself, so a new command fails here until the table below says how it
writes (or why it writes nothing). For each writing command:

- its output given as one of its inputs (directly, through a symlink, through a hard link) is refused with
  exit code 2, even with --overwrite, and the input is left byte for byte;
- its output where a file of the same name already lies that it did not write is refused (exit 2, naming
  --overwrite) and that file is kept; with --overwrite it is accepted (refused still where the command replaces
  the whole folder holding it), and a re-run replaces its own output, unless that output was edited since
  (ownership is by content: bbuvl/outputs.py).

Commands that need a trained model are checked up to the guard (it runs before any model loads); the
model folders here are stand-ins, so those runs stop at loading, never at the guard.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config, load_config
from bbuvl.data.coco_files import export_coco
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.fewshot.crops import write_crops
from bbuvl.synthetic.dataset import synthesize

FOREIGN = b"not written by this command\n"
GUARD_WORDS = ("refusing to replace", "is also the input", "holds the input", "inside the input", "holds another run",
               "not written by")


def leaf_commands(group: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every runnable command of the CLI, as `data split` (a group is what has sub-commands)."""
    found = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += leaf_commands(command, (*prefix, name))
        else:
            found.append(" ".join((*prefix, name)))
    return found


COMMANDS = leaf_commands(typer.main.get_command(app))

# Commands whose output folder is replaced whole (atomic.py's `atomic_folder`, outputs.py's `replacing`): --overwrite
# gives up only a folder they wrote, never one holding someone's files (`outputs.check_replaced_whole`).
# Their folder (or data convert's images/) is set aside whole: a file planted there is refused by its name in it
REPLACED_WHOLE = {"model tiny", "model merge-lora", "model export", "fewshot eval", "data convert"}

WRITES_NOTHING = {
    "config print": "prints the config to stdout",
    "config check": "only reports whether the config is valid",
    "config show": "another name of config print",
    "config validate": "another name of config check",
    "data check": "only reports problems",
    "doctor model": "only reports its checks",
    "serve": "answers HTTP requests; writes no file",
}


@dataclass
class Case:
    """How one command writes, in a world of tiny inputs `w`."""

    argv: Callable[[Path], list[str]]  # the command line with its output at the given path
    onto: Path | None  # an output that lands on an input (None: the command reads no input)
    input: Path | None  # that input
    out: Path  # a fresh output for the foreign-file check
    plant: str = ""  # a file the command writes, under `out` ("": `out` itself is that file)
    after_guard: list[str] | None = None  # None: runs to the end; else extra args that stop it just past the guard
    extra: list[str] = field(default_factory=list)


def world_cases(w: Path) -> dict[str, Case]:
    """The table: one entry per writing command."""
    ds, train, val, pred, ckpt = w / "ds", w / "ds" / "train.jsonl", w / "ds" / "val.jsonl", w / "pred.jsonl", w / "ckpt"
    fs = ["--support", str(w / "support"), "--backbone", "pixels:8", "--no-cache"]
    return {
        "data synth": Case(lambda o: ["data", "synth", str(o), "--n-train", "2", "--n-val", "1", "--size", "96x96",
                                      "--teachers", "1"], None, None, w / "synth", "val.jsonl"),
        "data convert": Case(lambda o: ["data", "convert", str(w / "vendor"), str(o), "--workers", "1", "--teachers", "1"],
                             w / "vendor", w / "vendor", w / "converted", "images/train_00000.jpg"),
        "data stats": Case(lambda o: ["data", "stats", str(train), "--json", str(o)], train, train, w / "stats.json"),
        "data teachers": Case(lambda o: ["data", "teachers", str(train), str(o), "--k", "1"], train, train,
                              w / "t" / "teachers.jsonl"),
        "data split": Case(lambda o: ["data", "split", str(train), str(o), "--teachers", "1"], ds, train, w / "split",
                           "val.jsonl"),
        "data tile": Case(lambda o: ["data", "tile", str(ds), str(o), "--teachers", "1"], ds, train, w / "tiled",
                          "val.jsonl"),
        # A COCO export named labels.json (as FiftyOne writes it) imported into its own folder.
        # (its photos lie in ds/images, outside the COCO folder: --allow-outside copies them)
        "data import-coco": Case(lambda o: ["data", "import-coco", str(w / "coco" / "labels.json"), str(w / "coco"), str(o),
                                            "--allow-outside"],
                                 w / "coco", w / "coco" / "labels.json", w / "imported", "val.jsonl"),
        "data export-coco": Case(lambda o: ["data", "export-coco", str(train), str(o)], train, train, w / "c.json"),
        "model tiny": Case(lambda o: ["model", "tiny", str(o)], None, None, w / "tiny", "config.json",
                           after_guard=["--family", "no-such-family"]),
        "model merge-lora": Case(lambda o: ["model", "merge-lora", str(ckpt), str(o)], ckpt, ckpt, w / "merged",
                                 "config.json", after_guard=[]),
        "model export": Case(lambda o: ["model", "export", str(ckpt), str(o)], ckpt, ckpt, w / "exported", "config.json",
                             after_guard=[]),
        "train": Case(lambda o: ["train", str(w / "run.yaml"), f"training.output_dir={o}", f"model.path={w / 'run' / 'final'}",
                                 f"data.train={train}", "data.val=null", "data.teachers=null"],
                      w / "run", w / "run" / "final", w / "run2", "history.json", after_guard=[]),
        "predict": Case(lambda o: ["predict", "-c", str(ckpt), "-i", str(val), "-o", str(o), "--mode", "head"], val, val,
                        w / "p.jsonl", after_guard=[]),
        "eval": Case(lambda o: ["eval", "--pred", str(pred), "--gt", str(val), "--out", str(o)], pred, pred, w / "m.json"),
        "choose-tiles": Case(lambda o: ["choose-tiles", "-c", str(ckpt), "--gt", str(val), "-o", str(o)], val, val,
                             w / "cands", "pred_scale_1.jsonl", after_guard=[]),
        "viz": Case(lambda o: ["viz", str(val), str(o), "--limit", "1"], ds, val, w / "viz",
                    "0000_val_00000.png"),  # synth names the first validation photo val_00000
        "fewshot tiny-backbone": Case(lambda o: ["fewshot", "tiny-backbone", "clip", str(o)], None, None, w / "bb",
                                      "config.json", after_guard=["--image-size", "1"]),
        "fewshot classify": Case(lambda o: ["fewshot", "classify", "--query", str(pred), "--out", str(o), *fs],
                                 pred, pred, w / "classified.jsonl"),
        "fewshot eval": Case(lambda o: ["fewshot", "eval", "--query", str(w / "support"), "--out", str(o), "--shots", "1",
                                        "--thresholds", "0.5", *fs], w / "support", w / "support", w / "fs", "summary.json"),
        "fewshot label": Case(lambda o: ["fewshot", "label", "--predictions", str(pred), "--out", str(o), *fs], pred, pred,
                              w / "labelled.jsonl"),
        "doctor data": Case(lambda o: ["doctor", "data", str(train), "--config", str(w / "run.yaml"), "--json", str(o)],
                            train, train, w / "d.json"),
        "doctor memory": Case(lambda o: ["doctor", "memory", str(ckpt), "--images", str(w / "photo.png"), "--out", str(o)],
                              w / "photo.png", w / "photo.png", w / "mem.png", after_guard=[]),
        "doctor features": Case(lambda o: ["doctor", "features", str(ckpt), "--data", str(train), "--out", str(o)],
                                train, train, w / "feat.png", after_guard=[]),
        "doctor attention": Case(lambda o: ["doctor", "attention", str(ckpt), str(w / "photo.png"), "--out", str(o)],
                                 w / "photo.png", w / "photo.png", w / "att.png", after_guard=[]),
        "doctor landscape": Case(lambda o: ["doctor", "landscape", str(ckpt), str(train), "--out", str(o)], train, train,
                                 w / "land.png", after_guard=[]),
        "doctor coordinates": Case(lambda o: ["doctor", "coordinates", str(ckpt), "--data", str(train), "--out", str(o)],
                                   train, train, w / "coords.json", after_guard=[]),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Tiny inputs of every kind, built once: a dataset, a platform export, predictions, crops, COCO, stand-in models."""
    w = tmp_path_factory.mktemp("world")
    synthesize(w / "ds", 3, 2, seed=1, size=(160, 120), num_teachers=1)
    synthesize(w / "vendor", 2, 1, seed=2, size=(160, 120), fmt="vendor")
    write_crops(w / "ds" / "train.jsonl", w / "support", per_class=2)
    export_coco(w / "ds" / "train.jsonl", w / "coco" / "labels.json")
    Image.new("RGB", (64, 48), (9, 90, 200)).save(w / "photo.png")
    (w / "run.yaml").write_text("model:\n  family: qwen2_5_vl\ntraining:\n  num_epochs: 1\n", encoding="utf-8")
    (w / "run" / "final").mkdir(parents=True)
    (w / "run" / "final" / "model.safetensors").write_bytes(b"weights of the model this run starts from")
    (w / "ckpt").mkdir()
    (w / "ckpt" / "bbuvl.yaml").write_text(dump_config(load_config(None)), encoding="utf-8")
    return w


@pytest.fixture
def w(built, tmp_path) -> Path:
    """A private copy of the inputs, with predictions (absolute photo paths) made from its validation set."""
    w = tmp_path / "w"
    shutil.copytree(built, w)
    val = w / "ds" / "val.jsonl"
    lines = [{"image": str(resolve_image(val, r.image)), "width": r.width, "height": r.height, "error": None,
              "objects": [{"bbox_2d": o.bbox_2d, "label": o.desc, "score": 0.9} for o in r.objects]}
             for r in read_records(val)]
    (w / "pred.jsonl").write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return w


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under the folder holding `path` (or `path` itself when a folder), with its bytes."""
    root = path if path.is_dir() else path.parent
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def invoke(argv: list[str]):
    return CliRunner().invoke(app, argv)


def test_every_command_says_how_it_writes():
    assert {"train", "data split", "doctor memory", "fewshot label"} <= set(COMMANDS)  # groups are walked
    cases = world_cases(Path("/w"))
    missing = [c for c in COMMANDS if c not in cases and c not in WRITES_NOTHING]
    assert not missing, f"add these commands to the table in {Path(__file__).name}: {missing}"
    assert not (set(cases) | set(WRITES_NOTHING)) - set(COMMANDS), "the table names commands the CLI no longer has"
    assert not set(cases) & set(WRITES_NOTHING)


@pytest.mark.parametrize("name", [c for c in COMMANDS if c in WRITES_NOTHING])
def test_a_command_that_writes_nothing_has_no_output_option(name):
    command = typer.main.get_command(app)
    for part in name.split():
        command = command.commands[part]  # type: ignore[attr-defined]
    names = {n for p in command.params for n in (p.name, *getattr(p, "opts", []))}
    assert not names & {"out", "--out", "-o", "json_out", "--json", "report", "--report"}, WRITES_NOTHING[name]


@pytest.mark.parametrize("name", [c for c in COMMANDS if c not in WRITES_NOTHING])
def test_a_writing_command_offers_overwrite(name):
    command = typer.main.get_command(app)
    for part in name.split():
        command = command.commands[part]  # type: ignore[attr-defined]
    assert any("--overwrite" in getattr(p, "opts", []) for p in command.params)


@pytest.mark.parametrize("via", ["path", "symlink", "hardlink"])
@pytest.mark.parametrize("name", [c for c in COMMANDS if c not in WRITES_NOTHING])
def test_an_output_that_is_an_input_is_refused_even_with_overwrite_and_the_input_kept(w, name, via):
    case = world_cases(w)[name]
    if case.onto is None:
        pytest.skip(f"{name} reads no input")
    onto = case.onto
    if via == "symlink":
        onto = w / f"link{case.onto.suffix}"
        onto.symlink_to(case.onto)
    elif via == "hardlink":
        if not case.onto.is_file():
            pytest.skip("a hard link names a file; this output is a folder")
        onto = w / f"hardlink{case.onto.suffix}"
        os.link(case.onto, onto)
    before = snapshot(case.input)
    r = invoke(case.argv(onto) + ["--overwrite"])
    assert r.exit_code == 2, r.output
    assert "input" in r.output and "Traceback" not in r.output, r.output
    assert snapshot(case.input) == before


@pytest.mark.parametrize("name", [c for c in COMMANDS if c not in WRITES_NOTHING])
def test_a_file_it_did_not_write_is_kept_unless_overwrite(w, name):
    case = world_cases(w)[name]
    planted = case.out / case.plant if case.plant else case.out
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(FOREIGN)
    r = invoke(case.argv(case.out))
    assert r.exit_code == 2 and "--overwrite" in r.output and "Traceback" not in r.output, r.output
    assert planted.read_bytes() == FOREIGN

    if name in REPLACED_WHOLE:  # --overwrite would delete the folder with the file: refused, naming it
        r = invoke(case.argv(case.out) + ["--overwrite"])
        said = " ".join(r.output.split())
        assert r.exit_code == 2 and f"holds {Path(case.plant).name}, which `bbuvl {name}` did not write" in said, r.output
        assert planted.read_bytes() == FOREIGN
        return
    if case.after_guard is not None:
        r = invoke(case.argv(case.out) + case.after_guard + ["--overwrite"])
        assert r.exit_code != 0 and not any(word in r.output for word in GUARD_WORDS), r.output
        return
    r = invoke(case.argv(case.out) + ["--overwrite"])
    assert r.exit_code == 0, r.output
    assert planted.read_bytes() != FOREIGN
    again = invoke(case.argv(case.out))  # its own output: a re-run replaces it without --overwrite
    assert again.exit_code == 0, again.output
    # Owned by content, not name: once edited by hand it is nobody's, and a re-run keeps the edit.
    edited = planted.read_bytes() + b"\n"
    why = "changed since" if planted.stat().st_size else "written by someone else"  # an empty output held nothing
    planted.write_bytes(edited)
    r = invoke(case.argv(case.out))
    assert r.exit_code == 2 and why in r.output and "--overwrite" in r.output, r.output
    assert planted.read_bytes() == edited
