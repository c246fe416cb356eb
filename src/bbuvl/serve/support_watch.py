"""A served few-shot support set that follows its folder while the server runs (docs/serving.md, "A support set that
changes").

A thread lists the folder every `WATCH_S` seconds and stats what it holds; no file is read while that listing is
unchanged. When it changed, and lists alike at the next look (a folder half copied in or half deleted is not served),
only the files whose stat changed are hashed again (`StatDigests`), and only photos of new
content are embedded (a vector is kept per content digest, so a photo renamed or moved to another class is not
embedded again). The new set is checked as the one at start was; a valid one replaces the served one in a single
assignment, so a photo being re-scored keeps the set it began with. An invalid one (a class folder emptied, a photo
that cannot be decoded, the folder gone, unreadable, or being written by a bbuvl command), or one the backbone fails
on (out of memory), leaves the last good set served, and says why: once in the log, then in every answer's
`model.fewshot.stale` and in /metrics until the folder is valid again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bbuvl.data.text import spell_controls
from bbuvl.fewshot.backbones import Backbone
from bbuvl.fewshot.cache import file_digest
from bbuvl.fewshot.classifier import FewShotClassifier
from bbuvl.fewshot.embed import EmbedReport, ImageItem, embed_items
from bbuvl.fewshot.support import SupportSet, read_support, sample_support
from bbuvl.outputs import writer_around
from bbuvl.paths import real_path

logger = logging.getLogger("bbuvl.serve")

# A listing and a stat per entry: 30 ms for 1,000 support photos on a loaded 2-core machine (docs/serving.md), 1.5% of
# a core at this period, and a change is served within seconds
WATCH_S = 2.0

StatKey = tuple[int, int, int, int, int, int]
Listing = tuple[str, tuple[tuple[str, StatKey | None], ...]]


def _stat_key(st: os.stat_result) -> StatKey:
    """What tells one version of a file from another without reading it (ctime: a copy that kept the mtime)."""
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def list_folder(root: Path) -> Listing:
    """The folder's real location and every entry under it with its stat (links to files followed, a dead one None);
    raises ValueError naming the folder when it is gone, not a folder, or cannot be listed."""
    if not root.is_dir():
        what = "a file, not a folder" if root.exists() else (
            "a link that reaches no folder" if root.is_symlink() else "no such folder")
        raise ValueError(f"{root}: {what}")

    def refuse(e: OSError) -> None:
        """os.walk's errors, which it would skip in silence, as the folder's problem."""
        raise ValueError(f"{e.filename}: cannot be listed ({e.strerror or e})")

    entries = []
    # os.walk lists a link to a folder without entering it, as read_support's search does (it then refuses the link)
    for folder, dirs, files in os.walk(root, onerror=refuse):
        for name in dirs + files:
            path = os.path.join(folder, name)
            try:
                key: StatKey | None = _stat_key(os.stat(path))
            except OSError:
                key = None
            entries.append((os.path.relpath(path, root), key))
    return str(real_path(root)), tuple(sorted(entries))


class StatDigests:
    """File digests kept by path and stat: a file is hashed again only when its stat changed."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[StatKey, str]] = {}

    def __call__(self, path: Path) -> str:
        """The SHA-256 of `path`'s bytes (raises OSError when it cannot be read)."""
        key = _stat_key(os.stat(path))
        known = self._known.get(str(path))
        if known is not None and known[0] == key:
            return known[1]
        digest = file_digest(path)
        self._known[str(path)] = (key, digest)
        return digest

    def keep(self, paths: set[str]) -> None:
        """Forget every path but `paths` (the files of the set now served)."""
        self._known = {p: v for p, v in self._known.items() if p in paths}


@dataclass(frozen=True)
class ServedSupport:
    """One version of the support set, as served: never changed once made, replaced whole."""

    version: int
    classifier: FewShotClassifier
    content: str  # SHA-256 of its (class, photo digest) pairs served: two listings of the same photos are one set
    photos: dict[str, int]  # class -> distinct photos embedded
    left_out: frozenset[tuple[str, str]]  # (path, digest) of photos that could not be read when it was made
    vectors: dict[str, np.ndarray] = field(repr=False)  # photo digest -> embedding, for the next version to reuse
    skipped: tuple[str, ...] = ()  # each photo left out, with why
    warnings: tuple[str, ...] = ()  # files of no photo type, a photo in two classes


class Unusable(ValueError):
    """A support folder that cannot be served as it is now (the last good set stays)."""


def _digests(left_out: frozenset[tuple[str, str]]) -> set[str]:
    """The contents of the photos left out, wherever they are now."""
    return {digest for _, digest in left_out}


def _content(pairs: set[tuple[str, str]]) -> str:
    """A digest of which photos (by content) are served as which class, whatever their paths."""
    return hashlib.sha256("\n".join(f"{label}\t{digest}" for label, digest in sorted(pairs)).encode()).hexdigest()


