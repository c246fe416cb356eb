"""`bbuvl fewshot` on hostile input through the CLI: threshold sweeps too long to hold, reruns into the same folder,
queries that all fail, caches placed inside an input or on an output, linked class folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app
from bbuvl.fewshot.evaluate import MAX_THRESHOLDS, parse_thresholds


def photos(root: Path, classes: dict[str, int]) -> Path:
    """`root/<class>/<i>.png`: small plain photos, a colour per class."""
    for c, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (12, 10), (60 * c % 256, 20 * i, 200 - 50 * c % 200)).save(root / name / f"{i}.png")
    return root


def invoke(*args) -> tuple[int, str]:
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})  # a usage error's box unwrapped
    assert not r.exception or isinstance(r.exception, SystemExit), r.exception  # a traceback is never an answer
    return r.exit_code, " ".join(r.output.split())


def test_a_threshold_step_too_fine_to_hold_is_refused_at_once_naming_the_count(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"'0:1:1e-9' are 1,000,000,000 values, more than 1001"):
        parse_thresholds("0:1:1e-9")  # built a billion-value list, then hung writing the tables
    assert time.perf_counter() - start < 1
    assert len(parse_thresholds("-1:1:0.002")) == MAX_THRESHOLDS
    for text in ("0:1:inf", "0:1:nan"):  # a step that is no number is the form's error, never a NaN threshold
        with pytest.raises(ValueError, match="START:STOP:STEP"):
            parse_thresholds(text)
    support = photos(tmp_path / "support", {"a": 1})
    for text in ("0:inf:0.1", "-inf:0:0.1"):  # OverflowError, a traceback through the CLI
        code, said = invoke("eval", "--support", support, "--query", support, "--backbone", "pixels:8",
                            "--thresholds", text, "--out", tmp_path / "res", "--no-cache")
        assert code == 2 and "finite number in [-1, 1]" in said, said
    assert not (tmp_path / "res").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_rerun_into_its_folder_keeps_nothing_of_the_earlier_run_and_a_failed_one_keeps_it_whole(tmp_path):
    support = photos(tmp_path / "support", {"a": 3, "b": 3})
    query = photos(tmp_path / "query", {"a": 1, "b": 1})
    out = tmp_path / "res"
    common = ("--support", support, "--backbone", "pixels:8", "--out", out, "--no-cache")
    assert invoke("eval", *common, "--query", query, "--shots", "1,3", "--thresholds", "0.5,0.9")[0] == 0
    assert len(list((out / "confusion").iterdir())) == 4
    code, said = invoke("eval", *common, "--query", query, "--shots", "1", "--thresholds", "0.7")
    assert code == 0, said
    # Before, the first run's shots3_* and t0.50/t0.90 tables stayed beside the second run's summary.
    assert sorted(p.name for p in (out / "confusion").iterdir()) == ["shots1_t0.70.csv"]
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (tmp_path / "q.jsonl").write_text("", encoding="utf-8")
    assert invoke("eval", *common, "--query", tmp_path / "q.jsonl", "--overwrite")[0] == 2
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_eval_whose_every_query_photo_is_missing_names_the_first_of_them(tmp_path):
    support = photos(tmp_path / "support", {"a": 1})
    line = {"images": ["gone/x.jpg"], "width": 20, "height": 20, "objects": [{"bbox_2d": [0, 0, 10, 10], "desc": "a"}]}
    (tmp_path / "val.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    code, said = invoke("eval", "--support", support, "--query", tmp_path / "val.jsonl", "--backbone", "pixels:8",
                        "--out", tmp_path / "res", "--no-cache")
    # Before: "val.jsonl: no query could be evaluated", nothing said of why.
    assert code == 2 and "1 problem(s), the first: " in said and "gone/x.jpg: image file not found" in said, said
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("command", ["classify", "eval"])
def test_a_cache_inside_the_support_folder_or_at_the_output_is_refused_before_anything_is_written(tmp_path, command):
    support = photos(tmp_path / "support", {"a": 1, "b": 1})
    out = tmp_path / ("res.csv" if command == "classify" else "res")
    args = ("--support", support, "--query", support, "--backbone", "pixels:8", "--out", out)
    code, said = invoke(command, *args, "--cache", support)  # wrote embeddings.sqlite among the support photos
    assert code == 2 and "--cache: " in said and "is inside the input --support" in said, said
    code, said = invoke(command, *args, "--cache", out)  # made a folder where the results go, then failed on it
    assert code == 2 and "--cache: " in said and "choose outputs apart" in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["support"]
    assert sorted(p.name for p in support.iterdir()) == ["a", "b"]


def test_a_class_folder_that_is_a_link_is_named_as_a_link_not_as_empty(tmp_path):
    photos(tmp_path / "elsewhere", {"c": 2})
    support = photos(tmp_path / "support", {"a": 1})
    (support / "c").symlink_to(tmp_path / "elsewhere" / "c", target_is_directory=True)
    code, said = invoke("classify", "--support", support, "--query", support, "--backbone", "pixels:8",
                        "--out", tmp_path / "o.csv", "--no-cache")
    # Before: "support/c: class folder without images", where two images are.
    assert code == 2 and f"{support / 'c'}: a link to a folder" in said and "without images" not in said, said


def test_a_query_folder_holding_a_link_to_a_class_folder_is_refused_not_evaluated_without_it(tmp_path):
    support = photos(tmp_path / "support", {"a": 1, "b": 1})
    query = photos(tmp_path / "query", {"a": 2})
    (query / "b").symlink_to(support / "b", target_is_directory=True)
    code, said = invoke("eval", "--support", support, "--query", query, "--backbone", "pixels:8", "--shots", "1",
                        "--out", tmp_path / "res", "--no-cache")
    # Before: evaluated on class a alone, the linked folder's queries left out without a word.
    assert code == 2 and f"{query / 'b'}: a link to a folder" in said, said
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("command", ["classify", "label"])
def test_an_empty_query_or_predictions_file_is_refused_and_nothing_written(tmp_path, command):
    support = photos(tmp_path / "support", {"线缆": 1})
    empty = tmp_path / "pred.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    given = ["--query", empty] if command == "classify" else ["--predictions", empty]
    out = tmp_path / ("o.csv" if command == "classify" else "o.jsonl")
    code, said = invoke(command, "--support", support, *given, "--backbone", "pixels:8", "--out", out, "--no-cache")
    # Before: exit 0 and an empty result (no rows, or a dataset of no photos), where an empty folder is refused.
    assert code == 2 and f"{empty}: holds no lines: nothing to classify" in said, said
    assert not out.exists()


@pytest.mark.parametrize("side", ["1", "257", "100000"])
def test_a_pixel_backbone_too_small_or_too_large_to_hold_is_a_clean_error(tmp_path, side):
    support = photos(tmp_path / "support", {"a": 1})
    code, said = invoke("classify", "--support", support, "--query", support, "--backbone", f"pixels:{side}",
                        "--out", tmp_path / "o.csv", "--no-cache")
    # Before: pixels:100000 was numpy's traceback, 'Unable to allocate 1006. GiB'.
    assert code == 2 and f"pixel backbone side must be 2 to 256, got {side}" in said, said
    assert not (tmp_path / "o.csv").exists()


def test_one_photo_in_two_support_classes_is_a_warning_naming_both_files(tmp_path):
    support = photos(tmp_path / "support", {"a": 2, "b": 2})
    (support / "b" / "copy of a0.png").write_bytes((support / "a" / "0.png").read_bytes())
    r = CliRunner().invoke(app, ["classify", "--support", str(support), "--query", str(support / "a"), "--backbone",
                                 "pixels:8", "--out", str(tmp_path / "o.csv"), "--no-cache"], env={"COLUMNS": "400"})
    # Before: classified with the photo pulling 'a' and 'b' together, not a word said.
    assert r.exit_code == 0, r.output
    assert (f"one photo is a support image of 2 classes: 'a' ({support / 'a' / '0.png'}), "
            f"'b' ({support / 'b' / 'copy of a0.png'}); keep it in the class it shows") in r.output
    (support / "b" / "copy of a0.png").unlink()
    r = CliRunner().invoke(app, ["classify", "--support", str(support), "--query", str(support / "a"), "--backbone",
                                 "pixels:8", "--out", str(tmp_path / "o.csv"), "--no-cache"], env={"COLUMNS": "400"})
    assert r.exit_code == 0 and "support image of 2 classes" not in r.output, r.output


def test_a_tiny_backbone_side_past_1024_is_a_usage_error_before_anything_is_built(tmp_path):
    code, said = invoke("tiny-backbone", "clip", tmp_path / "bb", "--image-size", "100000")
    # Before: torch's 'DefaultCPUAllocator: can't allocate memory: you tried to allocate 240000000000 bytes' traceback.
    assert code == 2 and "must be a whole number in [8, 1024], got 100000" in said, said
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_on_queries_that_are_support_photos_warns_its_numbers_are_inflated(tmp_path):
    support = photos(tmp_path / "support", {"a": 2, "b": 2})
    query = photos(tmp_path / "query", {"a": 1})  # the same bytes as support/a/0.png
    Image.new("RGB", (12, 10), (1, 2, 3)).save(query / "a" / "new.png")
    code, said = invoke("eval", "--support", support, "--query", query, "--backbone", "pixels:8", "--shots", "1",
                        "--thresholds", "0.5", "--out", tmp_path / "res", "--no-cache")
    # Before: accuracy reported as if the queries were new photos, not a word said.
    assert code == 0, said
    assert f"1 of 2 queries are support photos themselves (the same bytes; the first: {query / 'a' / '0.png'})" in said
    summary = json.loads((tmp_path / "res" / "summary.json").read_text(encoding="utf-8"))
    assert any("support photos themselves" in w for w in summary["warnings"])


def test_classify_whose_every_query_is_unreadable_is_an_error_naming_the_first_and_writes_nothing(tmp_path):
    support = photos(tmp_path / "support", {"a": 1})
    (tmp_path / "query").mkdir()
    (tmp_path / "query" / "x.png").write_text("not a picture", encoding="utf-8")
    code, said = invoke("classify", "--support", support, "--query", tmp_path / "query", "--backbone", "pixels:8",
                        "--out", tmp_path / "o.csv", "--no-cache")
    # Before: exit 0 and a CSV of no rows, the photo listed as skipped above the table.
    assert code == 2 and f"{tmp_path / 'query'}: no query could be classified (1 problem(s), the first: " \
                         f"{tmp_path / 'query' / 'x.png'}: not an image" in said, said
    assert not (tmp_path / "o.csv").exists()


def test_a_class_folder_named_with_a_control_character_is_refused_naming_it(tmp_path):
    support = photos(tmp_path / "support", {"a": 1, "b\x1b[31mred": 1})
    code, said = invoke("classify", "--support", support, "--query", support / "a", "--backbone", "pixels:8",
                        "--out", tmp_path / "o.csv", "--no-cache")
    # Before: the ESC went into every answer, table and CSV row of that class.
    assert code == 2 and "the class folder's label 'b\\x1b[31mred' holds control characters ('\\x1b')" in said, said
    assert not (tmp_path / "o.csv").exists()


def test_an_option_typed_where_it_does_nothing_is_refused_before_anything_is_embedded(tmp_path):
    # Each was ignored without a word, and the results looked like its: --seed with every support image used, a
    # margin on whole photos, a detection score floor with no detections, a cache folder under --no-cache.
    support = photos(tmp_path / "support", {"a": 3, "b": 3})
    query = photos(tmp_path / "query", {"a": 1})
    record = {"images": ["query/a/0.png"], "width": 12, "height": 10, "objects": [{"bbox_2d": [0, 0, 6, 5], "desc": "a"}]}
    (tmp_path / "val.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    common = ("--support", support, "--backbone", "pixels:8")
    cases = [
        (["classify", "--query", query, "--out", tmp_path / "o.csv", "--seed", "3"], "--seed applies only with --shots K"),
        (["classify", "--query", query, "--out", tmp_path / "o.csv", "--margin", "0.2"],
         "--margin applies only with a dataset or predictions JSONL as --query"),
        (["classify", "--query", query / "a" / "0.png", "--out", tmp_path / "o.csv", "--margin", "0.2"],
         "--margin applies only with a dataset or predictions JSONL as --query"),
        (["classify", "--query", tmp_path / "val.jsonl", "--out", tmp_path / "o.csv", "--min-score", "0.5"],
         "--min-score applies only with a predictions JSONL as --query"),
        (["classify", "--query", query, "--out", tmp_path / "o.csv", "--cache", tmp_path / "c", "--no-cache"],
         f"--cache {tmp_path / 'c'} and --no-cache contradict each other"),
        (["eval", "--query", query, "--out", tmp_path / "res", "--margin", "0.2", "--no-cache"],
         "--margin applies only with a dataset or predictions JSONL as --query"),
        (["eval", "--query", query, "--out", tmp_path / "res", "--shots", "all", "--seed", "3", "--no-cache"],
         "--seed applies only with --shots K"),
        (["label", "--predictions", tmp_path / "val.jsonl", "--out", tmp_path / "l.jsonl", "--seed", "3", "--no-cache"],
         "--seed applies only with --shots K"),
    ]
    for args, said_needed in cases:
        code, said = invoke(*args, *common)
        assert code == 2 and said_needed in said, (args, said)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["query", "support", "val.jsonl"]
    # Where they apply, they are taken
    code, said = invoke("classify", "--query", tmp_path / "val.jsonl", "--out", tmp_path / "o.csv", "--margin", "0.2",
                        "--shots", "2", "--seed", "3", "--no-cache", *common)
    assert code == 0 and (tmp_path / "o.csv").read_text(encoding="utf-8").count("\n") == 2, said


def test_shot_counts_that_draw_the_same_support_are_evaluated_once_and_too_many_are_refused(tmp_path):
    # `--shots 1,...,20000` on classes of two photos each evaluated the same support 19,999 times (hours, then a table
    # of identical columns); shots past every class's size are the draw of `all`
    support = photos(tmp_path / "support", {"a": 2, "b": 2})
    query = photos(tmp_path / "query", {"a": 1, "b": 1})
    common = ("--support", support, "--query", query, "--backbone", "pixels:8", "--thresholds", "0.5", "--no-cache")
    start = time.perf_counter()
    code, said = invoke("eval", *common, "--out", tmp_path / "many", "--shots", ",".join(map(str, range(1, 20001))))
    assert code == 2 and "--shots lists 20,000 shot counts, more than 100" in said, said
    assert time.perf_counter() - start < 10 and not (tmp_path / "many").exists()
    code, said = invoke("eval", *common, "--out", tmp_path / "res", "--shots", "1,2,3,5,all")
    assert code == 0, said
    summary = json.loads((tmp_path / "res" / "summary.json").read_text(encoding="utf-8"))
    assert list(summary["accuracy_table"]) == ["1", "2"]
    assert "shots=3, 5, all draw the support images of shots=2 (no class has more): evaluated once, as shots=2" in \
        summary["warnings"]


def test_support_and_query_files_that_are_no_photo_type_are_counted_not_dropped_without_a_word(tmp_path):
    # A class of 3 photos and 2 .heic from a phone was fitted on 3 without saying so; queries the same.
    support = photos(tmp_path / "support", {"a": 3, "b": 2})
    query = photos(tmp_path / "query", {"a": 1})
    for heic in (support / "a" / "IMG_1.heic", support / "a" / "IMG_2.HEIC", query / "a" / "IMG_3.heic"):
        heic.write_bytes(b"\0\0\0\x18ftypheic")
    (support / "notes.txt").write_text("shot on site 3", encoding="utf-8")
    code, said = invoke("classify", "--support", support, "--query", query, "--backbone", "pixels:8",
                        "--out", tmp_path / "o.csv", "--no-cache")
    assert code == 0, said
    assert f"3 files in {support} are not read as photos (.heic 2, .txt 1)" in said, said
    assert f"1 file in {query} is not read as photos (.heic 1)" in said, said
    only = tmp_path / "only_heic"
    only.mkdir()
    (only / "IMG_4.heic").write_bytes(b"\0")
    code, said = invoke("classify", "--support", support, "--query", only, "--backbone", "pixels:8",
                        "--out", tmp_path / "o2.csv", "--no-cache")
    assert code == 2 and "no query images in this folder (searched recursively; it holds .heic 1)" in said, said


def test_tiny_backbone_overwrite_replaces_only_a_folder_it_wrote_never_someone_elses(tmp_path):
    # Before: `fewshot tiny-backbone clip OUT --overwrite` replaced the whole folder OUT, whatever it held.
    mine = tmp_path / "real-backbone"
    mine.mkdir()
    (mine / "model.safetensors").write_bytes(b"someone's real weights")
    code, said = invoke("tiny-backbone", "clip", mine, "--overwrite")
    assert code != 0
    assert "model.safetensors" in said and "would delete it" in said, said
    assert (mine / "model.safetensors").read_bytes() == b"someone's real weights"
    own = tmp_path / "tiny"
    assert invoke("tiny-backbone", "clip", own)[0] == 0
    assert invoke("tiny-backbone", "clip", own, "--overwrite", "--seed", "1")[0] == 0  # its own: replaced


@pytest.mark.parametrize("command", ["classify", "eval"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_unreadable_support_photo_is_named_and_left_out_of_every_seeds_draw(tmp_path, command):
    support = photos(tmp_path / "support", {"a": 3, "b": 2})
    (support / "a" / "1.png").write_text("not a photo")
    query = photos(tmp_path / "query", {"a": 1, "b": 1})
    outcomes = set()
    # Both commands draw the support through one fit_support: classify runs every seed; eval, whose every run also
    # draws its tables and plots (~1 s), the seed that drew the unreadable photo before (3) and one that did not (0)
    for seed in range(8) if command == "classify" else (0, 3):
        out = tmp_path / (f"o{seed}.csv" if command == "classify" else f"o{seed}")
        code, said = invoke(command, "--support", support, "--query", query, "--backbone", "pixels:8",
                            "--out", out, "--shots", "1", "--seed", seed, "--no-cache")
        outcomes.add(code)
        # Before: seed 3 drew the unreadable photo and failed, 'class 'a' has no readable support image for
        # shots=1'; every other seed passed without a word of it.
        assert code == 0 and f"{support / 'a' / '1.png'}: not an image" in said, (seed, said)
    assert outcomes == {0}


def test_a_class_whose_every_support_photo_is_unreadable_is_refused_by_every_seed_naming_them(tmp_path):
    support = photos(tmp_path / "support", {"a": 2, "b": 2})
    for i in range(2):
        (support / "a" / f"{i}.png").write_text(f"not a photo {i}")
    for seed in range(3):
        code, said = invoke("classify", "--support", support, "--query", support / "b", "--backbone", "pixels:8",
                            "--out", tmp_path / "o.csv", "--shots", "1", "--seed", seed, "--no-cache")
        assert code == 2 and "class 'a' has no readable support image (2 found)" in said, said
        assert f"{support / 'a' / '0.png'}: not an image" in said and f"{support / 'a' / '1.png'}" in said, said
        assert not (tmp_path / "o.csv").exists()
