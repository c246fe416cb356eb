"""API keys: read from a file or the environment, held as digests, never taken from the command line, and asked
for on every route but /healthz (Bearer for scripts, Basic for a browser opening the page)."""

from __future__ import annotations

import base64
import os
import re

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


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_credentials_carry_the_key_as_password_with_any_user_name():
    store = KeyStore([KEY_A, "钥匙" * 10])
    assert store.accepts(basic("inspector", KEY_A)) and store.accepts(basic("", KEY_A))
    assert store.accepts(basic("x", "钥匙" * 10))  # UTF-8, as the page's challenge (charset="UTF-8") asks browsers
    assert not store.accepts(basic("a:b", KEY_A))  # the user name ends at the first colon: the password is "b:KEY"
    assert not store.accepts(basic(KEY_A, "")) and not store.accepts(basic(KEY_A, "wrong-password-0123456789"))
    no_colon = "Basic " + base64.b64encode(KEY_A.encode()).decode()
    assert not store.accepts(no_colon) and not store.accepts("Basic !!!not-base64!!!") and not store.accepts("Basic ")
    assert not store.accepts(f"Token {KEY_A}") and not store.accepts(basic("x", KEY_A).replace("Basic", "Bearer"))


def test_the_store_holds_digests_not_keys():
    store = KeyStore([KEY_A])
    assert KEY_A not in repr(vars(store)) and KEY_A.encode() not in b"".join(store._digests)


def test_no_key_or_a_short_key_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(ValueError, match=ENV_VAR):
        read_keys(None, {})
    with pytest.raises(ValueError, match=r"^\$BBUVL_API_KEYS: key 1: the API key is shorter than 16"):
        read_keys(None, {ENV_VAR: "short"})
    with pytest.raises(ValueError, match=r"key 1: the API key is shorter than 16 characters \(as is the one of "
                                         r"\$BBUVL_API_KEYS: key 3\)"):
        read_keys(None, {ENV_VAR: "abc," + "x" * 16 + ",def"})


