"""The manifest beside a predictions file names its input and checkpoint: in a folder named in GBK bytes they are
kept as JSON escapes, which read back as those paths (so a resume and eval find the photos), where writing it failed
with "'utf-8' codec can't encode characters in position 31-34" once the model had loaded."""

from __future__ import annotations

from bbuvl.infer.output import Manifest, claim_output, read_manifest
from tests.locales import gbk_folder


def test_a_manifest_naming_an_input_in_a_gbk_folder_is_written_and_read_back_as_it_was(tmp_path):
    folder = gbk_folder(tmp_path)
    manifest = Manifest(input=str(folder / "ds" / "val.jsonl"), checkpoint=str(folder / "ck"), mode="head")
    out = tmp_path / "p.jsonl"
    claim_output(out, manifest)
    assert read_manifest(out) == manifest
