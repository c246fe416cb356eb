"""API keys: read from a file or the environment (never the command line), held only as SHA-256 digests.

A request carries its key as `Authorization: Bearer KEY` (API clients) or as HTTP Basic credentials with the
key as the password and any user name (`Basic base64(USER:KEY)`): the credentials a browser asks for itself
and keeps in memory when a page answers 401 with a Basic challenge (docs/serving.md, "Authentication and logs").
A request's key is hashed and compared with every stored digest by `hmac.compare_digest`, with no early exit,
so the answer time says nothing about how much of a key was right, nor which key matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path

ENV_VAR = "BBUVL_API_KEYS"
MIN_KEY_LENGTH = 16
BOM = "\ufeff"  # a byte-order mark: Windows editors start a file with one, `cat` puts one mid-file


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyStore:
    """The digests of the accepted API keys."""

    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError(f"no API key: put one per line in --api-key-file FILE or set {ENV_VAR}=KEY1,KEY2")
        short = [i + 1 for i, k in enumerate(keys) if len(k) < MIN_KEY_LENGTH]
        if short:
            which = (f"API key number {short[0]} is" if len(short) == 1
                     else f"API keys number {', '.join(map(str, short[:-1]))} and {short[-1]} are")
            raise ValueError(f"{which} shorter than {MIN_KEY_LENGTH} characters; "
                             "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        self._digests = [_digest(k) for k in dict.fromkeys(keys)]
        self.warnings: list[str] = []  # what `bbuvl serve` says at start about where the keys were read

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, authorization: str | None) -> bool:
        """True when `authorization` is `Bearer KEY` or `Basic base64(USER:KEY)` with a known KEY (constant time in the key)."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        scheme = scheme.lower()
        key = credentials.strip() if scheme == "bearer" else _basic_password(credentials) if scheme == "basic" else None
        given = _digest(key or "")  # hashed and compared even when there is no key: the same work either way
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(given, d)
        return ok and bool(key)


def _basic_password(credentials: str) -> str | None:
    """The password of Basic credentials (`base64(USER:PASSWORD)`, UTF-8 as RFC 7617's charset asks), None if malformed."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    _, colon, password = decoded.partition(":")
    # `echo "user:KEY" | base64` encodes a line end too; no key starts or ends with white space (read_keys strips
    # them), so it is stripped here as a Bearer key's is
    return password.strip() if colon else None


def read_keys(key_file: str | Path | None = None, environ: dict[str, str] | None = None) -> KeyStore:
    """Keys from `key_file` (one per line, blank lines and `#` comments skipped) and from $BBUVL_API_KEYS (commas).

    Editors add what no client sends: a byte-order mark (Notepad), CR line ends, UTF-16, trailing spaces. Each
    would make a key that never matches (every request a 401), so they are removed, and a key holding any other
    character a header cannot carry as typed (outside printable ASCII) is refused, naming the line.
    """
    environ = os.environ if environ is None else environ
    found: list[tuple[str, str]] = []  # each key and where it was read
    if key_file is not None:
        for no, line in enumerate(_key_lines(Path(key_file)), start=1):
            key = line.replace(BOM, "").strip()
            if key and not key.startswith("#"):
                found.append((_printable(key, f"{key_file}: line {no}"), f"{key_file}: line {no}"))
        if not found and not environ.get(ENV_VAR, "").strip():
            raise ValueError(f"{key_file}: holds no API key (only blank lines and # comments); put one key per line")
    listed = [k.strip() for k in environ.get(ENV_VAR, "").split(",") if k.strip()]
    found += [(_printable(k, f"${ENV_VAR}"), f"${ENV_VAR}: key {i}") for i, k in enumerate(listed, start=1)]
    # checked here rather than by KeyStore alone, which knows no file: a short key is named by its file and line
    short = [where for key, where in found if len(key) < MIN_KEY_LENGTH]
    if short:
        others = f" (as is the one of {', '.join(short[1:])})" if len(short) > 1 else ""
        raise ValueError(f"{short[0]}: the API key is shorter than {MIN_KEY_LENGTH} characters{others}; generate one "
                         "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    store = KeyStore([key for key, _ in found])
    if key_file is not None:
        store.warnings += _exposed(Path(key_file))
    return store


def _exposed(path: Path) -> list[str]:
    """A warning when users other than the file's owner may read the key file (as ssh warns of a private key)."""
    if os.name != "posix":  # Windows keeps access in ACLs, which st_mode does not show
        return []
    mode = path.stat().st_mode & 0o777
    groups = (("its group", 0o040, 0o020), ("every user", 0o004, 0o002))
    readers = [who for who, read, _ in groups if mode & read]
    writers = [who for who, _, write in groups if mode & write]
    # a key read by another account on the machine opens the API to it, and one that account writes in is taken at the
    # next start; the server still starts, as the file may sit in a folder only its owner can enter
    said = [f"read by {' and '.join(readers)}" if readers else "", f"changed by {' and '.join(writers)}" if writers else ""]
    if not readers and not writers:
        return []
    return [f"{path}: the API key file can be {' and '.join(w for w in said if w)} (mode {mode:o}): another user of "
            f"this machine could take the keys or add one; run chmod 600 {path}"]


def _key_lines(path: Path) -> list[str]:
    """The lines of a key file: UTF-8 (with or without a BOM) or UTF-16 with its BOM; any line end."""
    raw = path.read_bytes()
    encoding = "utf-16" if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return raw.decode(encoding).splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the key file as UTF-8") from None


def _printable(key: str, where: str) -> str:
    """`key` when every character is printable ASCII, else ValueError naming `where` and the first other character."""
    for i, ch in enumerate(key):
        if not (" " <= ch <= "~"):
            raise ValueError(f"{where}: the API key holds U+{ord(ch):04X} at character {i + 1}, which no client sends as "
                             "typed (an invisible or non-ASCII character pasted in?); keys are printable ASCII, "
                             "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return key
