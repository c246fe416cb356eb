"""The page's files keep their types whatever the host's MIME table says (docs/serving.md, "The page")."""

from __future__ import annotations

import mimetypes

import pytest


@pytest.fixture()
def host_table_saying_text_plain():
    """A host whose MIME table maps .js and .css to text/plain, as the Windows registry does where an editor claimed
    them: mimetypes reads it into the table Starlette asks."""
    was = {suffix: mimetypes.guess_type("x" + suffix)[0] for suffix in (".js", ".css")}
    for suffix in was:
        mimetypes.add_type("text/plain", suffix)
    yield
    for suffix, kind in was.items():
        mimetypes.add_type(kind, suffix)


@pytest.mark.parametrize("path,kind", [("/static/app.js", "text/javascript; charset=utf-8"),
                                       ("/static/style.css", "text/css; charset=utf-8")])
def test_the_pages_script_and_style_are_served_as_such_whatever_the_hosts_table_says(host_table_saying_text_plain,
                                                                                     serve, path, kind):
    # under nosniff a browser neither runs a script nor applies a style served as text/plain: the page stayed blank
    r = serve().request("GET", path)
    assert r.status == 200 and r.headers["content-type"] == kind
