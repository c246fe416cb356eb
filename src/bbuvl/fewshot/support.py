"""Support sets: the few labelled examples of each class, read from a folder, and K-shot samples of them.

Three layouts, which may be mixed:

    support/<class>/*.jpg           every image of the class
    support/shot<K>/<class>/*.jpg   a ready-made K-shot set
    support/<class>/shot<K>/*.jpg   the same, per class

A class name is the folder path below the root with any `shot<K>` part removed, so nested folders give
hierarchical labels: `support/螺丝连接点/新接头/连接正确/` is the class `螺丝连接点/新接头/连接正确`.
Hidden files and folders (`.ipynb_checkpoints/`, macOS's `._x.jpg`) are not read, in support and query folders alike.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from bbuvl.data.images import IMAGE_SUFFIXES, ImageError, list_images, load_image, skipped_note
from bbuvl.data.labels import SEP
from bbuvl.data.layout import TRAIN, VAL
from bbuvl.data.text import clean_label, label_key, label_problem, name_as_text, spelling_of
from bbuvl.fewshot.cache import file_digest
from bbuvl.fewshot.embed import ImageItem
from bbuvl.paths import real_path

UNKNOWN = "Unknown"
SHOT_DIR = re.compile(r"^shot(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class SupportImage:
    """One support image: its file, its class and the `shot<K>` folder it sits in (None outside one)."""

    path: Path
    label: str
    shot: int | None
    digest: str


@dataclass
class SupportSet:
    """Every support image found under a root folder."""

    root: Path
    images: list[SupportImage]
    left_out: str | None = None  # the files under `root` that are no photo type, by suffix (`skipped_note`)

    @property
    def classes(self) -> list[str]:
        """Class names, sorted."""
        return sorted({im.label for im in self.images})

    @property
    def shot_folders(self) -> list[int]:
        """The K of every `shot<K>` folder present, sorted."""
        return sorted({im.shot for im in self.images if im.shot is not None})

    def shared_photos(self) -> list[str]:
        """A warning per photo (by content) that is a support image of more than one class: a query like it cannot
        tell those classes apart, and each one's score is pulled towards the others."""
        classes_of: dict[str, dict[str, Path]] = {}
        for im in sorted(self.images, key=lambda im: str(im.path)):
            classes_of.setdefault(im.digest, {}).setdefault(im.label, im.path)
        return [f"one photo is a support image of {len(by)} classes: "
                + ", ".join(f"'{label}' ({path})" for label, path in by.items()) + "; keep it in the class it shows"
                for by in classes_of.values() if len(by) > 1]

    def ready(self, label: str, shots: int | None) -> list[SupportImage]:
        """The class's distinct images (by content, first by path) in its `shot<K>` folder for K = `shots` (none for
        None, or without such a folder): a photo copied twice into it weighed twice in its class's mean, where a draw
        from the class's pool counts it once."""
        if shots is None:
            return []
        return _distinct(im for im in self.images if im.label == label and im.shot == shots)

    def drawn_from(self, shot_list: Iterable[int | None]) -> list[Path]:
        """Every image a K-shot draw of `shot_list` may pick (`sample_support`): the pools of the classes without a
        ready `shot<K>` folder, for each K given."""
        return sorted({im.path for shots in shot_list if shots is not None for label in self.classes
                       if not self.ready(label, shots) for im in self.pool(label)})

    def pool(self, label: str) -> list[SupportImage]:
        """All distinct images of a class (by content: the same photo in shot1/ and shot5/ counts once), by path."""
        return _distinct(im for im in self.images if im.label == label)


def _distinct(images: Iterable[SupportImage]) -> list[SupportImage]:
    """`images` by path, one per content (the first path of each)."""
    seen: dict[str, SupportImage] = {}
    for im in sorted(images, key=lambda im: str(im.path)):
        seen.setdefault(im.digest, im)
    return list(seen.values())


def _class_of(rel: Path) -> tuple[str, int | None]:
    """(class, shot) of an image at `rel` below the support root."""
    shot: int | None = None
    parts = []
    for part in rel.parts[:-1]:
        m = SHOT_DIR.match(part)
        if m is None:
            parts.append(part)
        elif shot is not None:
            raise ValueError(f"{rel}: more than one shot<K> folder on the path")
        else:
            shot = int(m.group(1))
    return SEP.join(parts), shot


