"""On-disk embedding cache: a second run over the same crops embeds nothing.

An entry's key is a hash of (file content, backbone key, crop box, margin, device kind, library versions): renaming or
moving a photo keeps its entries, editing its pixels, changing the backbone's weights or preprocessing, embedding on
another kind of device (cpu, cuda) or after an upgrade of torch, transformers, tokenizers or Pillow misses them. Entries
live in one SQLite file (a single file, safe to share between processes, no thousands of tiny files).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

CACHE_FILE = "embeddings.sqlite"
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """`$BBUVL_CACHE/fewshot`, or `~/.cache/bbuvl/fewshot`."""
    root = os.environ.get("BBUVL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bbuvl"
    return Path(root) / "fewshot"


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (raises OSError when it cannot be read)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class DigestMemo:
    """File digests remembered for the last `size` paths: crops of one photo come in a row, so it is hashed once."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._memo: OrderedDict[str, str] = OrderedDict()

    def __call__(self, path: str | Path) -> str:
        """The digest of `path`, hashing the file only when it is not remembered."""
        k = str(path)
        if k in self._memo:
            self._memo.move_to_end(k)
            return self._memo[k]
        digest = self._memo[k] = file_digest(path)
        if len(self._memo) > self.size:
            self._memo.popitem(last=False)
        return digest


def device_kind(device: object) -> str:
    """The kind of device a backbone embeds on ("cpu", "cuda", ...), from a torch device or its name; "cpu" for None."""
    return "cpu" if device is None else str(getattr(device, "type", device)).split(":")[0]


def libraries() -> str:
    """The libraries that compute a vector, with their versions as installed (torch, transformers, tokenizers, Pillow:
    bbuvl/versions.py), as one text: what an entry was embedded by."""
    from bbuvl.versions import LIBRARIES, software

    return ",".join(f"{name}={version}" for name, version in software().items() if name in LIBRARIES)


def entry_key(backbone_key: str, digest: str, box: Sequence[float] | None, margin: float, device: str = "cpu",
              by: str | None = None) -> str:
    """The cache key of one crop (the whole image when `box` is None) embedded on a `device` kind, by the libraries
    `by` (default: those installed, `libraries`)."""
    crop = "full" if box is None else ",".join(f"{v:.3f}" for v in box) + f"|m={margin:.4f}"
    # The device is in every key: a GPU's convolutions run in TF32, so its vectors differ from the CPU's in the last
    # digits, and one cache served them on the other. Keys written before it had no device: they all miss, and their
    # crops are embedded again (docs/gpu.md). So are the libraries: after an upgrade of torch or Pillow (another resize)
    # the support set came from the cache as the old ones embedded it and the queries as the new ones do, one result
    # file of two programs' vectors, which a predictions manifest refuses to resume across (docs/outputs.md).
    return hashlib.sha256(f"{backbone_key}|{digest}|{crop}|on={device}|by={by or libraries()}".encode()).hexdigest()


# What SQLite says of a write its disk refused: full (or a short write at a file-size limit), read-only, or an error
# writing or syncing (a used-up quota, a write starting past the size limit). A damaged database says otherwise.
_REFUSED = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY)
_REFUSED_IO = (sqlite3.SQLITE_IOERR_WRITE, sqlite3.SQLITE_IOERR_FSYNC, sqlite3.SQLITE_IOERR_DIR_FSYNC,
               sqlite3.SQLITE_IOERR_TRUNCATE, sqlite3.SQLITE_IOERR_SHMSIZE)


def write_refused(e: sqlite3.Error) -> bool:
    """Whether `e` is the disk refusing a write (full, a quota, a size limit, read-only), not a damaged database."""
    code = getattr(e, "sqlite_errorcode", None)
    return code is not None and ((code & 0xFF) in _REFUSED or code in _REFUSED_IO)