def test_a_short_key_in_the_key_file_is_named_by_its_file_and_line(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# the team's keys\n" + "k" * 32 + "\n\nshort-key\n", encoding="utf-8")
    # before: "API key number 2 is shorter than 16 characters", naming neither the file nor the line
    with pytest.raises(ValueError, match=f"^{re.escape(str(keys))}: line 4: the API key is shorter than 16"):
        read_keys(keys, {})


def test_serve_takes_no_key_option_and_will_not_start_without_a_key(tmp_path, monkeypatch):
    runner = CliRunner()
    help_text = runner.invoke(app, ["serve", "--help"]).output
    assert "--api-key-file" in help_text and "--api-key " not in help_text
    monkeypatch.delenv(ENV_VAR, raising=False)
    r = runner.invoke(app, ["serve", "-c", str(tmp_path)])
    assert r.exit_code == 2 and "no API key" in r.output
    r = runner.invoke(app, ["serve", "-c", str(tmp_path), "--api-key", KEY_A])
    assert r.exit_code == 2 and "No such option" in " ".join(r.output.split())


# Every route the app registers, with a method it answers; an unknown path and a wrong method on a known one too.
ROUTES = [("GET", "/"), ("GET", "/static/app.js"), ("GET", "/static/style.css"), ("GET", "/static/no-such-file.js"),
          ("GET", "/font/cjk"), ("GET", "/metrics"), ("GET", "/readyz"), ("POST", "/v1/detect"),
          ("POST", "/v1/chat/completions"), ("GET", "/v1/detect"), ("GET", "/no/such/route"), ("POST", "/healthz/x")]


def test_the_list_above_covers_every_route_the_app_registers(engine, keys):
    from bbuvl.serve.app import create_app

    registered = {getattr(r, "path", None) for r in create_app(engine, keys).routes}
    tested = {path.rsplit("/", 1)[0] if path.startswith("/static/") else path for _, path in ROUTES} | {"/healthz"}
    assert registered <= tested, registered - tested


def test_every_route_but_healthz_answers_401_without_the_right_key(serve):
    client = serve()
    wrong = [
        ("no key", {}),
        ("wrong key", {"Authorization": "Bearer wrong-key-of-the-same-size-01234"}),
        ("empty key", {"Authorization": "Bearer "}),
        ("wrong Basic password", {"Authorization": basic("inspector", "wrong-key-of-the-same-size-01234")}),
        ("the key as the Basic user name", {"Authorization": basic(client.key, "")}),
        ("Basic without base64", {"Authorization": f"Basic {client.key}"}),
        ("wrong scheme", {"Authorization": f"Token {client.key}"}),
        ("no scheme", {"Authorization": client.key}),
        ("the key in the query", {}),
    ]
    for method, path in ROUTES:
        for case, headers in wrong:
            target = path + (f"?api_key={client.key}&key={client.key}" if case == "the key in the query" else "")
            r = client.request(method, target, b"{}", {"Content-Type": "application/json", **headers}, key=False)
            assert r.status == 401, (method, path, case)
            assert r.json()["error"]["kind"] == "unauthorized"
            message = r.json()["error"]["message"]
            # a key in the address was answered as no key at all before, as if it had not been sent
            assert ("'?api_key=') is not read" in message) == (case == "the key in the query"), (case, message)
            assert client.key not in message
            page = path in ("/", "/font/cjk") or path.startswith("/static/")
            # The page's routes challenge a browser to ask for the key itself; the API tells a script to send Bearer.
            assert r.headers["www-authenticate"] == ('Basic realm="bbu-vl", charset="UTF-8"' if page else "Bearer"), path
    for headers in ({}, {"Authorization": "Bearer wrong-key-of-the-same-size-01234"}):
        r = client.request("GET", "/healthz", headers=headers, key=False)
        assert r.status == 200 and r.json() == {"status": "alive"}


def test_the_right_key_as_bearer_or_basic_opens_every_route(serve, photos):
    from tests.serve.client import multipart

    client = serve()
    upload, ctype = multipart("image", photos[0].name, photos[0].read_bytes())
    with_basic = {"Authorization": basic("inspector", client.key)}
    for headers, key in (({}, True), (with_basic, False)):
        page = client.request("GET", "/", headers=headers, key=key)
        assert page.status == 200 and b"/static/app.js" in page.body
        assert client.request("GET", "/static/app.js", headers=headers, key=key).status == 200
        assert client.request("GET", "/font/cjk", headers=headers, key=key).status in (200, 404)  # 404: no CJK font here
        assert client.request("GET", "/readyz", headers=headers, key=key).status == 200
        assert client.request("GET", "/metrics", headers=headers, key=key).status == 200
        assert client.request("GET", "/no/such/route", headers=headers, key=key).status == 404
        detect = client.request("POST", "/v1/detect", upload, {"Content-Type": ctype, **headers}, key=key)
        assert detect.status == 200 and detect.json()["objects"]


def test_basic_credentials_encoded_with_echos_line_end_open_the_api(serve):
    client = serve()
    encoded = base64.b64encode(f"inspector:{client.key}\n".encode()).decode()  # what `echo "inspector:KEY" | base64` gives
    r = client.request("GET", "/readyz", headers={"Authorization": f"Basic {encoded}"}, key=False)
    assert r.status == 200, r.body  # 401 "wrong API key" before, while the same key as Bearer with a space was taken
    wrong = base64.b64encode(b"inspector:not-the-key-0123456789abc\n").decode()
    assert client.request("GET", "/readyz", headers={"Authorization": f"Basic {wrong}"}, key=False).status == 401


def test_a_path_holding_a_line_end_or_escape_cannot_forge_a_log_line(serve, caplog):
    import logging
    import time

    client = serve()
    forged = "127.0.0.1 POST /v1/detect 200 1.0 ms"
    with caplog.at_level(logging.INFO, logger="bbuvl.serve"):
        r = client.request("GET", "/x%0a" + forged.replace(" ", "%20") + "%1b%5b31m" + "y" * 1000, key=False)
        assert r.status == 401
        deadline = time.monotonic() + 5  # the line is logged once the answer is sent
        while not (lines := [rec.getMessage() for rec in caplog.records if rec.name == "bbuvl.serve"
                             and " 401 " in rec.getMessage()]) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(lines) == 1, lines
    # a second line of the log reading as a served detection, and a raw ESC, before
    assert "\n" not in lines[0] and "\x1b" not in lines[0] and "\\n127.0.0.1%20POST" in lines[0] and "\\x1b" in lines[0]
    assert len(lines[0]) < 500 and "characters)" in lines[0], lines[0]


def test_a_forwarded_address_or_a_path_with_spaces_cannot_forge_the_fields_of_a_log_line(serve, caplog):
    import logging
    import time

    client = serve()
    forged = "6.6.6.6 POST /v1/detect 200 1.0 ms -"
    with caplog.at_level(logging.INFO, logger="bbuvl.serve"):
        # uvicorn takes the client's address from X-Forwarded-For when the connection comes from this machine
        assert client.request("GET", "/healthz", headers={"X-Forwarded-For": forged}).status == 200
        assert client.request("GET", "/healthz", headers={"X-Forwarded-For": "10.1.2.3"}).status == 200
        assert client.request("GET", "/x%20200%201.0%20ms", key=False).status == 401
        deadline = time.monotonic() + 5  # each line is logged once its answer is sent
        while len(lines := [rec.getMessage() for rec in caplog.records if rec.name == "bbuvl.serve"
                            and (" 200 " in rec.getMessage() or " 401 " in rec.getMessage())]) < 3:
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)
    # before: "6.6.6.6 POST /v1/detect 200 1.0 ms - GET /healthz 200 0.4 ms" and "127.0.0.1 GET /x 200 1.0 ms 401 0.3 ms"
    fields = [line.split() for line in lines]
    assert [f[1:4] for f in fields] == [["GET", "/healthz", "200"], ["GET", "/healthz", "200"],
                                        ["GET", "/x%20200%201.0%20ms", "401"]], lines
    assert all(len(f) == 6 for f in fields), lines
    assert fields[0][0] == "forwarded:6.6.6.6%20POST%20%2Fv1%2Fdetect%20200%201.0%20ms%20-", lines
    assert fields[1][0] == "10.1.2.3" and fields[2][0] == "127.0.0.1", lines


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX's")
@pytest.mark.parametrize("mode,who", [(0o644, "read by its group and every user"), (0o640, "read by its group"),
                                      (0o604, "read by every user"), (0o622, "changed by its group and every user"),
                                      (0o666, "read by its group and every user and changed by its group and every user")])
