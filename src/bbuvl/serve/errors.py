"""The one error shape every route answers with: `{"error": {"kind": ..., "message": ...}}` and a 4xx/5xx status."""

from __future__ import annotations


class ApiError(Exception):
    """An expected failure of one request: its HTTP status, a stable machine-readable kind and a message for people."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}

    def body(self) -> dict[str, dict[str, str]]:
        """The JSON body."""
        return {"error": {"kind": self.kind, "message": self.message}}


def cut(text: str, limit: int = 80) -> str:
    """`text` (a client's value, as a message quotes it) cut to `limit` characters with its length said: a message
    names a 100 KB field by its start rather than echoing all of it."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
