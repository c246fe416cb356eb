"""bbuvl/outputs.py: outputs are never inputs (nor inside one), one process writes each, and only their own writer
(by content, or --overwrite) replaces them."""

from __future__ import annotations

import errno
import multiprocessing
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.reliability.faults import held_elsewhere, small_tmpfs, unremovable

from bbuvl.atomic import write_text_atomic
from bbuvl.infer.output import OutputError, discard_output, manifest_path
from bbuvl.outputs import (LEDGER, OutputConflict, check_not_inputs, claim_outputs, lock_path, refuse_strangers,
                           replacing, same_path, writer_at, writer_of)
from bbuvl.synthetic.dataset import written_by_synth


def test_a_hard_link_and_a_symlink_name_the_same_file(tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text("x", encoding="utf-8")
    os.link(a, tmp_path / "hard.jsonl")
    (tmp_path / "soft.jsonl").symlink_to(a)
    assert same_path(a, tmp_path / "hard.jsonl") and same_path(a, tmp_path / "soft.jsonl")
    assert not same_path(a, tmp_path / "other.jsonl")


def test_a_folder_output_holding_an_input_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "val.jsonl").write_text("x", encoding="utf-8")
    with pytest.raises(OutputConflict, match="holds the input --gt"):
        check_not_inputs({"--gt": tmp_path / "data" / "val.jsonl"}, folders=[tmp_path / "data"])


