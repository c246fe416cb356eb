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


def test_a_line_other_than_the_one_recorded_for_its_photo_is_dropped_named_and_found_by_readers(tmp_path):
    # Another run's line for a photo, copied over the file under this run's manifest, was kept by a resume as done.
    from bbuvl.infer.output import Manifest, claim_output, foreign_lines, record_lines, recorded_lines, repair_output

    out = tmp_path / "pred.jsonl"
    claim_output(out, Manifest(str(tmp_path), "/ckpt", "head"))
    out.write_text(OLD_LINES, encoding="utf-8")
    assert foreign_lines(out) == []  # nothing recorded: nothing to tell (an earlier bbu-vl's manifest)
    record_lines(out)
    assert sorted(recorded_lines(out)) == ["images/val_00000.jpg", "images/val_00001.jpg"]
    first, second = OLD_LINES.splitlines(keepends=True)
    other = second.replace('"objects": []', '"objects": [{"bbox_2d": [1, 2, 3, 4], "label": "a", "score": 0.9}]')
    out.write_text(first + other + '{"image": "images/new.jpg", "objects": [], "raw": null, "error": null}\n',
                   encoding="utf-8")
    assert foreign_lines(out) == [(2, "images/val_00001.jpg")]
    done, report = repair_output(out, recorded=recorded_lines(out))
    assert done == {"images/val_00000.jpg", "images/new.jpg"} and report.foreign == 1  # a line not recorded is kept
    assert report.unreadable == [f"{out}:2: image images/val_00001.jpg: not the line `bbuvl predict` left for it (its "
                                 "manifest records another: the file was edited or replaced since)"]
    assert "val_00001" not in out.read_text(encoding="utf-8")