def build_support(support: SupportSet, backbone: Backbone, version: int, last: ServedSupport | None) -> ServedSupport:
    """A served version of `support`, embedding only photos whose content `last` has no vector for.

    At start (`last` None) a photo that cannot be read is left out, as `bbuvl fewshot classify` leaves it out; later, only
    one left out then stays so: a photo newly unreadable (a copy not yet whole, a corrupt file) raises Unusable, since
    its class would lose it for as long as the server runs."""
    chosen, _ = sample_support(support, None)
    digest_of = {im.path: im.digest for im in support.images}
    known = last.vectors if last is not None else {}
    todo = [ImageItem(path, label=label) for label, paths in chosen.items() for path in paths
            if digest_of[path] not in known]
    report, vectors = EmbedReport(), {}
    for items, vecs in embed_items(todo, backbone, None, 32, report):
        vectors.update((digest_of[item.path], v) for item, v in zip(items, vecs))
    vectors.update((d, v) for d, v in known.items() if d in set(digest_of.values()))
    left_out = frozenset((str(p), digest_of[p]) for paths in chosen.values() for p in paths if digest_of[p] not in vectors)
    # by content: the photo left out at start, renamed or moved, is still the one tolerated then
    if last is not None and (new := sorted(p for p, d in left_out if d not in _digests(last.left_out))):
        raise Unusable("; ".join(report.skipped[:3]) or f"{new[0]}: cannot be read")
    kept = {label: [p for p in paths if digest_of[p] in vectors] for label, paths in chosen.items()}
    if empty := [label for label, paths in kept.items() if not paths]:
        raise Unusable(f"class '{empty[0]}' has no readable support image: " + "; ".join(report.skipped[:3]))
    labels = [label for label, paths in kept.items() for _ in paths]
    stacked = np.stack([vectors[digest_of[p]] for paths in kept.values() for p in paths])
    used = {digest_of[p] for paths in kept.values() for p in paths}
    warnings = tuple(note for note in [support.left_out] if note) + tuple(support.shared_photos())
    served = {(label, digest_of[p]) for label, paths in kept.items() for p in paths}
    return ServedSupport(version, FewShotClassifier.fit(labels, stacked), _content(served),
                         {label: len(paths) for label, paths in kept.items()}, left_out,
                         {d: v for d, v in vectors.items() if d in used}, tuple(report.skipped), warnings)