def test_a_refused_claim_writes_no_ledger_and_holds_nothing(tmp_path):
    (tmp_path / "m.json").write_text("theirs", encoding="utf-8")
    with pytest.raises(OutputConflict, match="written by someone else.*--overwrite"):
        claim_outputs("eval", {}, [tmp_path / "m.json", tmp_path / "m.coco.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no ledger, no lock file
    claim_outputs("eval", {}, [tmp_path / "m.json"], overwrite=True).finish(succeeded=True)  # nothing left locked


def test_files_inside_a_folder_a_command_wrote_are_that_commands_while_unchanged(tmp_path):
    with claim_outputs("viz", {}, folders=[tmp_path / "pictures"]):
        (tmp_path / "pictures" / "deep").mkdir(parents=True)
        (tmp_path / "pictures" / "deep" / "0000_a.png").write_bytes(b"png")
    assert writer_of(tmp_path / "pictures" / "deep" / "0000_a.png") == "viz"
    claim_outputs("viz", {}, folders=[tmp_path / "pictures"]).finish(True)  # its own: no --overwrite needed
    with pytest.raises(OutputConflict, match="written by `bbuvl viz`"):
        claim_outputs("eval", {}, [tmp_path / "pictures" / "deep" / "0000_a.png"])
    (tmp_path / "pictures" / "mine.txt").write_text("a note of the user's", encoding="utf-8")
    assert writer_of(tmp_path / "pictures" / "deep" / "0000_a.png") is None  # the folder is no longer what viz wrote
    with pytest.raises(OutputConflict, match="changed since `bbuvl viz` wrote it"):
        claim_outputs("viz", {}, folders=[tmp_path / "pictures"])


def test_a_hand_edited_output_is_no_longer_the_commands(tmp_path):
    with claim_outputs("data split", {}, [tmp_path / "val.jsonl"]):
        (tmp_path / "val.jsonl").write_text('{"image": "a.jpg"}\n', encoding="utf-8")
    assert writer_of(tmp_path / "val.jsonl") == "data split"
    (tmp_path / "val.jsonl").write_text('{"image": "a.jpg", "fixed": "by hand"}\n', encoding="utf-8")
    assert writer_of(tmp_path / "val.jsonl") is None
    with pytest.raises(OutputConflict, match="changed since `bbuvl data split` wrote it.*--overwrite"):
        claim_outputs("data split", {}, [tmp_path / "val.jsonl"])


def test_a_file_put_since_into_a_folder_a_command_listed_is_named_as_not_its_own_not_as_a_change(tmp_path):
    out = tmp_path / "ds" / "images"

    def refusal() -> str:
        with pytest.raises(OutputConflict) as refused:
            claim_outputs("data synth", {}, folders=[out], own={out: written_by_synth})
        return str(refused.value)

    with claim_outputs("data synth", {}, folders=[out], own={out: written_by_synth}):
        out.mkdir(parents=True)
        (out / "train_00000.jpg").write_bytes(b"a photo")
        (out / "train_00001.jpg").write_bytes(b"another photo")
    for name, what, advice in ((".DS_Store", "(a file manager's record of the folder), put there since",
                                "delete it or pass --overwrite"),
                               ("notes.txt", ", which `bbuvl data synth` did not write",
                                "--overwrite refuses to delete it")):
        (out / name).write_bytes(b"not the command's")
        said = refusal()
        # Before: "exists and was not written by `bbuvl data synth` (changed since `bbuvl data synth` wrote it)"
        assert f"images: holds {name}{'' if what.startswith(',') else ' '}{what}" in said and advice in said, said
        assert "changed since" not in said and (out / name).read_bytes() == b"not the command's"
        (out / name).unlink()
    (out / "train_00000.jpg").write_bytes(b"a photo retouched")
    assert "changed since `bbuvl data synth` wrote it (a file it wrote there was edited)" in refusal()
    (out / "train_00000.jpg").unlink()
    assert "changed since `bbuvl data synth` wrote it (train_00000.jpg, which it wrote there, is gone)" in refusal()


# A file put since into a folder a command listed, and what a plain run's refusal says --overwrite does with it: each
# kind once (a killed write's temporary of the command's own photo, of a file it did not write, a note, OS metadata)
ADDED_SINCE = [(".val_00000.jpg.1.abcd1234.tmp.jpg", True, "a killed write's temporary of its own val_00000.jpg"),
               (".notes.txt.1.abcd1234.tmp.txt", False, "which `bbuvl data synth` did not write"),
               ("notes.txt", False, "which `bbuvl data synth` did not write"),
               (".DS_Store", True, "a file manager's record of the folder")]


@pytest.mark.parametrize("added, removed, said_as", ADDED_SINCE)
def test_a_plain_runs_refusal_says_what_overwrite_then_does_with_a_file_added_since(tmp_path, added, removed, said_as):
    # A killed write's temporary of synth's own photo was said to be one it "did not write" and "--overwrite refuses
    # to delete it"; --overwrite then let the claim through and deleted it
    out = tmp_path / "ds" / "images"
    with claim_outputs("data synth", {}, folders=[out], own={out: written_by_synth}):
        out.mkdir(parents=True)
        (out / "val_00000.jpg").write_bytes(b"a photo")
    (out / added).write_bytes(b"half")
    with pytest.raises(OutputConflict) as refused:
        claim_outputs("data synth", {}, folders=[out], own={out: written_by_synth})
    said = str(refused.value)
    assert f"images: holds {added}" in said and said_as in said, said
    assert ("pass --overwrite (which removes it)" in said) == removed, said
    assert ("--overwrite refuses to delete it" in said) != removed, said
    if not removed:
        with pytest.raises(OutputConflict, match="did not write"):
            claim_outputs("data synth", {}, folders=[out], overwrite=True, own={out: written_by_synth})
        assert (out / added).read_bytes() == b"half"
        return
    with claim_outputs("data synth", {}, folders=[out], overwrite=True, own={out: written_by_synth}), replacing([out]):
        out.mkdir()
        (out / "val_00000.jpg").write_bytes(b"a photo")
    assert sorted(p.name for p in out.iterdir()) == ["val_00000.jpg"]


def test_a_plain_runs_refusal_of_a_stranger_beside_its_own_temporary_says_overwrite_removes_that_once_it_is_out(tmp_path):
    out = tmp_path / "images"
    with claim_outputs("data synth", {}, folders=[out], own={out: written_by_synth}):
        out.mkdir()
        (out / "val_00000.jpg").write_bytes(b"a photo")
    (out / ".val_00000.jpg.1.abcd1234.tmp.jpg").write_bytes(b"half")
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputConflict, match=r"holds notes.txt, which .* \(--overwrite refuses to delete it\), or choose "
                                             r"another output. Once it is out, --overwrite removes "
                                             r"\.val_00000\.jpg\.1\.abcd1234\.tmp\.jpg \(a killed write's temporary"):
        claim_outputs("data synth", {}, folders=[out], own={out: written_by_synth})
    with pytest.raises(OutputConflict, match="holds notes.txt"):
        claim_outputs("data synth", {}, folders=[out], overwrite=True, own={out: written_by_synth})
    (out / "notes.txt").unlink()
    claim_outputs("data synth", {}, folders=[out], overwrite=True, own={out: written_by_synth}).finish(False)


def test_a_plain_runs_refusal_of_a_model_folder_says_overwrite_takes_a_choice_made_for_its_weights(tmp_path):
    model = tmp_path / "model"
    with claim_outputs("model tiny", {}, folders=[model], listed=[model]):
        model.mkdir()
        (model / "model.safetensors").write_bytes(b"w")
    with claim_outputs("choose-tiles", {}, [model / "tile_scale.json"]):
        (model / "tile_scale.json").write_text("{}", encoding="utf-8")
    with pytest.raises(OutputConflict) as refused:
        claim_outputs("model tiny", {}, folders=[model], listed=[model])
    assert ("holds tile_scale.json (chosen by `bbuvl choose-tiles` for the weights there, which it goes with)"
            in str(refused.value) and "pass --overwrite (which removes it)" in str(refused.value)), refused.value
    claim_outputs("model tiny", {}, folders=[model], overwrite=True, listed=[model]).finish(False)  # as it said


def test_a_failed_run_claims_only_what_it_wrote(tmp_path):
    with pytest.raises(RuntimeError):
        with claim_outputs("eval", {}, [tmp_path / "m.json", tmp_path / "report.html"]):
            (tmp_path / "report.html").write_text("<html>", encoding="utf-8")
            raise RuntimeError("failed before m.json")
    assert writer_of(tmp_path / "report.html") == "eval"  # its bytes: a re-run may redo it
    assert writer_of(tmp_path / "m.json") is None
    (tmp_path / "m.json").write_text('{"the user": "put this here"}', encoding="utf-8")
    with pytest.raises(OutputConflict, match="written by someone else"):
        claim_outputs("eval", {}, [tmp_path / "m.json"])


def test_a_damaged_ledger_makes_nothing_ours(tmp_path):
    with claim_outputs("eval", {}, [tmp_path / "m.json"]):
        (tmp_path / "m.json").write_text("{}", encoding="utf-8")
    (tmp_path / LEDGER).write_text("{not json", encoding="utf-8")
    with pytest.raises(OutputConflict):
        claim_outputs("eval", {}, [tmp_path / "m.json"])
    claim_outputs("eval", {}, [tmp_path / "m.json"], overwrite=True).finish(succeeded=True)
    assert writer_of(tmp_path / "m.json") == "eval"


def test_a_ledger_of_names_only_proves_nothing(tmp_path):
    (tmp_path / "m.json").write_text("{}", encoding="utf-8")
    (tmp_path / LEDGER).write_text('{"written_by": {"m.json": "eval"}}', encoding="utf-8")  # as earlier versions wrote
    assert writer_of(tmp_path / "m.json") is None


def test_nothing_is_written_inside_an_input_folder_even_where_nothing_lies(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}", encoding="utf-8")
    for out in (ckpt / "config.json", ckpt / "plot.png", ckpt / "deeper" / "plot.png"):
        with pytest.raises(OutputConflict, match="input CHECKPOINT"):
            claim_outputs("doctor memory", {"CHECKPOINT": ckpt}, [out], overwrite=True)
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json"]


def test_a_lock_file_that_is_a_link_or_a_fifo_is_refused_and_what_it_names_is_left_as_it_was(tmp_path):
    # A symbolic or hard link under the lock's name had the file it names truncated and overwritten with the lock line
    # (a model's config.json), and a FIFO there hung every command looking for the output's writer.
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (model / name).write_text('{"model_type": "qwen2_5_vl"}\n', encoding="utf-8")
    (tmp_path / ".p.jsonl.lock").symlink_to(model / "config.json")
    os.link(model / "tokenizer.json", tmp_path / ".m.json.lock")
    (tmp_path / ".dangling.json.lock").symlink_to(model / "gone.json")
    os.mkfifo(tmp_path / ".f.json.lock")
    for out, what in (("p.jsonl", "a symbolic link"), ("m.json", "a hard link (2 names for one file)"),
                      ("dangling.json", "a symbolic link"), ("f.json", "no regular file")):
        with pytest.raises(OutputConflict, match=re.escape(f"its lock file {tmp_path / f'.{out}.lock'} is {what}")):
            claim_outputs("eval", {}, [tmp_path / out], overwrite=True)
        assert writer_at(tmp_path / out) is None or out == "m.json"  # no writer holds it, and looking never hangs
    for name in ("config.json", "tokenizer.json"):
        assert (model / name).read_text(encoding="utf-8") == '{"model_type": "qwen2_5_vl"}\n'
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "tokenizer.json"]
    assert not (tmp_path / "m.json").exists() and not (tmp_path / LEDGER).exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_second_writer_of_one_output_is_refused_naming_the_first(tmp_path):
    first = claim_outputs("eval", {}, [tmp_path / "m.json"])
    with pytest.raises(OutputConflict, match=f"another `bbuvl eval` \\(pid {os.getpid()}\\) is writing it"):
        _claim_in_child(tmp_path / "m.json")
    first.finish(succeeded=True)
    _claim_in_child(tmp_path / "m.json")  # free again


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_writer_into_a_folder_another_writes_is_refused_and_so_is_the_reverse(tmp_path):
    with claim_outputs("data synth", {}, folders=[tmp_path / "ds" / "images"]):
        with pytest.raises(OutputConflict, match="ds/images: another `bbuvl data synth`.*is inside it"):
            _claim_in_child(tmp_path / "ds" / "images" / "x.json")
    with claim_outputs("eval", {}, [tmp_path / "ds" / "m.json"]):
        with pytest.raises(OutputConflict, match="m.json: another `bbuvl eval`"):
            _claim_in_child(tmp_path / "ds", folder=True)
    with claim_outputs("data synth", {}, folders=[tmp_path / "runs" / "a"]):
        with pytest.raises(OutputConflict, match=r"runs/a: another `bbuvl data synth`.*and \S*runs holds it"):
            _claim_in_child(tmp_path / "runs", folder=True)


