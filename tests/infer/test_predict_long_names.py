"""An --out name near or past the file system's limit: past it, predict failed on an OSError traceback ('File name too
long'); a few bytes short of it, the name was taken, the model loaded, and the run failed writing the manifest beside
it (OUT.predict.json, through a longer temporary name), with nothing predicted. Both are refused before anything
loads, naming the longest name that works, and that name works: predicted and resumed."""

from __future__ import annotations

import os
import re

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_name_without_room_for_the_manifest_is_refused_naming_the_longest_that_works(trained_checkpoint, small_dataset,
                                                                                        tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    argv = ["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "--mode", "head", "--device", "cpu"]
    longest = None
    for length in (limit + 45, limit - 10):  # past the limit; short of it, but the manifest's temporary name is not
        out = tmp_path / ("p" * (length - len(".jsonl")) + ".jsonl")
        text = refused(invoke([*argv, "-o", out]),
                       f"a name of {length} bytes, and writing {out.name}.predict.json beside it")
        assert "Loading weights" not in text and "Traceback" not in text
        longest = int(re.search(r"choose a name of at most (\d+) bytes", text).group(1))
    assert not [p for p in tmp_path.iterdir()]
    out = tmp_path / ("p" * (longest - len(".jsonl")) + ".jsonl")
    first = invoke([*argv, "-o", out])
    assert first.exit_code == 0, first.output
    again = invoke([*argv, "-o", out])
    assert again.exit_code == 0 and "2 already in" in " ".join(again.output.split()), again.output


def test_a_path_without_room_for_the_manifests_temporary_is_refused_naming_the_longest_path_that_works(tmp_path):
    # Only the name was checked: an --out whose manifest's temporary passed PATH_MAX (4096) was taken, the model
    # loaded, and the run failed with "File name too long", nothing predicted.
    from bbuvl.atomic import write_text_atomic
    from bbuvl.infer.output import OutputError, check_name_room, manifest_path

    room = os.pathconf(tmp_path, "PC_PATH_MAX") - 1
    folder = tmp_path
    while len(os.fsencode(str(folder / ("d" * 200)))) < room - 100:
        folder = folder / ("d" * 200)
    folder.mkdir(parents=True)
    depth = len(os.fsencode(str(folder))) + 1
    with pytest.raises(OutputError) as refusal:
        check_name_room(folder / ("p" * (room - depth - 11) + ".jsonl"))
    text = str(refusal.value)
    assert ".predict.json beside it takes a temporary at a path of" in text and f"past the {room} a path" in text, text
    longest = int(re.search(r"choose a path of at most (\d+) bytes from the root", text).group(1))
    out = folder / ("p" * (longest - depth - 6) + ".jsonl")
    check_name_room(out)
    with pytest.raises(OutputError):
        check_name_room(out.with_name("p" + out.name))
    write_text_atomic(manifest_path(out), "{}\n")  # what failed after the model had loaded
    assert manifest_path(out).read_text(encoding="utf-8") == "{}\n"
