"""An output is never given a name bbuvl keeps its own records under (bbuvl/outputs.py): the outputs ledger, an
output's lock file, a writer's temporary. Each was taken, and the machinery then replaced or removed what was written
there."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("name", [".bbuvl-outputs.json", ".t.jsonl.lock", ".c.json.4242.abcd_123.tmp.json"])
def test_an_output_named_like_a_ledger_lock_or_temporary_is_refused_even_with_overwrite(small_dataset, tmp_path, name):
    data = small_dataset / "train.jsonl"
    for command in (["data", "export-coco", data, tmp_path / name], ["data", "stats", data, "--json", tmp_path / name],
                    ["data", "teachers", data, tmp_path / name]):
        code, said = invoke(*command, "--overwrite")
        assert code == 2 and f"{tmp_path / name}: bbuvl keeps its own records under names like this one" in said, said
        assert not (tmp_path / name).exists()


def test_an_output_named_as_the_manifest_of_predictions_beside_it_is_refused_even_with_overwrite(small_dataset,
                                                                                                   tmp_path):
    # `eval --out b.jsonl.predict.json --overwrite` (and predict's -o, data stats' --json) replaced b.jsonl's manifest:
    # its lines were then another tool's to predict and eval, resumed and judged by no record of their checkpoint.
    data = small_dataset / "train.jsonl"
    lines, manifest = tmp_path / "b.jsonl", tmp_path / "b.jsonl.predict.json"
    part_manifest = tmp_path / "b.jsonl.rank1-of-2.predict.json"
    lines.write_text('{"image": "images/a.jpg", "objects": []}\n', encoding="utf-8")
    (tmp_path / "b.jsonl.rank1-of-2").write_text('{"image": "images/b.jpg", "objects": []}\n', encoding="utf-8")
    manifest.write_text('{"tool": "bbuvl predict"}\n', encoding="utf-8")
    for out in (manifest, part_manifest):
        for command in (["data", "stats", data, "--json", out], ["data", "export-coco", data, out]):
            code, said = invoke(*command, "--overwrite")
            assert code == 2 and f"{out}: is the manifest of the predictions in {out.name[:-13]} beside it" in said, said
    assert manifest.read_text(encoding="utf-8") == '{"tool": "bbuvl predict"}\n' and not part_manifest.exists()
    lines.write_text("", encoding="utf-8")  # no lines: no manifest to keep, and the name is free
    assert invoke("data", "stats", data, "--json", manifest, "--overwrite")[0] == 0


def test_what_was_written_as_a_lock_file_or_the_ledger_is_no_longer_lost(small_dataset, tmp_path):
    data = small_dataset / "train.jsonl"
    # Before: the COCO file written as `.t.jsonl.lock` was truncated and removed by the next `data teachers` into
    # t.jsonl, and `--json .bbuvl-outputs.json --overwrite` said "wrote" of a file then holding the ledger.
    assert invoke("data", "teachers", data, tmp_path / "t.jsonl")[0] == 0
    assert invoke("data", "export-coco", data, tmp_path / ".t.jsonl.lock")[0] == 2
    assert invoke("data", "stats", data, "--json", tmp_path / ".bbuvl-outputs.json", "--overwrite")[0] == 2
    ledger = json.loads((tmp_path / ".bbuvl-outputs.json").read_text(encoding="utf-8"))
    assert list(ledger["written"]) == ["t.jsonl"]
    code, said = invoke("data", "export-coco", data, tmp_path / ".t.jsonl.json")  # a hidden name of its own is fine
    assert code == 0 and json.loads((tmp_path / ".t.jsonl.json").read_text(encoding="utf-8"))["images"], said


def test_an_output_that_is_a_device_or_a_pipe_is_refused_and_stays_what_it_was(small_dataset, tmp_path):
    import os
    import stat

    # `--json /dev/null --overwrite` renamed a JSON file over the system's /dev/null (as root); a named pipe was
    # replaced alike. A copy of /dev/null stands in for it here (mknod needs root; the pipe does not).
    data = small_dataset / "train.jsonl"
    os.mkfifo(tmp_path / "pipe")
    specials = {"pipe": stat.S_ISFIFO}
    try:
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        specials["null"] = stat.S_ISCHR
    except PermissionError:
        pass
    (tmp_path / "link").symlink_to(tmp_path / "pipe")
    for name in [*specials, "link"]:
        for command in (["data", "stats", data, "--json", tmp_path / name], ["data", "export-coco", data, tmp_path / name],
                        ["data", "teachers", data, tmp_path / name]):
            code, said = invoke(*command, "--overwrite")
            kind = "a device" if name == "null" else "a named pipe"
            assert code == 2 and f"{tmp_path / name}: {kind}, not a file" in said, said
    for name, is_kind in specials.items():
        assert is_kind(os.lstat(tmp_path / name).st_mode), name
