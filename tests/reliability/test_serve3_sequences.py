"""`bbuvl serve` in workflows: a second server started on the port a first one serves, and a checkpoint served by a
path relative to where the command runs."""

from __future__ import annotations

import shutil
import socket

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app as cli
from tests.serve.conftest import keys, photos  # noqa: F401 - the serving tests' fixtures


def test_a_second_serve_on_a_port_another_server_listens_on_is_refused_before_its_checkpoint_is_loaded(
        trained_checkpoint, tmp_path, monkeypatch):
    from bbuvl.serve.server import bind

    # A checkpoint whose weights cannot be loaded: the port's error only shows when it is checked before loading,
    # which with a real model takes minutes the second server spent only to learn its port was taken.
    ckpt = tmp_path / "final"
    shutil.copytree(trained_checkpoint, ckpt)
    weights = next(ckpt.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:64])
    monkeypatch.setenv("BBUVL_API_KEYS", "serve3-test-key-0123456789abcdef")
    first = bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        r = CliRunner().invoke(cli, ["serve", "-c", str(ckpt), "--port", str(port), "--device", "cpu"])
    finally:
        first.close()
    assert r.exit_code == 2, r.output  # a usage error (cli/common.py, user_errors)
    assert f"127.0.0.1:{port}: another server" in r.output and "--port" in r.output


def test_a_port_taken_between_bind_and_listen_is_named_as_another_servers():
    from bbuvl.serve.server import bind, start_listening

    ours = bind("127.0.0.1", 0, listen=False)  # bound while the checkpoint loads, refusing connections
    port = ours.getsockname()[1]
    with socket.socket() as other:
        # no client is queued on a server that cannot answer yet: a connection is refused, not left waiting
        try:
            other.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("a connection was taken before the server listens")
    theirs = bind("127.0.0.1", port)  # a second `bbuvl serve` that listened first
    try:
        try:
            start_listening(ours)
        except OSError as e:
            message = str(e)
        else:
            raise AssertionError("two servers listen on one port")
        assert f"127.0.0.1:{port}: another server" in message and "--port" in message
        assert ours.fileno() == -1  # closed: the port is not held by a server that will never serve
    finally:
        ours.close()
        theirs.close()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_served_as_dot_from_inside_it_is_named_by_its_folder_in_every_answer(
        trained_checkpoint, photos, keys, monkeypatch):
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from bbuvl.serve.names import served_name
    from tests.serve.conftest import running

    monkeypatch.chdir(trained_checkpoint)
    assert served_name(".") == served_name(f"../{trained_checkpoint.name}/") == trained_checkpoint.name
    monkeypatch.chdir(trained_checkpoint / "..")
    assert served_name(f"{trained_checkpoint.name}/..") == trained_checkpoint.parent.name
    monkeypatch.chdir(trained_checkpoint)
    with running(create_app(Engine.load(".", mode="head", device="cpu"), keys)) as client:
        reply = client.detect_file(photos[0])
    assert reply.status == 200, reply.body
    assert reply.json()["model"]["checkpoint"] == trained_checkpoint.name  # it was ''


def test_a_support_set_served_as_dot_from_inside_it_is_named_by_its_folder(small_dataset, tmp_path, monkeypatch):
    from bbuvl.fewshot.crops import write_crops
    from bbuvl.serve.fewshot import FewShotRescorer

    support = tmp_path / "support [site 2]"
    write_crops(small_dataset / "train.jsonl", support, per_class=2)
    monkeypatch.chdir(support)
    assert FewShotRescorer.load(".", "pixels:8", 0.6, "cpu").info()["support"] == "support [site 2]"  # it was ''
