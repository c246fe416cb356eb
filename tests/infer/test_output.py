"""What `bbuvl predict` says of a predictions file it is asked to append to (infer/output.py)."""

from __future__ import annotations

import pytest

from bbuvl.infer.output import OutputError, check_ours, manifest_path

# Two lines as the bbu-vl of before manifests wrote them with `bbuvl predict --mode head`: no manifest beside them.
OLD_LINES = ('{"image": "images/val_00000.jpg", "width": 320, "height": 240, "objects": [], "raw": null, "error": null}\n'
             '{"image": "images/val_00001.jpg", "width": 320, "height": 240, "objects": [], "raw": null, "error": null}\n')


def test_predictions_without_a_manifest_are_refused_as_another_tools_or_an_older_bbuvls(tmp_path):
    out = tmp_path / "pred.jsonl"
    out.write_text(OLD_LINES, encoding="utf-8")
    with pytest.raises(OutputError) as refused:
        check_ours(out)
    said = str(refused.value)
    assert said.startswith(f"{out}: exists with no manifest beside it ({manifest_path(out).name})")
    assert "written by another tool or by a bbu-vl older than manifests" in said
    assert "not written by" not in said  # an older `bbuvl predict` wrote it: it was never told it was not
    assert "--overwrite" in said and out.read_text(encoding="utf-8") == OLD_LINES
