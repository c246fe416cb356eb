"""A small HTTP client over the standard library (real sockets, no test transport), for the serving tests."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Reply:
    """Status, headers (lower-case names) and body of one response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` over a raw socket to the server on `port` and read its answer until it closes (or resets) the
    connection: requests no client library would send."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except ConnectionResetError:
            return b""
        return read_to_close(s)


def read_to_close(s: socket.socket) -> bytes:
    """What the server sends on `s` until it closes (or resets) the connection."""
    answer = b""
    try:
        while chunk := s.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def multipart(field: str, filename: str, data: bytes, content_type: str = "image/png") -> tuple[bytes, str]:
    """A multipart/form-data body with one file part, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class Client:
    """Requests to one server, with its API key unless told otherwise."""

    host: str
    port: int
    key: str | None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                key: str | None | bool = True, timeout: float = 60) -> Reply:
        """One request on a fresh connection; `key=False` sends no Authorization, a string sends that key."""
        h = dict(headers or {})
        token = self.key if key is True else key or None
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def detect_file(self, path: Path, **kw: Any) -> Reply:
        """POST /v1/detect with the file as a multipart upload."""
        body, ctype = multipart("image", Path(path).name, Path(path).read_bytes())
        return self.request("POST", "/v1/detect", body, {"Content-Type": ctype}, **kw)

    def detect_json(self, data: bytes, **kw: Any) -> Reply:
        """POST /v1/detect with `{"image": base64}`."""
        body = json.dumps({"image": base64.b64encode(data).decode()}).encode()
        return self.request("POST", "/v1/detect", body, {"Content-Type": "application/json"}, **kw)
