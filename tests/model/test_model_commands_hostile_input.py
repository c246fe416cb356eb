"""`bbuvl model tiny` asked for sizes no tiny model has: refused with its size before anything is built or written."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from tests.model.test_export import portable  # noqa: F401  (a fixture: a checkpoint export takes, and its export)
from tests.model.test_lora_base import lora_run  # noqa: F401  (a fixture: a one-step LoRA run)
from tests.moved_photos import copied_without_photos


@pytest.mark.parametrize("sizes, about", [
    (["--hidden", "100000", "--layers", "100"], "about 10,000,000,081,920 parameters (40,000 GB as float32)"),
    (["--vision-hidden", "20000", "--vision-depth", "1"], "about 4,000,327,680 parameters (16 GB as float32)"),
])
def test_model_tiny_at_sizes_no_tiny_model_has_is_refused_naming_them_before_any_work(tmp_path, sizes, about):
    r = CliRunner().invoke(app, ["model", "tiny", str(tmp_path / "m"), *sizes], env={"COLUMNS": "400"})
    # Before: torch's 'DefaultCPUAllocator: can't allocate memory: you tried to allocate 40000000000 bytes' traceback.
    assert r.exit_code == 2 and about in r.output and "builds at most 1,000,000,000" in r.output, r.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, says", [
    (["--hidden", "130"], "--hidden 130 must divide by --heads 4, and --heads by --kv-heads 2"),
    (["--kv-heads", "3"], "--hidden 128 must divide by --heads 4, and --heads by --kv-heads 3"),
    (["--vision-hidden", "65"], "--vision-hidden 65 must divide by --vision-heads 4"),
    # Before: saved, then every photo failed on a shape error in the vision tower's rotary code
    (["--vision-hidden", "8"], "a vision head (--vision-hidden 8 / --vision-heads 4 = 2) must be a multiple of 4"),
    (["--vision-hidden", "24"], "a vision head (--vision-hidden 24 / --vision-heads 4 = 6) must be a multiple of 4"),
    (["--min-pixels", "100000", "--max-pixels", "1000"], "--min-pixels 100000 must not exceed --max-pixels 1000"),
    (["--family", "llama"], "--family llama: model_type 'llama' is not a model family bbu-vl supports"),
])
def test_model_tiny_at_a_shape_no_model_takes_is_refused_naming_the_options_before_any_work(tmp_path, options, says):
    r = CliRunner().invoke(app, ["model", "tiny", str(tmp_path / "m"), *options], env={"COLUMNS": "400"})
    # Before: the builder's words ("hidden (130) must divide by heads (4)"), after seconds of training its tokenizer.
    assert r.exit_code == 2 and f"error: {says}" in " ".join(r.output.split()), r.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("one_thread")
def test_model_export_on_a_device_this_machine_lacks_is_refused_before_anything_loads(trained_checkpoint, small_dataset,
                                                                                       tmp_path):
    r = CliRunner().invoke(app, ["model", "export", str(trained_checkpoint), str(tmp_path / "out"),
                                 "--drop-vision-positions", "--val", str(small_dataset / "val.jsonl"),
                                 "--device", "cuda:99"], env={"COLUMNS": "400"})
    # Before: torch's "Torch not compiled with CUDA enabled" (or "invalid device ordinal") traceback once the
    # checkpoint's weights had loaded.
    assert r.exit_code == 2 and "--device cuda:99: no such CUDA device here" in r.output, r.output
    assert "Loading weights" not in r.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", [["--device", "cpu"], ["--batch-size", "2"]], ids=["device", "batch-size"])
def test_model_export_options_of_the_measurement_without_it_are_refused(tmp_path, option):
    r = CliRunner().invoke(app, ["model", "export", str(tmp_path / "ckpt"), str(tmp_path / "out"), *option],
                           env={"COLUMNS": "400"})
    # Before: they were taken and did nothing, the export running as without them.
    assert r.exit_code == 2 and f"{option[0]} applies only with --drop-vision-positions" in r.output, r.output


def _someones(folder):
    """A folder of someone's files (a real checkpoint's weights, notes) where a model command is pointed to write."""
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"someone's weights")
    (folder / "notes.txt").write_text("mine\n", encoding="utf-8")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_overwrite_replaces_only_a_folder_the_model_command_wrote_never_someone_elses(trained_checkpoint, tmp_path):
    # Before: `model tiny OUT --overwrite` (and merge-lora's, export's) replaced the whole folder OUT, whatever it held.
    for command in (["tiny"], ["merge-lora", str(trained_checkpoint)], ["export", str(trained_checkpoint)]):
        out = tmp_path / f"out-{command[0]}"
        before = _someones(out)
        r = CliRunner().invoke(app, ["model", *command, str(out), "--overwrite"], env={"COLUMNS": "400"})
        said = " ".join(r.output.split())
        assert r.exit_code == 2 and (f"{out}: holds model.safetensors, notes.txt, which `bbuvl model {command[0]}` did "
                                     "not write; it replaces the folder whole, so --overwrite would delete them") in said, r.output
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    own = tmp_path / "own"
    assert CliRunner().invoke(app, ["model", "tiny", str(own)]).exit_code == 0
    (own / "config.json").write_text("{}", encoding="utf-8")  # changed since it wrote it: given up with --overwrite
    assert CliRunner().invoke(app, ["model", "tiny", str(own)]).exit_code == 2
    r = CliRunner().invoke(app, ["model", "tiny", str(own), "--overwrite"])
    assert r.exit_code == 0 and (own / "config.json").read_text(encoding="utf-8") != "{}", r.output
    (tmp_path / "empty").mkdir()
    assert CliRunner().invoke(app, ["model", "tiny", str(tmp_path / "empty"), "--overwrite"]).exit_code == 0


@pytest.mark.usefixtures("one_thread")
def test_model_export_measuring_on_a_val_whose_photos_are_not_there_is_refused_naming_its_line(
        trained_checkpoint, small_dataset, tmp_path):
    val, first = copied_without_photos(small_dataset / "val.jsonl", tmp_path / "copied")
    r = CliRunner().invoke(app, ["model", "export", str(trained_checkpoint), str(tmp_path / "out"),
                                 "--drop-vision-positions", "--val", str(val), "--device", "cpu"], env={"COLUMNS": "400"})
    said = " ".join(r.output.split())
    # Before: "AP50 0.000 with, 0.000 without; 0 answers differ", a cost measured on no photo, written into the card.
    assert r.exit_code == 2 and f"error: {val}:1: image {first}: {val.parent / first}: image file not found (and 1 " \
                                "more); the cost would be measured without it" in said, r.output
    assert not (tmp_path / "out").exists()



def _refuses_a_file_put_there_since_and_still_replaces_its_own_edited(given: list[str], out, beside) -> None:
    """`bbuvl model GIVEN OUT`, then --overwrite with files put into OUT since: refused naming them, then their own
    edited file replaced once they are gone, and a file `beside` OUT untouched."""
    def write(*more: str):
        return CliRunner().invoke(app, ["model", *given, str(out), *more], env={"COLUMNS": "400"})
    assert (first := write()).exit_code == 0, first.output
    written = (out / "config.json").read_text(encoding="utf-8")
    (out / "config.json").write_text("{}", encoding="utf-8")  # its own: --overwrite gives it up, as before
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    (out / "second-adapter").mkdir()
    (out / "second-adapter" / "adapter_model.safetensors").write_bytes(b"mine")
    beside.write_text("mine", encoding="utf-8")

    r = write("--overwrite")
    said = " ".join(r.output.split())
    # Before: exit 0, notes.txt and second-adapter/ deleted with the folder (the ledger still named the command).
    assert r.exit_code == 2 and (f"{out}: holds notes.txt, second-adapter/, which `bbuvl model {given[0]}` did not "
                                 "write") in said, r.output
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (out / "second-adapter" / "adapter_model.safetensors").read_bytes() == b"mine"

    (out / "notes.txt").unlink()
    shutil.rmtree(out / "second-adapter")
    assert (again := write("--overwrite")).exit_code == 0, again.output
    assert (out / "config.json").read_text(encoding="utf-8") == written
    assert beside.read_text(encoding="utf-8") == "mine"


@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_tiny_overwrite_refuses_a_file_put_into_its_folder_since_and_still_replaces_its_own_edited(tmp_path):
    _refuses_a_file_put_there_since_and_still_replaces_its_own_edited(["tiny"], tmp_path / "out", tmp_path / "beside.txt")


@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_merge_lora_overwrite_refuses_a_file_put_into_its_folder_since_and_still_replaces_its_own_edited(
        lora_run, tmp_path):
    _refuses_a_file_put_there_since_and_still_replaces_its_own_edited(
        ["merge-lora", str(lora_run[0] / "final")], tmp_path / "out", tmp_path / "beside.txt")


@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_export_overwrite_refuses_a_file_put_into_its_folder_since_and_still_replaces_its_own_edited(portable, tmp_path):
    _refuses_a_file_put_there_since_and_still_replaces_its_own_edited(
        ["export", str(portable[0])], tmp_path / "out", tmp_path / "beside.txt")



@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_merge_lora_overwrite_replaces_the_tile_scale_chosen_for_the_old_weights_and_says_so(lora_run, small_dataset,
                                                                                            tmp_path, caplog):
    # choose-tiles writes tile_scale.json into the model it chose for; merging anew was refused, naming it as a file
    # merge-lora "did not write"
    out = tmp_path / "merged"

    def merge(*more: str):
        return CliRunner().invoke(app, ["model", "merge-lora", str(lora_run[0] / "final"), str(out), *more],
                                  env={"COLUMNS": "400"})
    assert (first := merge()).exit_code == 0, first.output
    chosen = CliRunner().invoke(app, ["choose-tiles", "-c", str(out), "--gt", str(small_dataset / "val.jsonl"),
                                      "-o", str(tmp_path / "cands"), "--factors", "1", "--no-refine", "--device", "cpu"])
    assert chosen.exit_code == 0 and (out / "tile_scale.json").is_file(), chosen.output

    again = merge("--overwrite")

    said = " ".join(caplog.messages)  # a warning, on stderr where no logging is set up
    assert again.exit_code == 0, again.output
    assert f"{out / 'tile_scale.json'}, chosen by `bbuvl choose-tiles` for the old weights, goes with them" in said
    assert not (out / "tile_scale.json").exists()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_tiny_overwrite_replaces_a_folder_an_earlier_version_recorded_without_its_file_list(tmp_path):
    # An earlier bbu-vl recorded the folder by its digest alone; refused, every file of it was named as one
    # `model tiny` "did not write"
    out = tmp_path / "M"
    assert (first := CliRunner().invoke(app, ["model", "tiny", str(out)])).exit_code == 0, first.output
    ledger = tmp_path / ".bbuvl-outputs.json"
    entries = json.loads(ledger.read_text(encoding="utf-8"))
    del entries["written"]["M"]["files"]
    ledger.write_text(json.dumps(entries), encoding="utf-8")
    (out / "generation_config.json").write_text("{}", encoding="utf-8")

    again = CliRunner().invoke(app, ["model", "tiny", str(out), "--overwrite"], env={"COLUMNS": "400"})

    assert again.exit_code == 0, again.output
    assert json.loads((out / "generation_config.json").read_text(encoding="utf-8"))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_tiny_overwrite_takes_a_file_managers_metadata_along_and_refuses_an_editors_backup(tmp_path):
    # A folder opened in Finder or Explorer was refused for good, naming .DS_Store
    out = tmp_path / "M"

    def tiny(*more: str):
        return CliRunner().invoke(app, ["model", "tiny", str(out), *more], env={"COLUMNS": "400"})
    assert (first := tiny()).exit_code == 0, first.output
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "._config.json"):
        (out / name).write_bytes(b"\0")
    (out / "config.json~").write_text("{}", encoding="utf-8")

    refused = tiny("--overwrite")

    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and f"{out}: holds config.json~, which `bbuvl model tiny` did not write; it " \
                                      "replaces the folder whole, so --overwrite would delete it. Move it out" in said, said
    (out / "config.json~").unlink()
    assert (again := tiny("--overwrite")).exit_code == 0, again.output
    assert not (out / ".DS_Store").exists()
