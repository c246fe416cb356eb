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
