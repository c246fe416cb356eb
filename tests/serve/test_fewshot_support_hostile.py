"""A served support folder treated roughly while the server runs: a link swapped to another folder, the folder moved
away and back, made unreadable, written by another bbuvl command, a class renamed, photos with odd names
(serve/support_watch.py)."""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.serve.test_fewshot_support_changes import WATCH, answer, crops, distinct, served, wait_for  # noqa: F401


@pytest.fixture()
def serve_support(engine, keys):
    """Call with a support folder (or a link to one) to get (client, rescorer) of a server checking it every 50 ms."""
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from bbuvl.serve.fewshot import FewShotRescorer
    from tests.serve.conftest import running

    with ExitStack() as stack:
        def start(folder: Path):
            rescorer = FewShotRescorer.load(folder, "pixels:8", -1.0, "cpu", watch_s=WATCH)
            stack.callback(rescorer.watcher.close)
            app = create_app(Engine(engine.predictor, "head", engine.checkpoint, rescorer), keys)
            return stack.enter_context(running(app)), rescorer

        yield start


def test_a_corrupt_photo_with_a_name_of_gbk_bytes_and_a_newline_leaves_every_answer_whole(served, photos, crops, caplog):
    client, rescorer, folder, _ = served
    label = crops[1][0]
    odd = os.fsencode(folder / label) + b"/\xc0\xe9\nhalf.png"
    with caplog.at_level(logging.WARNING, logger="bbuvl.serve"):
        Path(os.fsdecode(odd)).write_bytes(b"\x89PNG\r\n\x1a\n not whole")
        wait_for(rescorer, lambda s: s["stale"] is not None, "the corrupt photo was never noticed")
        got = client.detect_file(photos[0])
    # before: its name's bytes in `stale` made every answer a 500 (no JSON writer writes them)
    assert got.status == 200, got.body
    stale = got.json()["model"]["fewshot"]["stale"]
    assert "\\xc0\\xe9\\nhalf.png" in stale and got.json()["model"]["fewshot"]["version"] == 1
    said = [r.getMessage() for r in caplog.records if "not reloaded" in r.getMessage()]
    assert said and "\n" not in said[0]  # a name cannot forge a line of the server's log


def test_a_support_link_swapped_to_another_folder_serves_that_folders_classes(serve_support, photos, crops, tmp_path):
    root, classes = crops
    first, second = tmp_path / "v1", tmp_path / "v2"
    shutil.copytree(root / classes[0], first / classes[0])
    shutil.copytree(root / classes[2], second / classes[2])
    link = tmp_path / "support"
    link.symlink_to(first, target_is_directory=True)
    client, rescorer = serve_support(link)
    assert answer(client, photos[0])["info"]["classes"] == [classes[0]]
    (tmp_path / "next").symlink_to(second, target_is_directory=True)
    os.replace(tmp_path / "next", link)  # as `ln -sfn v2 support` swaps it: in one step
    wait_for(rescorer, lambda s: s["version"] == 2, "the swapped link still served the first folder")
    got = answer(client, photos[0])
    assert got["info"]["classes"] == [classes[2]] and got["info"]["stale"] is None
    assert got["labels"] == {classes[2]}


