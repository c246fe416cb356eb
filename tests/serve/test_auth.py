"""API keys: read from a file or the environment, held as digests, never taken from the command line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.serve.auth import ENV_VAR, KeyStore, read_keys

KEY_A, KEY_B = "a" * 20 + "-first-key", "b" * 20 + "-second-key"


def test_keys_come_from_the_file_and_the_environment(tmp_path):
    f = tmp_path / "keys.txt"
    f.write_text(f"# inspectors\n{KEY_A}\n\n", encoding="utf-8")
    store = read_keys(f, {ENV_VAR: f" {KEY_B} ,"})
    assert len(store) == 2
    assert store.accepts(f"Bearer {KEY_A}") and store.accepts(f"bearer {KEY_B}")
    assert not store.accepts(KEY_A) and not store.accepts(f"Basic {KEY_A}") and not store.accepts(None)
    assert not store.accepts(f"Bearer {KEY_A[:-1]}") and not store.accepts("Bearer ")


def test_the_store_holds_digests_not_keys():
    store = KeyStore([KEY_A])
    assert KEY_A not in repr(vars(store)) and KEY_A.encode() not in b"".join(store._digests)


def test_no_key_or_a_short_key_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(ValueError, match=ENV_VAR):
        read_keys(None, {})
    with pytest.raises(ValueError, match="shorter than 16"):
        read_keys(None, {ENV_VAR: "short"})


def test_serve_takes_no_key_option_and_will_not_start_without_a_key(tmp_path, monkeypatch):
    runner = CliRunner()
    help_text = runner.invoke(app, ["serve", "--help"]).output
    assert "--api-key-file" in help_text and "--api-key " not in help_text
    monkeypatch.delenv(ENV_VAR, raising=False)
    r = runner.invoke(app, ["serve", "-c", str(tmp_path)])
    assert r.exit_code == 2 and "no API key" in r.output
    r = runner.invoke(app, ["serve", "-c", str(tmp_path), "--api-key", KEY_A])
    assert r.exit_code == 2 and "No such option" in " ".join(r.output.split())