def test_a_key_file_others_can_read_or_change_is_warned_about_naming_it_and_what_to_do(tmp_path, mode, who):
    # none before: a key file left at the umask's 644 let every account on the machine read the keys, and one at 666
    # let any account add a key of its own for the next start, without a word
    keys = tmp_path / "keys.txt"
    keys.write_text(KEY_A + "\n", encoding="utf-8")
    keys.chmod(mode)
    store = read_keys(keys, {})
    assert store.warnings == [f"{keys}: the API key file can be {who} (mode {mode:o}): another user of this machine "
                              f"could take the keys or add one; run chmod 600 {keys}"]
    assert KEY_A not in store.warnings[0]
    keys.chmod(0o600)
    assert read_keys(keys, {}).warnings == []
    assert read_keys(None, {ENV_VAR: KEY_A}).warnings == []


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX's")
def test_bbuvl_serve_prints_the_key_files_warning_before_anything_else_can_stop_it(tmp_path):
    keys = tmp_path / "keys [team].txt"  # a name Rich would read as markup
    keys.write_text(KEY_A + "\n", encoding="utf-8")
    keys.chmod(0o644)
    r = CliRunner().invoke(app, ["serve", "-c", str(tmp_path / "no-such-run"), "--api-key-file", str(keys)])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and f"warning: {keys}: the API key file can be read" in text, r.output
    assert text.index("warning:") < text.index("no-such-run") and KEY_A not in r.output
