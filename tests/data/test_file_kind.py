"""file_kind: what a path is, named once for every command that refuses a path that is no regular file."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from bbuvl.data.input_paths import file_kind


def test_each_kind_of_path_is_named(tmp_path: Path) -> None:
    regular = tmp_path / "a.jsonl"
    regular.write_text("{}\n", encoding="utf-8")
    (tmp_path / "link").symlink_to(regular)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    os.mkfifo(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        kinds = {name: file_kind(tmp_path / name) for name in ("a.jsonl", "link", "dangling", "loop_a", "pipe", "sock")}
    assert kinds == {"a.jsonl": None, "link": None, "dangling": "a link that reaches no file",
                     "loop_a": "a link that reaches no file", "pipe": "a FIFO (named pipe)", "sock": "a socket"}
    assert file_kind(tmp_path) == "a folder"
    assert file_kind(tmp_path / "missing.jsonl") == "no such file"
    assert file_kind(Path("/dev/null")) == "a device"
    # names no file can have are missing, not a crash
    assert file_kind(tmp_path / ("x" * 5000)) == "no such file"
    assert file_kind(Path("a\0b")) == "no such file"