def _claim_in_child(out: Path, folder: bool = False) -> None:
    """Claim `out` from another process (a lock is per process: this one may take its own twice)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_claim_and_finish, str(out), folder).result()


def _claim_and_finish(out: str, folder: bool) -> None:
    claim_outputs("other", {}, [] if folder else [Path(out)], [Path(out)] if folder else []).finish(succeeded=False)


def test_predict_starting_over_removes_the_file_and_its_manifest_unless_another_run_holds_it(tmp_path):
    out = tmp_path / "pred.jsonl"
    out.write_text('{"image": "a.jpg"}\n', encoding="utf-8")
    manifest_path(out).write_text("{}", encoding="utf-8")
    with held_elsewhere(out, "predict"):
        with pytest.raises(OutputError, match="another `bbuvl predict` \\(pid 4242\\) is writing it"):
            discard_output(out)
    assert out.exists()
    discard_output(out)
    assert not out.exists() and not manifest_path(out).exists()


def _claim_many(folder: str, command: str, count: int) -> None:
    for i in range(count):
        out = Path(folder) / f"{command}_{i}.jsonl"
        with claim_outputs(command, {}, files=[out]):
            out.write_text(command, encoding="utf-8")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_commands_writing_into_one_folder_at_once_keep_every_ledger_entry(tmp_path):
    # Two predictions side by side in one folder (as `make demo` runs them): neither may drop the other's entries.
    commands = [f"predict{k}" for k in range(4)]
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in [pool.submit(_claim_many, str(tmp_path), c, 25) for c in commands]:
            done.result()
    for command in commands:
        for i in range(25):
            assert writer_of(tmp_path / f"{command}_{i}.jsonl") == command


def _claim_write_and_die(folder: str, command: str) -> None:
    claim_outputs(command, {}, folders=[Path(folder)])
    Path(folder).mkdir(parents=True)
    (Path(folder) / "half.jpg").write_bytes(b"half of what a run writes")
    os.kill(os.getpid(), signal.SIGKILL)  # no finish, no ledger entry: what a `kill -9` or the OOM killer leaves


def test_a_killed_runs_half_written_output_is_the_same_commands_to_redo_and_nobody_elses(tmp_path):
    out = tmp_path / "ds" / "images"
    child = multiprocessing.get_context("spawn").Process(target=_claim_write_and_die, args=(str(out), "data convert"))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL and (out / "half.jpg").exists() and writer_of(out) is None
    with pytest.raises(OutputConflict, match="not written by `bbuvl data synth`"):
        claim_outputs("data synth", {}, folders=[out])
    # A run of the same command that fails before it writes there (another check refused it) leaves that so, and
    # so does one refused because another writer holds the folder above
    claim_outputs("data convert", {}, folders=[out]).finish(succeeded=False)
    with held_elsewhere(out.parent, "data synth"):
        with pytest.raises(OutputConflict, match="another `bbuvl data synth` \\(pid 4242\\)"):
            claim_outputs("data convert", {}, folders=[out])
    with claim_outputs("data convert", {}, folders=[out]):  # the same command redoes it, no --overwrite needed
        (out / "half.jpg").write_bytes(b"whole")
    assert writer_of(out) == "data convert"


def test_an_output_nobody_recorded_and_no_killed_run_left_is_still_refused(tmp_path):
    out = tmp_path / "images"
    out.mkdir()
    (out / "mine.jpg").write_bytes(b"the user's own photo")
    with pytest.raises(OutputConflict, match="written by someone else"):
        claim_outputs("data convert", {}, folders=[out])
    assert (out / "mine.jpg").read_bytes() == b"the user's own photo"


# Run as its own process (not multiprocessing's, whose join waits on a pipe the forked worker keeps open)
CLAIM_FORK_AND_DIE = """
import os, signal, sys, time
from pathlib import Path
from bbuvl.outputs import claim_outputs
claim_outputs("train", {}, folders=[Path(sys.argv[1])])
worker = os.fork()  # as a DataLoader worker is, with the process's open files
if worker == 0:
    time.sleep(60)
    os._exit(0)
