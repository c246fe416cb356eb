"""The page's files (`/`, `/static/...`, `/font/cjk`) as Starlette serves them, but with a Range it cannot use ignored
and one past the file's end answered in the JSON error shape of errors.py (docs/serving.md, "The page")."""

from __future__ import annotations

import os
from typing import Any

import anyio
import anyio.to_thread

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Receive, Scope, Send

from bbuvl.serve.errors import ApiError, cut

# The page's own files' types by suffix, not from mimetypes, which reads the host's table: the Windows registry maps
# .js to text/plain on machines where an editor claimed it, and under nosniff (guard.py) a browser runs no script and
# applies no style served as text/plain, so the page stayed blank
PAGE_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


class RangedFile(FileResponse):
    """A file whose Range is served as Starlette serves it, ignored when malformed, and a JSON 416 past the end."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.stat_result is None:
            try:
                found = await anyio.to_thread.run_sync(os.stat, self.path)
            except (FileNotFoundError, NotADirectoryError):
                # removed since the route found it (a font uninstalled while the server runs): Starlette raised, a
                # JSON 500 with a traceback in the log
                raise ApiError(404, "not_found", f"'{cut(os.path.basename(self.path))}' is no longer on the "
                               "server") from None
            self.stat_result = found
            self.set_stat_headers(found)
        await super().__call__(scope, receive, send)

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            # Starlette answered a text 400 here; HTTP asks a server to ignore a Range in a unit it does not know, and
            # lets it ignore a malformed one: the whole file, 200, which every client can use
            return []
        except RangeNotSatisfiable as e:
            # raised inside the response, before anything is sent: the app's ApiError handler answers it
            raise ApiError(416, "range_not_satisfiable", f"the Range '{cut(http_range)}' asks for no byte within the "
                           f"file, which holds {e.max_size}", {"Content-Range": f"bytes */{e.max_size}"}) from None


class Static(StaticFiles):
    """Starlette's static files, each sent as a `RangedFile`, at its own path only."""

    def get_path(self, scope: Scope) -> str:
        """The file a path names; 404 when the path ends in '/' or holds an empty, '.' or '..' segment."""
        # Starlette normalises them away and served /static/app.js/ as app.js, where /readyz/ is a 404: one file had
        # many addresses, each a cache entry of its own, and a path's meaning depended on the route (docs/serving.md)
        if any(segment in ("", ".", "..") for segment in scope["path"].split("/")[1:]):
            raise HTTPException(404)
        return super().get_path(scope)

    def file_response(self, full_path: Any, stat_result: os.stat_result, scope: Scope, status_code: int = 200) -> Response:
        """The file at `full_path`, or 304 when the client's copy is current (as StaticFiles answers)."""
        response = RangedFile(full_path, status_code=status_code, stat_result=stat_result,
                              media_type=PAGE_TYPES.get(os.path.splitext(full_path)[1].lower()))
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response