def read_support(root: str | Path, digest: Callable[[Path], str] = file_digest) -> SupportSet:
    """Find every support image under `root` (raises ValueError naming the offending file or folder); `digest` hashes
    a file's bytes (a server reading its folder again hashes only the files whose stat changed)."""
    root = Path(root)
    if not root.is_dir():
        what = "a file, not a folder" if root.exists() else (
            "a link that reaches no folder" if root.is_symlink() else "support folder not found")
        raise ValueError(f"{root}: {what} (expected support/<class>/*.jpg)")
    if (root / TRAIN).is_file():  # its photos were one class named 'images': every answer that or Unknown, exit 0
        raise ValueError(f"{root}: a dataset folder (it holds {TRAIN}), not a support folder: the support is a folder of "
                         "example crops per class (support/<class>/*.jpg); a dataset's boxes are queries (--query "
                         f"{root / VAL})")
    images, skipped = [], Counter()
    paths = list_images(root, skipped)
    # `ＢＢＵ/` beside `BBU/`, or a folder name composed on one disk and decomposed on another, is one class, not two
    # splitting its votes (data/text.py): the first folder's spelling, cleaned (NFC), names it.
    spell = spelling_of(_class_of(path.relative_to(root))[0] for path in paths)
    for path in paths:
        label, shot = _class_of(path.relative_to(root))
        if problem := label and label_problem(label):  # an ESC in a folder name would reach every answer and table
            raise ValueError(f"{name_as_text(str(path.parent))}: the class folder's {problem}")
        label = clean_label(spell(label)) if label else label
        if not label:
            raise ValueError(f"{path}: a support image must sit in a class folder (support/<class>/*.jpg)")
        if label_key(label).casefold() == UNKNOWN.lower():
            raise ValueError(f"{path.parent}: '{UNKNOWN}' is the answer for no class; it cannot be a support class")
        try:
            content = digest(path)
        except OSError as e:
            raise ValueError(f"{path}: cannot read support image: {e.strerror or e}") from None
        images.append(SupportImage(path, label, shot, content))
    if not images:
        raise ValueError(f"{root}: no images found (expected support/<class>/*.jpg)")
    _refuse_empty_folders(root, images)
    return SupportSet(root, images, skipped_note(root, skipped))


def _refuse_empty_folders(root: Path, images: list[SupportImage]) -> None:
    """An empty class folder would silently drop its class (its queries then become Unknown): refuse it, named by the
    class folder itself (a nested class's empty folder was named by its topmost folder, `support/螺丝连接点`, which
    holds other classes' folders and no photo of its own to add)."""
    holding = {parent for im in images for parent in im.path.parents}
    folders = sorted(p for p in root.rglob("*") if p.is_dir())
    for folder in folders:
        rel = folder.relative_to(root)
        if folder in holding or any(part.startswith(".") for part in rel.parts):
            continue
        refuse_linked_folder(folder)
        if any(sub.parent == folder and not sub.name.startswith(".") for sub in folders):
            continue  # only a folder on the way to the empty class folder, which comes later in this order
        raise ValueError(f"{folder}: class folder without images ({' '.join(sorted(IMAGE_SUFFIXES))}); "
                         "add the class's support images or remove the folder")


def refuse_linked_folder(folder: Path) -> None:
    """ValueError when `folder`, below a support or query root, is a link: the search for images does not follow links
    (nor loops on one), so the photos it leads to would be left out without a word."""
    if folder.is_symlink():
        raise ValueError(f"{folder}: a link to a folder ({real_path(folder)}); support and query folders are read "
                         "without following links to folders: copy its images into a real folder, or remove the link")


def unreadable_photos(paths: Iterable[Path]) -> dict[Path, str]:
    """Why each of `paths` that does not decode as a photo cannot (the reason names the file); the others are left out."""
    found = {}
    for path in paths:
        try:
            load_image(path)
        except ImageError as e:
            found[path] = str(e)
        except OSError as e:
            found[path] = f"{path}: cannot read: {e.strerror or e}"
    return found


def sample_support(support: SupportSet, shots: int | None, seed: int = 0,
                   unreadable: Mapping[Path, str] | None = None) -> tuple[dict[str, list[Path]], list[str]]:
    """The images of each class for a K-shot run (None = all), and warnings about classes short of K.

    A `shot<K>` folder is used as it is. Otherwise K images are drawn per class with `seed` among those not
    `unreadable` (`unreadable_photos` of `drawn_from`): drawn among all, an unreadable photo failed the run for one
    seed and not for another. The draws are nested (the 1-shot image is among the 5 shots, which are among the 10),
    so curves over K compare like with like. ValueError naming its files when a class drawn from has no readable image.
    """
    if shots is not None and shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    unreadable = unreadable or {}
    chosen: dict[str, list[Path]] = {}
    warnings = []
    for label in support.classes:
        if ready := support.ready(label, shots):
            if len(ready) < shots:  # type: ignore[operator]
                warnings.append(f"class '{label}': its shot{shots} folder holds {len(ready)} distinct support image(s), "
                                f"fewer than {shots} shots (a photo copied in twice counts once): using all")
            chosen[label] = sorted(im.path for im in ready)
            continue
        pool = [im for im in support.pool(label) if im.path not in unreadable]
        if not pool:
            bad = [unreadable[im.path] for im in support.pool(label)]
            raise ValueError(f"class '{label}' has no readable support image ({len(bad)} found): " + "; ".join(bad[:3]))
        random.Random(f"{seed}/{label}").shuffle(pool)  # a str seed is hashed with sha512: stable across runs
        if shots is not None and len(pool) < shots:
            warnings.append(f"class '{label}' has {len(pool)} support image(s), fewer than {shots} shots: using all")
        chosen[label] = [im.path for im in (pool if shots is None else pool[:shots])]
    return chosen, warnings


def support_items(chosen: dict[str, list[Path]]) -> list[ImageItem]:
    """One ImageItem per chosen support image, labelled with its class."""
    return [ImageItem(path, label=label) for label, paths in chosen.items() for path in paths]