@pytest.mark.parametrize("away", ["moved", "deleted"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_support_folder_moved_away_or_deleted_keeps_its_set_served_until_it_is_back(served, photos, crops, tmp_path,
                                                                                      away):
    client, rescorer, folder, _ = served
    kept = tmp_path / "kept"
    if away == "moved":
        folder.rename(kept)
    else:
        shutil.copytree(folder, kept)
        shutil.rmtree(folder)
    wait_for(rescorer, lambda s: s["stale"] is not None, "the missing folder was never noticed")
    got = answer(client, photos[0])
    assert got["info"]["classes"] == sorted(crops[1][:2]) and got["labels"] <= set(crops[1][:2])
    assert f"{folder}: no such folder" in got["info"]["stale"]
    kept.rename(folder)  # back as it was (the very same files, when moved): the same version, no longer stale
    # before: a folder moved back listed as the last good listing did, and stayed stale for as long as it ran
    wait_for(rescorer, lambda s: s["stale"] is None, "the folder put back stayed stale")
    assert answer(client, photos[0])["info"]["version"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder whatever its mode")
def test_a_support_folder_made_unreadable_keeps_its_set_served(served, photos):
    client, rescorer, folder, _ = served
    folder.chmod(0)
    try:
        wait_for(rescorer, lambda s: s["stale"] is not None, "the unreadable folder was never noticed")
        got = answer(client, photos[0])
        assert got["info"]["version"] == 1 and str(folder) in got["info"]["stale"]
    finally:
        folder.chmod(0o755)
    wait_for(rescorer, lambda s: s["stale"] is None, "the folder readable again stayed stale")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_support_folder_another_bbuvl_command_writes_is_served_once_it_is_done(served, photos, crops):
    from tests.reliability.faults import held_elsewhere

    client, rescorer, folder, spare = served
    with held_elsewhere(folder, "fewshot label"):
        shutil.copytree(crops[0] / spare, folder / spare)
        wait_for(rescorer, lambda s: s["stale"] is not None, "the writer was never noticed")
        got = answer(client, photos[0])
        assert got["info"]["version"] == 1 and "`bbuvl fewshot label` (pid 4242) is writing it" in got["info"]["stale"]
    wait_for(rescorer, lambda s: s["version"] == 2, "the folder written was never served")
    assert answer(client, photos[0])["info"]["classes"] == sorted(crops[1])


def test_a_class_folder_renamed_is_served_under_its_new_name_without_embedding_again(served, photos, crops):
    client, rescorer, folder, _ = served
    old = rescorer.watcher.current.vectors
    (folder / crops[1][0]).rename(folder / "cable-renamed")
    wait_for(rescorer, lambda s: s["version"] == 2, "the renamed class was never served")
    got = answer(client, photos[0])
    assert "cable-renamed" in got["info"]["classes"] and crops[1][0] not in got["info"]["classes"]
    new = rescorer.watcher.current.vectors
    assert new.keys() == old.keys() and all(new[d] is old[d] for d in old)


def test_a_photo_copied_into_a_second_class_while_serving_is_said_in_the_log(served, crops, caplog):
    client, rescorer, folder, _ = served
    first, second = crops[1][:2]
    photo = sorted((folder / first).rglob("*.png"))[0]
    with caplog.at_level(logging.WARNING, logger="bbuvl.serve"):
        shutil.copy(photo, folder / second / "same-as-first.png")
        (folder / second / "site-7.heic").write_bytes(b"a phone's photo")
        wait_for(rescorer, lambda s: s["version"] == 2, "the copied photo was never served")
    said = " ".join(r.getMessage() for r in caplog.records)
    # before: said in a note at start only; added while serving, a class's score pulled towards the other, unsaid
    assert "one photo is a support image of 2 classes" in said and str(folder / second / "same-as-first.png") in said
    assert "1 file in" in said and ".heic" in said, said


def test_a_support_folder_given_relative_is_the_one_it_named_after_the_process_changes_folder(crops, tmp_path,
                                                                                             monkeypatch):
    from bbuvl.fewshot.backbones import load_backbone
    from bbuvl.serve.support_watch import SupportWatcher

    root, classes = crops
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copytree(root / classes[0], tmp_path / "a" / "support" / classes[0])
    shutil.copytree(root / classes[2], tmp_path / "b" / "support" / classes[2])
    monkeypatch.chdir(tmp_path / "a")
    watcher = SupportWatcher("support", load_backbone("pixels:8", "cpu"), watch_s=0)
    monkeypatch.chdir(tmp_path / "b")  # another folder holding a support folder of the same name
    # before: the next check read b/support and served its classes as a new version, without a word of why
    assert not watcher.check() and not watcher.check()
    assert watcher.status()["classes"] == {classes[0]: distinct(tmp_path / "a" / "support")}
    assert watcher.status()["stale"] is None and watcher.status()["version"] == 1


def test_a_support_folder_half_deleted_at_a_check_keeps_its_whole_set_as_the_last_good_one(crops, tmp_path):
    from bbuvl.fewshot.backbones import load_backbone
    from bbuvl.serve.support_watch import SupportWatcher

    root, classes = crops
    folder = tmp_path / "support"
    for label in classes[:2]:
        shutil.copytree(root / label, folder / label)
    watcher = SupportWatcher(folder, load_backbone("pixels:8", "cpu"), watch_s=0)
    whole = watcher.status()["classes"]
    for photo in sorted((folder / classes[0]).rglob("*.png"))[:2]:  # `rm -r support` half way at this check
        photo.unlink()
    assert not watcher.check()
    shutil.rmtree(folder)
    assert not watcher.check()
    # before: the check half way served what was left as version 2, the set kept once the folder was gone
    assert watcher.status()["classes"] == whole and watcher.status()["version"] == 1
    assert f"{folder}: no such folder" in watcher.status()["stale"]