Path(sys.argv[2]).write_text(str(worker), encoding="utf-8")
os.kill(os.getpid(), signal.SIGKILL)  # what a `kill -9` or the OOM killer does: the worker outlives it
"""


def test_a_killed_writers_forked_worker_does_not_hold_its_output(tmp_path):
    out, pid_file = tmp_path / "run", tmp_path / "worker.pid"
    child = subprocess.run([sys.executable, "-c", CLAIM_FORK_AND_DIE, str(out), str(pid_file)], timeout=60)
    worker = int(pid_file.read_text(encoding="utf-8"))
    try:
        assert child.returncode == -signal.SIGKILL
        os.kill(worker, 0)  # the worker is still there
        claim_outputs("train", {}, folders=[out]).finish(succeeded=False)  # refused before, naming the ended pid
    finally:
        os.kill(worker, signal.SIGKILL)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_forked_worker_that_ends_leaves_its_parent_holding_the_output(tmp_path):
    with claim_outputs("train", {}, folders=[tmp_path / "run"]):
        worker = os.fork()
        if worker == 0:
            os._exit(0)  # its copies of the lock's file closed as it was forked, then closed again as it ends
        os.waitpid(worker, 0)
        with pytest.raises(OutputConflict, match=f"another `bbuvl train` \\(pid {os.getpid()}\\) is writing it"):
            _claim_in_child(tmp_path / "run")


def test_a_folder_set_aside_whole_holding_only_its_commands_names_passes_and_anything_else_is_named(tmp_path: Path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("train_00000.jpg", "val_00000.jpg", ".train_00001.jpg.4242.abcd1234.tmp.jpg", LEDGER):
        (images / name).write_bytes(b"x")  # synth's photos, a killed synth's temporary, the folder's own ledger
    refuse_strangers(images, "data synth", written_by_synth)

    (images / "inner" / "images").mkdir(parents=True)
    (images / "inner" / "images" / "train_00000.jpg").write_bytes(b"x")  # synth's name, but not where synth writes
    (images / "pred.jsonl").write_text("{}\n")
    (images / "empty").mkdir()
    with pytest.raises(OutputConflict, match=r"images: holds empty/, inner/, pred.jsonl, which `bbuvl data synth` "
                                             "did not write"):
        refuse_strangers(images, "data synth", written_by_synth)


def test_overwrite_of_a_folder_set_aside_whole_names_a_stranger_among_its_own_files_by_its_path(tmp_path: Path):
    def own(name: str) -> bool:
        return name.startswith("train/") and name.endswith(".jpg")

    images = tmp_path / "images"
    with claim_outputs("data tile", {}, folders=[images], own={images: own}):
        (images / "train").mkdir(parents=True)
        (images / "train" / "a__0_0_8x8.jpg").write_bytes(b"x")
    claim_outputs("data tile", {}, folders=[images], overwrite=True, own={images: own}).finish(True)  # as written
    (images / "train" / "a__0_0_8x8.jpg").write_bytes(b"retouched")
    claim_outputs("data tile", {}, folders=[images], overwrite=True, own={images: own}).finish(False)  # its own, edited

    (images / "train" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputConflict, match=r"images: holds train/notes.txt, which `bbuvl data tile` did not write"):
        claim_outputs("data tile", {}, folders=[images], overwrite=True, own={images: own})
    assert (images / "train" / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_a_listed_folder_s_own_files_are_those_its_last_run_wrote_and_the_listing_survives_other_entries(tmp_path):
    model = tmp_path / "model"
    with claim_outputs("model tiny", {}, folders=[model], listed=[model]):
        (model / "sub").mkdir(parents=True)
        (model / "model-00001-of-00002.safetensors").write_bytes(b"w")  # a name no pattern of the command foretells
        (model / "sub" / "config.json").write_text("{}", encoding="utf-8")
    with claim_outputs("data stats", {}, [tmp_path / "stats.json"]):  # another entry of the ledger, written after
        (tmp_path / "stats.json").write_text("{}", encoding="utf-8")
    (model / "sub" / "config.json").write_text('{"edited": 1}', encoding="utf-8")
    claim_outputs("model tiny", {}, folders=[model], overwrite=True, listed=[model]).finish(False)  # its own, edited

    (model / "README.md").write_text("mine", encoding="utf-8")
    (model / "sub" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputConflict, match=r"model: holds README.md, sub/notes.txt, which `bbuvl model tiny` did "
                                             "not write"):
        claim_outputs("model tiny", {}, folders=[model], overwrite=True, listed=[model])
    with pytest.raises(OutputConflict, match=r"holds README.md, model-00001-of-00002.safetensors, sub/"):
        claim_outputs("model export", {}, folders=[model], overwrite=True, listed=[model])  # no run of it wrote any


def fill(disk: Path) -> None:
    """Fill `disk` to its last byte."""
    with pytest.raises(OSError):
        with (disk / "filler").open("wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()


def test_a_claim_on_a_full_disk_names_the_lock_file_it_could_not_write_and_leaves_nothing_behind(tmp_path):
    # Every writing command said "cannot write the outputs: No space left on device: ;" (no file named) and left an
    # empty .NAME.lock, and the folder made for it (data synth's ds/), behind.
    with small_tmpfs(tmp_path / "disk", kib=64) as disk:
        (disk / ".ds.lock").write_text("4242 data split\n", encoding="utf-8")  # a killed run's, before the disk filled
        fill(disk)
        for outputs in ([disk / "gt.coco.json"], [disk / "ds" / "train.jsonl", disk / "ds" / "val.jsonl"],
                        [disk / "ds", disk / "gt.coco.json"]):
            with pytest.raises(OSError) as e:
                claim_outputs("data split", {}, outputs)
            assert e.value.errno == errno.ENOSPC, e.value
            assert e.value.filename == str(lock_path(outputs[-1] if outputs[0] == disk / "ds" else outputs[0]))
            assert sorted(p.name for p in disk.iterdir()) == [".ds.lock", "filler"]
            assert (disk / ".ds.lock").read_text(encoding="utf-8") == "4242 data split\n"  # put back as it was found


def test_a_name_or_path_too_long_for_a_temporary_is_refused_naming_a_length_that_works(tmp_path):
    # The advice counted this process's pid (it moved with the pid's digits) and named the file named after the output
    # (eval's METRICS.coco.json), not the output typed; and only the name was checked, never the whole path.
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    advised = set()
    for length in (limit, limit - 25):
        out = tmp_path / ("m" * (length - 5) + ".json")
        details = out.with_name(out.stem + ".coco.json")
        with pytest.raises(OutputConflict, match=f"a name of {length} bytes, and writing {details.name} beside it"):
            claim_outputs("eval", {}, [out, details], named_after={details: out})
        advised.add(int(re.search(r"at most (\d+) bytes", str(_refusal(out, details))).group(1)))
    (longest,) = advised
    for length, fits in ((longest, True), (longest + 1, False)):
        out = tmp_path / ("m" * (length - 5) + ".json")
        details = out.with_name(out.stem + ".coco.json")
        assert (_refusal(out, details) is None) is fits
        if fits:
            write_text_atomic(details, "{}")  # with a temporary of the longest pid's name beside it
    room = os.pathconf(tmp_path, "PC_PATH_MAX") - 1
    folder = tmp_path
    while len(os.fsencode(str(folder / ("d" * 200)))) < room - 100:
        folder = folder / ("d" * 200)
    folder.mkdir(parents=True)
    out = folder / ("p" * (room - len(os.fsencode(str(folder))) - 10))
    advice = re.search(r"past the (\d+) a path may have here; choose a path of at most (\d+) bytes", str(_refusal(out)))
    assert advice is not None and int(advice.group(1)) == room
    longest = int(advice.group(2))
    out = folder / ("p" * (longest - len(os.fsencode(str(folder))) - 1))
    assert _refusal(out) is None and _refusal(out.with_name(out.name + "p")) is not None
    write_text_atomic(out, "{}")


def _refusal(out: Path, *named_after_it: Path) -> OutputConflict | None:
    """Why claiming `out` (and files named after it) is refused, None when it is taken (and let go again)."""
    try:
        claim_outputs("eval", {}, [out, *named_after_it], named_after=dict.fromkeys(named_after_it, out)).finish(False)
    except OutputConflict as e:
        return e
    return None


def test_a_failed_run_whose_half_cannot_be_removed_keeps_the_earlier_outputs_and_raises_its_own_error(tmp_path, caplog):
    images, records = tmp_path / "images", tmp_path / "train.jsonl"
    images.mkdir()
    (images / "old.jpg").write_text("old photo", encoding="utf-8")
    records.write_text("old records\n", encoding="utf-8")
    with ExitStack() as undo, pytest.raises(RuntimeError, match="the run failed") as raised:
        with replacing([images, records]):
            images.mkdir()
            (images / "new.jpg").write_text("new photo", encoding="utf-8")
            records.write_text("new records\n", encoding="utf-8")
            undo.enter_context(unremovable(images / "new.jpg"))  # until the test is done with it, not just the block
            raise RuntimeError("the run failed")
    # The half that could not go was first; the records after it are put back all the same
    assert records.read_text(encoding="utf-8") == "old records\n"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".images.")]
    assert [p.suffix for p in kept] == [".kept"]  # not a .tmp: the next writer of images/ would remove it
    assert (kept[0] / "images" / "old.jpg").read_text(encoding="utf-8") == "old photo"
    told = [n for n in getattr(raised.value, "__notes__", []) if str(kept[0] / "images") in n]
    assert len(told) == 1 and "mv " in told[0] and str(images) in told[0]
    assert any(str(kept[0] / "images") in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_a_failed_run_puts_back_every_earlier_output_and_leaves_nothing_aside(tmp_path):
    images, records = tmp_path / "images", tmp_path / "train.jsonl"
    images.mkdir()
    (images / "old.jpg").write_text("old photo", encoding="utf-8")
    records.write_text("old records\n", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with replacing([images, records]):
            images.mkdir()
            (images / "new.jpg").write_text("new photo", encoding="utf-8")
            raise RuntimeError("the run failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "train.jsonl"]
    assert [p.name for p in images.iterdir()] == ["old.jpg"] and records.read_text(encoding="utf-8") == "old records\n"
