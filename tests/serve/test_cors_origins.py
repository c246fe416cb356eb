"""`--cors-origin` is compared, as typed, with the Origin header a browser sends (`scheme://host[:port]`, lower case, no
path, no default port, a name in another script as punycode). A value no browser sends was accepted and allowed
nothing: every preflight from the page it was meant for was refused, with the server started as if CORS were on. It is
now a usage error naming what to type instead, before anything loads."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.serve.cors import origin_problem

NEVER_SENT = {
    "https://app.example.com/": "give https://app.example.com",
    "https://app.example.com/inspect": "give https://app.example.com",
    "HTTPS://App.Example.com": "give https://app.example.com",
    "https://app.example.com:443": "give https://app.example.com",
    "http://app.example.com:80": "give http://app.example.com",
    "https://user@app.example.com": "give https://app.example.com",
    "https://例子.cn": "give https://xn--fsqu00a.cn",
    "app.example.com": "is not an origin; give scheme://host[:port]",
    "ftp://app.example.com": "is not an origin; give scheme://host[:port]",
    "http://app.example.com:99999": "is not an origin (Port out of range",
}


@pytest.mark.parametrize("origin", sorted(NEVER_SENT))
def test_an_origin_no_browser_sends_is_refused_naming_the_one_to_give(origin, tmp_path):
    r = CliRunner().invoke(app, ["serve", "-c", str(tmp_path / "no-checkpoint"), "--cors-origin", "https://ok.example",
                                 "--cors-origin", origin], env={"COLUMNS": "400"})
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert f"'{origin}'" in text and NEVER_SENT[origin] in text, text
    assert "no-checkpoint" not in text  # refused as typed, before the checkpoint is looked at


@pytest.mark.parametrize("origin", ["https://app.example.com", "http://localhost:5173", "http://127.0.0.1:8000",
                                    "http://[::1]:3000", "https://xn--fsqu00a.cn", "*", "null"])
def test_an_origin_as_a_browser_sends_it_is_taken(origin):
    assert origin_problem(origin) is None