class SupportWatcher:
    """The support set a server scores with, reloaded from its folder when the folder changes (`check`)."""

    def __init__(self, root: str | Path, backbone: Backbone, watch_s: float = WATCH_S):
        """Read and embed the folder now (ValueError when it cannot be served); with `watch_s` > 0 a thread checks it
        every `watch_s` seconds for as long as this watcher is in use."""
        # Anchored now, links kept (a link swapped to another folder is followed): a relative root was looked for again
        # from whatever folder the process stood in at each check
        self.root, self.backbone = Path(os.path.abspath(root)), backbone
        self._digests = StatDigests()
        self._lock = threading.Lock()  # one check at a time (the thread's, or a caller's)
        try:
            listing: Listing | None = list_folder(self.root)  # before the photos are read: a change while they are is seen
        except ValueError:
            listing = None  # read_support names what is wrong, or the first check does
        self.current = build_support(read_support(self.root, digest=self._digests), backbone, 1, None)
        self._listing, self._changed = listing, listing  # the listing served, and the one the last check found
        self.problem: str | None = None  # why the folder as it is now is not what is served
        self.reloads = self.failures = 0
        self.checked_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if watch_s > 0:
            # the thread holds the watcher weakly: a server's engine dropped (tests start many) ends it at its next tick
            self._thread = threading.Thread(target=_watch, args=(weakref.ref(self), self._stop, watch_s), daemon=True,
                                            name="bbuvl-fewshot-support")
            self._thread.start()

    def close(self, wait_s: float = 30.0) -> None:
        """Stop watching the folder, letting a check under way end first (the set now served stays)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait_s)

    def check(self) -> bool:
        """Serve the folder's photos as they are now when they changed, listed alike at the check before, and make a
        valid set; True when a new version is served. Never raises for the folder's state: that is kept in `problem`."""
        with self._lock:
            try:
                return self._check()
            finally:
                self.checked_at = time.time()

    def _check(self) -> bool:
        try:
            listing = list_folder(self.root)
        except ValueError as e:
            return self._unusable(str(e), None)
        if listing == self._listing:
            self._changed = listing
            return False
        # Acted on once two checks in a row list it alike: a folder half copied in, or half deleted by `rm -r`, served
        # the photos there at that moment as a version, kept as the last good set once the folder was gone
        settled, self._changed = listing == self._changed, listing
        if not settled:
            return False
        if (writer := writer_around(self.root)) is not None:  # its photos are not all there yet: look again next time
            return self._unusable(f"{self.root}: `bbuvl {writer.command}` ({writer.who}) is writing it", None)
        try:
            support = read_support(self.root, digest=self._digests)
            fresh = build_support(support, self.backbone, self.current.version + 1, self.current)
        except (ValueError, OSError) as e:
            return self._unusable(str(e), listing)
        except Exception as e:  # the backbone's own failure: out of GPU memory, a photo its model cannot take
            # Tried again when the folder changes, not at every check: a retry re-embeds every new photo each time,
            # on a device short of the memory the requests being served need; its traceback was logged at every check
            return self._unusable(f"embedding its photos failed ({type(e).__name__}: {e}); tried again when "
                                  "the folder changes", listing, e)
        self._listing = listing
        self._digests.keep({str(im.path) for im in support.images})
        if self.problem is not None:
            logger.info("few-shot support %s is usable again", said(str(self.root)))
        self.problem = None
        if fresh.content == self.current.content and _digests(fresh.left_out) == _digests(self.current.left_out):
            return False  # the same photos (touched, renamed, the link now to a copy): the served version stays
        last, self.current = self.current, fresh  # one assignment: a photo being scored keeps the set it read
        self.reloads += 1
        logger.warning("few-shot support %s reloaded: version %d, %s", said(str(self.root)), fresh.version,
                       _changes(last, fresh))
        # said once, as at start: a photo added to a second class, or a .heic among the photos, went unsaid mid-serve
        for note in (n for n in fresh.skipped if n not in last.skipped):
            logger.warning("few-shot support %s version %d left out a photo: %s", said(str(self.root)), fresh.version,
                           said(note))
        for note in (n for n in fresh.warnings if n not in last.warnings):
            logger.warning("few-shot support %s version %d: %s", said(str(self.root)), fresh.version, said(note))
        return True

    def _unusable(self, why: str, listing: Listing | None, error: Exception | None = None) -> bool:
        """Keep serving the last good set, saying why once per distinct reason (with `error`'s traceback, an error
        not of the folder's making); a listing given is not read again until it changes (a corrupt photo left as it
        is), None reads the folder at the next check it can be listed (one being written; one gone, then moved back as
        it was, which lists as the last good listing did)."""
        why = said(why)
        if why != self.problem:
            self.failures += 1
            logger.warning("few-shot support %s not reloaded: %s; still serving version %d (%s)", said(str(self.root)),
                           why, self.current.version, ", ".join(self.current.photos), exc_info=error)
        self.problem, self._listing = why, listing
        return False

    def status(self) -> dict[str, Any]:
        """The served version, its classes with their photo counts, and why the folder is not served as it is (None)."""
        served = self.current
        return {"version": served.version, "classes": dict(served.photos), "stale": self.problem,
                "checked": round(self.checked_at, 3)}

    def collect(self) -> Iterator[Any]:
        """Prometheus metrics of the served set (a prometheus_client collector: `registry.register(watcher)`)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        served = self.current
        yield GaugeMetricFamily("bbuvl_fewshot_support_version", "Version of the few-shot support set served (1 at "
                                "start, one more at each reload)", value=served.version)
        photos = GaugeMetricFamily("bbuvl_fewshot_support_photos", "Support photos served per class", labels=["class"])
        for label, n in served.photos.items():
            photos.add_metric([label], n)
        yield photos
        yield GaugeMetricFamily("bbuvl_fewshot_support_stale", "1 when the support folder as it is now cannot be "
                                "served (the last good version is; the log says why)", value=int(self.problem is not None))
        yield CounterMetricFamily("bbuvl_fewshot_support_reloads", "New versions of the support set served",
                                  value=self.reloads)
        yield CounterMetricFamily("bbuvl_fewshot_support_reload_failures", "Changes to the support folder not served, "
                                  "each reason counted once", value=self.failures)


def said(text: str) -> str:
    """A message naming files as one line of text: a photo's name with bytes that are not UTF-8 (GBK from a Windows
    archive) made every answer carrying it in `stale` a 500, as no JSON writer writes them, and a newline in a name
    forged a line of the server's log."""
    return spell_controls(text).replace("\n", "\\n")


def _changes(last: ServedSupport, fresh: ServedSupport) -> str:
    """The classes added, removed and whose photo count changed between two versions, in words."""
    added = [c for c in fresh.photos if c not in last.photos]
    removed = [c for c in last.photos if c not in fresh.photos]
    resized = [f"{c} {last.photos[c]}->{n}" for c, n in fresh.photos.items() if c in last.photos and last.photos[c] != n]
    parts = [f"{what} {', '.join(names)}" for what, names in
             (("classes added:", added), ("classes removed:", removed), ("photos:", resized)) if names]
    total = sum(fresh.photos.values())
    return "; ".join(parts or ["photos replaced"]) + f" ({total} photos of {len(fresh.photos)} classes)"


def _watch(ref: "weakref.ref[SupportWatcher]", stop: threading.Event, every: float) -> None:
    """Check the watcher's folder every `every` seconds until it is closed or no longer in use."""
    while not stop.wait(every):
        watcher = ref()
        if watcher is None:
            return
        try:
            watcher.check()
        except Exception:  # a bug must not end the watching silently: said, and tried again at the next tick
            logger.exception("few-shot support %s: the check failed", watcher.root)
        del watcher
