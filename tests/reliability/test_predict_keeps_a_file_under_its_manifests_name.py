"""Beside --out predict keeps its manifest (`OUT.predict.json`). A file of the user's under that name, beside no
predictions, was replaced by the manifest without a word, and deleted by --overwrite. It is refused now, naming it,
with or without --overwrite, and kept; a damaged manifest beside predictions is still started over by --overwrite.
And `-o -`, standard output as most tools spell it, wrote a file named '-' (and its manifest) in the working folder."""

from __future__ import annotations

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("out_there", [False, True])
def test_a_users_file_under_the_manifests_name_is_refused_and_kept(trained_checkpoint, small_dataset, tmp_path, overwrite,
                                                                   out_there):
    out, mine = tmp_path / "p.jsonl", tmp_path / "p.jsonl.predict.json"
    mine.write_text("my notes on this site\n", encoding="utf-8")
    if out_there:
        out.write_bytes(b"")  # an empty output holds nothing the file could be the manifest of
    refused(invoke(["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "-o", out, "--mode", "head",
                    "--device", "cpu", *overwrite]),
            f"{mine}: a file `bbuvl predict` did not write", "move it away, or choose another --out")
    assert mine.read_text(encoding="utf-8") == "my notes on this site\n"
    assert out.exists() == out_there and (not out_there or out.read_bytes() == b"")


def test_overwrite_still_starts_over_predictions_beside_a_damaged_manifest(trained_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "p.jsonl"
    out.write_text('{"image": "images/x.png", "objects": []}\n', encoding="utf-8")
    (tmp_path / "p.jsonl.predict.json").write_text("{damaged", encoding="utf-8")
    argv = ["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "-o", out, "--mode", "head",
            "--device", "cpu"]
    refused(invoke(argv), "not a `bbuvl predict` manifest", "--overwrite")
    result = invoke([*argv, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_out_spelt_as_standard_output_is_refused_and_writes_no_file_named_dash(small_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(invoke(["predict", "-c", tmp_path / "no-such-ckpt", "-i", small_dataset / "val.jsonl", "-o", "-"]),
            "'-' names standard output, but this writes a file whole", "name a file")
    assert not (tmp_path / "-").exists() and not (tmp_path / "-.predict.json").exists()
