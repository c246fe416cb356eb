"""A sharded predict (`torchrun`: RANK, WORLD_SIZE) writes one part file per rank beside --out until rank 0 merges
them. The parts are lines of the output: a run with other settings merged a killed run's parts with its own lines
under its own manifest (one file, two runs), and --overwrite left them to be merged later. A rank other than 0 read
--out for its summary before rank 0 had merged it, and exited 2 ('No such file'), which stops every rank under
torchrun."""

from __future__ import annotations

import json

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


def shard(monkeypatch, rank: int, world: int = 2) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))


def predict(ckpt, data, out, *extra):
    return invoke(["predict", "-c", ckpt, "-i", data / "val.jsonl", "-o", out, "--mode", "head", "--device", "cpu", *extra])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_killed_sharded_runs_parts_are_never_merged_into_a_run_with_other_settings(trained_checkpoint, small_dataset,
                                                                                      tmp_path, monkeypatch):
    out = tmp_path / "pred.jsonl"
    part = tmp_path / "pred.jsonl.rank1-of-2"
    shard(monkeypatch, 1)
    first = predict(trained_checkpoint, small_dataset, out)  # rank 1 done; rank 0 killed before its share
    assert first.exit_code == 0, first.output
    # No rank 0 runs to merge it (before: "its lines go into pred.jsonl when rank 0 merges the parts"), and the photos
    # already done are counted from its share alone
    said = " ".join(first.output.split())
    assert "rank 1 of 2: no rank 0 is running to merge its lines, which stay in" in said and "0 already in" in said
    kept = part.read_bytes()
    assert kept and not out.exists()

    shard(monkeypatch, 0)
    refused(predict(trained_checkpoint, small_dataset, out, "--score-threshold", "0.5"),
            "holds predictions of another run (in the part files of a sharded run, not merged yet: pred.jsonl.rank1-of-2)",
            "score_threshold 0.0 (now 0.5)")
    assert part.read_bytes() == kept and not out.exists()

    resumed = predict(trained_checkpoint, small_dataset, out)  # the same settings: rank 0 predicts its share, merges
    assert resumed.exit_code == 0, resumed.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 and not part.exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_overwrite_removes_the_part_files_with_the_output(trained_checkpoint, small_dataset, tmp_path, monkeypatch):
    out = tmp_path / "pred.jsonl"
    part = tmp_path / "pred.jsonl.rank1-of-2"
    shard(monkeypatch, 1)
    assert predict(trained_checkpoint, small_dataset, out).exit_code == 0
    shard(monkeypatch, 0, world=1)
    started = predict(trained_checkpoint, small_dataset, out, "--score-threshold", "0.5", "--overwrite")
    assert started.exit_code == 0, started.output
    assert not part.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["pred.jsonl", "pred.jsonl.predict.json"]
    # a later sharded run with the first settings finds no part of the run started over to merge
    shard(monkeypatch, 0)
    refused(predict(trained_checkpoint, small_dataset, out), "holds predictions of another run", "score_threshold 0.5 (now 0.0)")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_sharded_run_resumed_under_another_rank_count_counts_the_killed_runs_parts_as_done_and_merges_them(
        trained_checkpoint, small_dataset, tmp_path, monkeypatch):
    # Before: torchrun again with 3 ranks read only parts "-of-3": the photo in pred.jsonl.rank1-of-2 was predicted
    # again, and the old part was left beside the output for ever.
    out = tmp_path / "pred.jsonl"
    old_part = tmp_path / "pred.jsonl.rank1-of-2"
    shard(monkeypatch, 1)
    assert predict(trained_checkpoint, small_dataset, out).exit_code == 0  # photo 2 of 2; rank 0 killed before its share
    kept = old_part.read_text(encoding="utf-8")
    shard(monkeypatch, 1, world=3)
    again = predict(trained_checkpoint, small_dataset, out)  # its share, photo 2, is in the old part
    assert again.exit_code == 0, again.output
    assert not (tmp_path / "pred.jsonl.rank1-of-3").exists() or not (tmp_path / "pred.jsonl.rank1-of-3").read_text()
    shard(monkeypatch, 0, world=3)
    merged = predict(trained_checkpoint, small_dataset, out)
    assert merged.exit_code == 0, merged.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and lines[1] == kept.strip()  # the old part's line, as it was
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["pred.jsonl", "pred.jsonl.predict.json"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_ranks_started_together_with_other_settings_are_never_merged_into_one_file(trained_checkpoint, small_dataset,
                                                                                    tmp_path, monkeypatch):
    # Before: ranks that both found --out free (torchrun starts them together) wrote their parts under their own
    # settings, each its manifest over the other's, and rank 0 merged the two runs' lines into one file.
    out = tmp_path / "pred.jsonl"
    shard(monkeypatch, 1)
    assert predict(trained_checkpoint, small_dataset, out, "--score-threshold", "0.5").exit_code == 0
    part = tmp_path / "pred.jsonl.rank1-of-2"
    assert (tmp_path / "pred.jsonl.rank1-of-2.predict.json").is_file()  # its rank's own run, beside its part
    kept = part.read_bytes()
    # Rank 0 claims --out the moment after rank 1 did, before rank 1 wrote a line: its manifest is the last written
    manifest = json.loads((tmp_path / "pred.jsonl.predict.json").read_text(encoding="utf-8"))
    manifest["key"]["options"]["score_threshold"] = 0.0
    (tmp_path / "pred.jsonl.predict.json").write_text(json.dumps(manifest), encoding="utf-8")
    shard(monkeypatch, 0)
    refused(predict(trained_checkpoint, small_dataset, out), "pred.jsonl.rank1-of-2: written by a rank of another run",
            "score_threshold 0.5 (now 0.0)", "Nothing is merged and the parts are kept")
    assert not out.exists() and part.read_bytes() == kept


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_named_with_a_line_separator_keeps_its_line_when_the_parts_are_merged(trained_checkpoint, small_dataset,
                                                                                     tmp_path, monkeypatch):
    # JSON writes U+2028 (and U+0085) as they are, and a line of text read back by str.splitlines() broke there: the
    # merge dropped the photo's line as damaged, silently, and rank 0 said nothing was missing
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    rows = [json.loads(line) for line in (data / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    for row, name in zip(rows, ("images/line\u2028separated.jpg", "images/next\x85line.jpg")):
        (data / row["images"][0]).rename(data / name)
        row["images"] = [name]
    (data / "val.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    shard(monkeypatch, 1)
    assert predict(trained_checkpoint, data, out).exit_code == 0
    shard(monkeypatch, 0)
    merged = predict(trained_checkpoint, data, out)
    assert merged.exit_code == 0, merged.output
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["image"] for line in lines] == [r["images"][0] for r in rows]