class EmbeddingCache:
    """Float32 vectors by key, in `<folder>/embeddings.sqlite`; counts hits and writes.

    The cache only saves time: a write its disk refuses (full, a quota, a size limit) stops its writing, said once
    through `warn` (and kept in `stopped`), and the run goes on embedding what it does not find. A full cache disk
    ended `fewshot classify` with nothing classified, where --out's disk had room.
    """

    def __init__(self, folder: str | Path, warn: Callable[[str], None] | None = None):
        self.folder = Path(folder)
        self.warn = warn
        self.stopped: str | None = None  # why nothing more is written to it
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file by that name, a read-only disk: said as what to do, not as an errno
            why = "a file, not a folder" if self.folder.is_file() else e.strerror or str(e)
            raise ValueError(f"{self.folder}: cannot be the embedding cache folder ({why}); pick another --cache, or "
                             "pass --no-cache") from None
        self.path = self.folder / CACHE_FILE
        self.hits = 0
        self.writes = 0
        try:
            self._db = _opened(self.path)
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(embeddings)")]
        except sqlite3.DatabaseError as e:
            if not write_refused(e):
                raise ValueError(f"{self.path}: cannot open the embedding cache ({e}); delete it or pick another "
                                 "--cache") from None
            # A new cache on a disk already full: an empty one in memory stands in, and nothing is stored
            self._db, columns = _opened(":memory:"), ["key", "vec"]
            self._stop(e)
        if columns != ["key", "vec"]:  # another program's database by that name: every lookup was an sqlite traceback
            self._db.close()
            raise ValueError(f"{self.path}: not an embedding cache (its 'embeddings' table has columns "
                             f"{', '.join(columns)}, not key, vec); pick another --cache, or pass --no-cache")

    def get_many(self, keys: Sequence[str], dim: int | None = None) -> dict[str, np.ndarray]:
        """The cached vectors among `keys` (missing keys are simply absent, and so are vectors not `dim` long)."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):  # SQLite caps the number of bound parameters
            part = unique[i : i + 500]
            with self._failing():
                rows = self._db.execute(
                    f"SELECT key, vec FROM embeddings WHERE key IN ({','.join('?' * len(part))})", part
                ).fetchall()
            for key, blob in rows:
                # A damaged entry (cut short, rewritten by hand) is embedded again: read as it is, it scored every
                # query Unknown without a word, or broke the stack of a batch.
                if isinstance(blob, bytes) and len(blob) % 4 == 0 and (dim is None or len(blob) == 4 * dim):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        self.hits += sum(k in found for k in keys)
        return found

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store `vectors[i]` (`[n, D]`, cast to float32) under `keys[i]`, in one transaction; nothing once its disk
        has refused a write (`stopped`)."""
        if self.stopped is not None:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        try:
            with self._failing(refused_ok=True), self._db:  # a refused transaction is rolled back whole
                self._db.executemany(
                    "INSERT OR REPLACE INTO embeddings (key, vec) VALUES (?, ?)",
                    ((k, v.tobytes()) for k, v in zip(keys, vectors)),
                )
        except _Refused as e:
            self._stop(e.error)
            return
        self.writes += len(keys)

    def _stop(self, e: sqlite3.Error) -> None:
        """Write nothing more, and say so once."""
        self.stopped = (f"{self.path}: the embedding cache takes no more vectors ({e}); the run goes on without "
                        "storing them: free space there, or pick another --cache")
        if self.warn is not None:
            self.warn(self.stopped)

    def __len__(self) -> int:
        with self._failing():
            return int(self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    @contextmanager
    def _failing(self, refused_ok: bool = False) -> Iterator[None]:
        """SQLite's errors while in use as a ValueError naming the file: a page damaged past the header opened fine,
        then ended the run at the lookup that reached it in a traceback naming no file. `refused_ok`: a write the disk
        refused is raised as _Refused, for the caller to go on without the cache."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            if refused_ok and write_refused(e):
                raise _Refused(e) from None
            raise ValueError(f"{self.path}: cannot use the embedding cache ({e}); delete it if it is damaged (its "
                             "vectors are made again), or pick another --cache, or pass --no-cache") from None

    def close(self) -> None:
        """Close the database file."""
        self._db.close()


def _opened(path: Path | str) -> sqlite3.Connection:
    """The cache database at `path` (":memory:" for one in memory), its table made where it has none."""
    db = sqlite3.connect(path, timeout=60)
    try:
        db.execute("PRAGMA journal_mode=WAL")  # readers in other processes do not block writers
        db.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID")
    except BaseException:
        db.close()
        raise
    return db


class _Refused(Exception):
    """A write the cache's disk refused (`write_refused`)."""

    def __init__(self, error: sqlite3.Error):
        super().__init__(str(error))
        self.error = error
