"""Opening photos safely: decode fully, read EXIF orientation, convert any mode to RGB."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import struct
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator, Sequence

from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from bbuvl.data.coords import oriented_size
from bbuvl.data.input_paths import NOTHING_THERE, file_kind, name_problem, spelling_note
from bbuvl.data.names import url_scheme, windows_drive
from bbuvl.data.read_cost import FirstScan, ReadCost, check_photo, read_cost

if TYPE_CHECKING:
    import numpy as np

EXIF_ORIENTATION = 0x0112
# The turn each EXIF orientation asks for, as Pillow's ImageOps.exif_transpose makes it. That function also writes the
# EXIF block anew, and fails on a tag of the wrong type elsewhere in it (struct.error, TypeError, AttributeError) in a
# photo whose pixels and turn are sound; the turn alone is made here (docs/serving.md, "Bad input").
EXIF_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# Pillow's format names for those suffixes. MPO is how Pillow names the JPEG that phones write with a
# second (depth or preview) picture inside; its first picture is the photo. Anything else Pillow can open
# (GIF, ICO, PSD, PPM, ...) is refused by name: a GIF's palette and frames are no camera photo. A file of these
# formats holding several pictures (an animated PNG or WebP, a multi-page TIFF) is refused too (`frames_problem`).
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "WEBP", "TIFF"})
# A TIFF's pages are found by walking its chain of directories in Python: they are counted up to this many, so a
# small upload of thousands of empty pages holds no decoding thread
MOST_FRAMES_COUNTED = 100
# TIFF NewSubfileType: bit 0 marks a reduced-resolution copy of another page (a pyramid's levels, a preview)
TIFF_SUBFILE_TYPE, TIFF_REDUCED = 254, 1


class ImageError(ValueError):
    """An image that cannot be used; the message names the file."""


# What to do with a JPEG whose decoder holds its whole size at any scale (data/read_cost.py)
BASELINE_ADVICE = "save it as a baseline JPEG, or at a lower resolution, first"


class JpegTooLarge(Image.DecompressionBombError):
    """A JPEG past a pixel limit even at the smallest scale it decodes at."""

    def __init__(self, message: str, advice: str = "save it at a lower resolution first"):
        super().__init__(message)
        self.advice = advice  # what to do, in words


@dataclass
class LoadedImage:
    """A decoded photo: EXIF-oriented RGB pixels plus what the file said about itself.

    `image` may be smaller than the photo (a JPEG past Pillow's pixel limit, or one drawn small): boxes, records and
    predictions are in the stored photo's upright pixels, `size`, and `region` cuts from `image` in those.
    """

    image: Image.Image  # RGB, EXIF orientation applied; at a reduced scale when `size` differs
    raw_size: tuple[int, int]  # (width, height) of the pixel grid in the file
    orientation: int  # EXIF orientation tag (1 = none)
    mode: str  # mode in the file before conversion
    size: tuple[int, int]  # (width, height) of the stored photo as `image` lies (upright): its boxes' frame
    conversion: str | None = None  # what converting to 8-bit RGB took beyond Pillow's plain convert

    def region(self, box: tuple[float, float, float, float], to: tuple[int, int]) -> Image.Image:
        """The `box` of the stored photo (its pixels, `size`) resized (bicubic) to `to`, as the photo decoded in full
        would give it."""
        return stored_region(self.image, self.size, box, to)


def stored_region(image: Image.Image, stored: tuple[int, int], box: tuple[float, float, float, float],
                  to: tuple[int, int]) -> Image.Image:
    """The `box`, in pixels of a `stored`-size photo, of `image` (that photo decoded at any scale), resized (bicubic)
    to `to`."""
    if image.size == tuple(stored):
        cut = tuple(round(v) for v in box)
        whole = cut == (0, 0, *image.size)
        # The whole photo is resized straight from it: its crop was a copy of every pixel (432 MB of a 12000x9000
        # photo) made only to be shrunk, and the pixels are the same, the photo's own edges bounding the filter
        # either way. A smaller region is still cut first, a copy of its pixels alone: resized from the whole photo
        # its edge pixels would take in their neighbours, and differ from the tile that `data tile` writes and
        # training resizes (docs/tiles.md).
        crop = image if whole else image.crop(cut)
        return crop.resize(to, Image.BICUBIC) if whole or crop.size != tuple(to) else crop
    sx, sy = image.width / stored[0], image.height / stored[1]
    # Resampled from the whole decode, not a crop of it: a region's edge pixels keep their neighbours, as a full
    # decode's crop keeps them
    return image.resize(to, Image.BICUBIC, box=(box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy))


def stored_crop(image: Image.Image, stored: tuple[int, int], box: Sequence[float]) -> Image.Image:
    """The `box` of a `stored`-size photo, its ends rounded to whole pixels, at that photo's own scale, from `image`
    (the photo decoded at any scale): `image.crop` where it is decoded in full."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return stored_region(image, stored, (x1, y1, x2, y2), (x2 - x1, y2 - y1))


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of any PIL mode (see `convert_to_rgb`)."""
    return convert_to_rgb(img)[0]


def convert_to_rgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """8-bit RGB from any PIL mode, and a note when that took more than Pillow's plain conversion.

    Pillow's own convert("RGB") clips 16- and 32-bit values at 255 (a 16-bit PNG turns almost white) and
    treats LAB numbers as RGB; those are rescaled here. Transparent pixels are composited on white, not black.
    """
    mode = img.mode
    if mode == "RGB":
        return img, None
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = (img.convert("LA") if mode == "La" else img).convert("RGBA")  # La (premultiplied) has no direct route
        alpha = rgba.getchannel("A")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=alpha)
        return bg, ("transparent pixels composited on white" if alpha.getextrema()[0] < 255 else None)
    if mode.startswith("I") or mode == "F":
        return _wide_to_rgb(img)
    if mode == "LAB":
        from PIL import ImageCms

        lab_to_srgb = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(img, lab_to_srgb), "CIELAB converted to sRGB"
    return img.convert("RGB"), None  # 1, L, P, CMYK, YCbCr, HSV, RGBX: Pillow's conversion is right


# Rows of a 16-bit, 32-bit or float photo rescaled at a time: the 64-bit working copies are bounded by this many
# pixels, not the photo's: a 25 MP 16-bit photo peaks at 10.0 bytes a pixel, 38.0 when it was widened whole
# (bench/decode_memory.py).
WIDE_CHUNK_PIXELS = 1 << 18


def _wide_to_rgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """16-bit, 32-bit integer and float grey to 8 bits, by the range the mode (or, failing that, the data) has."""
    import numpy as np

    a = np.asarray(img)  # the file's own width: uint16, int32 or float32
    rows = max(1, WIDE_CHUNK_PIXELS // max(a.shape[1], 1))
    lo, hi = _finite_range(a, rows)
    if img.mode.startswith("I;16"):
        scale, offset, note = 255.0 / 65535.0, 0.0, f"16-bit grey ({img.mode}) scaled to 8 bits"
    elif img.mode == "F" and lo >= 0.0 and hi <= 1.0:
        scale, offset, note = 255.0, 0.0, "float grey in [0, 1] scaled to 8 bits"
    elif lo >= 0.0 and hi <= 255.0:
        scale, offset, note = 1.0, 0.0, None  # 8-bit values held in a wider mode
    elif img.mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scale, offset, note = 255.0 / 65535.0, 0.0, "16-bit grey (I) scaled to 8 bits"
    else:
        scale, offset = 255.0 / (hi - lo) if hi > lo else 0.0, lo
        note = f"{img.mode} grey with values {lo:g}..{hi:g} stretched to 8 bits"
    grey = np.empty(a.shape, dtype=np.uint8)
    for top in range(0, a.shape[0], rows):  # each value as it was in one pass over the whole photo
        chunk = np.nan_to_num(a[top:top + rows].astype(np.float64), copy=False, nan=lo, posinf=hi, neginf=lo)
        chunk -= offset
        chunk *= scale
        grey[top:top + rows] = np.clip(np.rint(chunk, out=chunk), 0, 255, out=chunk)
    return Image.fromarray(grey, mode="L").convert("RGB"), note


def _finite_range(a: np.ndarray, rows: int) -> tuple[float, float]:
    """The lowest and highest finite value of `a`, read `rows` rows at a time; (0, 0) when none is finite."""
    import numpy as np

    lo, hi = np.inf, -np.inf
    for top in range(0, a.shape[0], rows):
        chunk = a[top:top + rows]
        if chunk.dtype.kind == "f":
            chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def unsupported_format(image_format: str | None) -> str | None:
    """None for a photo format we read, else a sentence naming the format and what to do."""
    if image_format in SUPPORTED_FORMATS:
        return None
    return f"{image_format or 'this'} is not a supported photo format (JPEG, PNG, WebP, BMP, TIFF); convert it to JPEG or PNG"


def frame_count(im: Image.Image) -> int:
    """How many pictures the opened file `im` holds (its frames or pages; `MOST_FRAMES_COUNTED` at most): 1 for an MPO,
    whose first picture is the photo, and a TIFF's reduced-resolution copies of its page are not counted."""
    if im.format == "MPO" or not getattr(im, "is_animated", False):
        return 1
    if im.format != "TIFF":
        return min(int(getattr(im, "n_frames", 1)), MOST_FRAMES_COUNTED)
    pages = 1
    try:
        for frame in range(1, MOST_FRAMES_COUNTED):
            im.seek(frame)
            kind = im.tag_v2.get(TIFF_SUBFILE_TYPE, 0)
            pages += not (isinstance(kind, int) and kind & TIFF_REDUCED)
    except EOFError:  # no page more
        pass
    finally:
        im.seek(0)
    return pages


def frames_problem(im: Image.Image) -> str | None:
    """None for an opened photo of one picture, else a sentence saying how many it holds and what to do: Pillow reads
    an animated PNG or WebP, or a multi-page TIFF, as its first frame, and predict, serve and the data commands
    answered for that frame alone without a word, where a GIF was refused (`SUPPORTED_FORMATS`)."""
    frames = frame_count(im)
    if frames <= 1:
        return None
    many = f"{'at least ' if frames >= MOST_FRAMES_COUNTED else ''}{frames}"
    what = (f"a multi-page TIFF of {many} pages" if im.format == "TIFF" else
            f"an animated {'WebP' if im.format == 'WEBP' else im.format} of {many} frames")
    return (f"{what}; a photo is one picture, and only the first would be read: save the one you mean as its own "
            "JPEG or PNG")


def photo_problem(im: Image.Image) -> str | None:
    """None for an opened image bbu-vl reads as a photo, else why not (`unsupported_format`, `frames_problem`): the
    one rule for files (`open_image`, `load_image`) and uploads (serve/images.py)."""
    return unsupported_format(im.format) or frames_problem(im)


@contextmanager
def open_image(path: str | Path, decode: bool = True, at_least: tuple[int, int] | None = None) -> Iterator[Image.Image]:
    """An opened photo of a supported format (fully decoded with `decode`; a JPEG at the reduced scale that still
    covers the upright size `at_least`, as `load_image` says); ImageError naming the file otherwise. A JPEG past
    Pillow's pixel limit is decoded at a reduced scale (`load_image`); without `decode` it is opened at its stored
    size, so draft it before loading it."""
    with _opened(Path(path), decode, at_least) as (im, _):
        yield im


# What a JPEG's sides can be divided by as it is decoded (libjpeg scaling its DCT), as Pillow's `draft` offers them.
JPEG_SCALES = (1, 2, 4, 8)


@contextmanager
def _opened(path: Path, decode: bool, at_least: tuple[int, int] | None) -> Iterator[tuple[Image.Image, tuple[int, int]]]:
    """`open_image`'s photo and the size of the file's own pixel grid, which a reduced decode leaves behind."""
    with _named_errors(path, "decode image" if decode else "read image header"):
        # Pillow would say "Is a directory" as if the file were corrupt; opening a named pipe waits for a writer: forever
        kind = file_kind(path)
        if kind == "a folder":
            raise ImageError(f"{path}: a folder, not an image file")
        if kind is not None and kind not in NOTHING_THERE:  # nothing there: Pillow's error, named below
            raise ImageError(f"{path}: not a regular file ({kind}), so never read as a photo")
        fh = _photo_file(path)
        try:
            with warnings.catch_warnings():
                # Pillow warns from half the pixels it refuses (89 M, a 100 MP camera's photo) with a line of its code;
                # such a photo is read like any other, and one past its limit is refused below, named
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im, first = open_photo(fh)
        except BaseException:
            fh.close()
            raise
    with fh, im:  # Pillow leaves a stream it was given open: closed here, after the image
        with _named_errors(path, "read image header"):  # a TIFF's chain of pages may be corrupt
            why = photo_problem(im)
        if why is not None:
            raise ImageError(f"{path}: {why}")
        stored = im.size
        if decode:
            with _named_errors(path, "decode image"):
                cost = read_cost(im, first)
                need = jpeg_scale(stored, cost=cost) if im.format in ("JPEG", "MPO") else 1
                scale = need
                if at_least is not None and im.format in ("JPEG", "MPO"):
                    # A 12 MP photo decoded in full to draw an 800-px picture took 0.33 s; at 1/4 of its size, 0.10 s
                    # (an MPO, a phone's JPEG with a second picture inside, too)
                    wanted = at_least if exif_orientation(im) < 5 else (at_least[1], at_least[0])
                    scale = max(need, max(s for s in JPEG_SCALES if s == 1 or (
                        stored[0] // s >= wanted[0] and stored[1] // s >= wanted[1])))
                if scale > 1:
                    im.draft(None, (stored[0] // scale, stored[1] // scale))
                    if im.size == stored and need > 1:  # a JPEG Pillow cannot draft: decoded whole, past the limit
                        raise JpegTooLarge(f"{stored[0]}x{stored[1]} pixels, and Pillow cannot decode this JPEG at a "
                                           "reduced scale")
                check_read_cost(im, path, cost, stored)
                im.load()
        yield im, stored


def _photo_file(path: Path) -> BinaryIO:
    """The photo file at `path` opened for reading; ImageError when what was opened is no regular file, or is empty.

    `file_kind` said it was a regular file a moment before, but a name may be given to a pipe meanwhile (a photo
    replaced while predict reads a folder): opened as a file, a pipe waits for a writer forever, so it is opened without
    waiting and told by what was opened. An empty file was 'no photo format recognised in its bytes', which read as a
    photo of another format."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{path}: a folder, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{path}: not a regular file, so never read as a photo")
        if st.st_size == 0:
            raise ImageError(f"{path}: not an image (an empty file: 0 bytes)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_read_cost(im: Image.Image, path: Path, cost: ReadCost, stored: tuple[int, int]) -> None:
    """ImageError naming `path` when reading the photo `im` (of `stored` size, its `cost` read before any draft) at
    the size it is set to decode at costs past Pillow's limit (`pillow_limit`), or when its file cannot hold the
    pixels its header claims (`ReadCost.short`), or its decoder would take far longer than its pixels do
    (`ReadCost.slow`)."""
    limit = pillow_limit()
    if limit is not None and cost.at(im.size) > limit:
        w, h = im.size
        if cost.held:
            what, advice = f"{cost.words(stored)}, past the limit of {limit}", BASELINE_ADVICE
        else:
            what = (f"{w}x{h} = {w * h} pixels of {cost.kind} ({cost.mode}), which take {cost.per_pixel} times an 8-bit "
                    f"photo's memory to read: past the limit of {limit // cost.per_pixel} pixels of it")
            advice = "save it as an 8-bit JPEG or PNG first, or at a lower resolution"
        raise ImageError(_too_large(path, what, advice))
    if cost.short is not None:
        raise ImageError(f"{path}: cannot decode image: {cost.short}")
    if cost.slow is not None:
        raise ImageError(f"{path}: not decoded: {cost.slow}")


def _too_large(path: Path, what: str, advice: str) -> str:
    """The error for a photo too large to decode safely: what it is, then what to do."""
    return f"{path}: image too large to decode safely ({what}): {advice}; no model frame holds more than a few megapixels"


def pillow_limit() -> int | None:
    """The pixels past which Pillow's Image.open refuses a photo as a decompression bomb: twice its MAX_IMAGE_PIXELS, as
    set now; None where a program switched the check off."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


def jpeg_scale(size: tuple[int, int], limit: int | None = None, cost: ReadCost | None = None) -> int:
    """The smallest of 1, 2, 4, 8 that a JPEG of `size` is divided by to decode within `limit` pixels (by default
    Pillow's, `pillow_limit`), counting what `cost` (`read_cost`) holds at any scale; JpegTooLarge (a
    DecompressionBombError) when even 1/8 is past it."""
    limit = pillow_limit() if limit is None else limit
    if limit is None:
        return 1
    held = cost.held if cost is not None else 0
    for s in JPEG_SCALES:
        if -(-size[0] // s) * -(-size[1] // s) + held <= limit:
            return s
    w, h = -(-size[0] // 8), -(-size[1] // 8)
    if held and w * h <= limit:  # what the decoder holds for the whole photo is past the limit at any scale
        raise JpegTooLarge(f"{cost.words(size)}, past the limit of {limit}", BASELINE_ADVICE)
    raise JpegTooLarge(f"{size[0]}x{size[1]} pixels; even decoded at 1/8 of its size, {w}x{h} = {w * h} pixels are "
                       f"past the limit of {limit}")


def open_photo(source: BinaryIO) -> tuple[Image.Image, FirstScan | None]:
    """Pillow's Image.open of a photo's bytes (a file its caller opened and closes after the image, or bytes in
    memory), but a JPEG past Pillow's pixel limit is opened too (its header read, no pixel decoded): decode it at a
    reduced scale (`jpeg_scale`). Any other format past the limit raises Pillow's DecompressionBombError. A JPEG whose
    markers before its image data are too many to step through is refused before Pillow's opener steps through them
    (ValueError, `check_jpeg_markers`), and so is a PNG of more chunks than a photo holds (`check_png_chunks`). With
    the image comes what the JPEG's walk found (`check_photo`), for `read_cost` to go on from."""
    # One stream for the checks and Pillow: the file was opened once for the check, once to tell a JPEG, and again by
    # Pillow, and read_cost walked the markers again from the start (bench/photo_opens.py)
    first = check_photo(source)
    try:
        return Image.open(source), first
    except Image.DecompressionBombError:
        if first is None:  # no JPEG
            raise
    # A phone's 200 MP mode: Pillow's own JPEG opener reads the header without the check Image.open makes after it
    # (MAX_IMAGE_PIXELS is left alone: the server decodes on threads); the pixels are decoded at a scale under the
    # limit (docs/serving.md, "Photos past Pillow's pixel limit")
    source.seek(0)
    return JpegImagePlugin.jpeg_factory(source), first


def starts_as_jpeg(source: Path | BinaryIO) -> bool:
    """Whether a file or a stream starts as a JPEG does (its SOI marker and the next marker's first byte)."""
    if isinstance(source, Path):
        with source.open("rb") as fh:
            return fh.read(3) == b"\xff\xd8\xff"
    source.seek(0)
    return source.read(3) == b"\xff\xd8\xff"


@contextmanager
def _named_errors(path: Path, doing: str) -> Iterator[None]:
    """Pillow's many exceptions for a missing, foreign or corrupt file as one ImageError naming it."""
    try:
        yield
    except ImageError:
        raise
    except FileNotFoundError:
        why = _url_note(path) or _other_case(path) or _other_suffix(path) or spelling_note(path)
        raise ImageError(f"{path}: image file not found{why}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (no photo format recognised in its bytes)") from None
    except Image.DecompressionBombError as e:  # a PNG, TIFF or WebP past Pillow's limit: a JPEG is read at a reduced scale
        advice = (e.advice if isinstance(e, JpegTooLarge) else
                  "save it at a lower resolution first, or as a JPEG (read at a reduced scale)")
        raise ImageError(_too_large(path, str(e), advice)) from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data, or a name no file can have
        if (why := name_problem(path)) is not None:
            raise ImageError(f"{path}: {why}") from None
        if isinstance(e, OSError) and e.errno == errno.ELOOP:
            raise ImageError(f"{path}: a symbolic link that never reaches a file (its links lead in a loop)") from None
        raise ImageError(f"{path}: cannot {doing}: {e}") from None


@lru_cache(maxsize=16)
def _names_by_case(folder: str, changed_ns: int) -> dict[str, str]:
    """The names in `folder` by their casefold (the first of names alike), read once for a dataset's many photos;
    `changed_ns`, the folder's modification time, reads it again once a name is added or removed."""
    names: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        names.setdefault(name.casefold(), name)
    return names


def _url_note(path: Path) -> str:
    """For a missing file named by a URL or a Windows drive path, what the name is and what to give instead; '' for
    any other name."""
    if scheme := url_scheme(str(path)):
        if scheme == "file":  # of a file here, maybe: "download it" misled
            return "; the name is a file:// URL: write the path it names instead"
        return f"; the name is a URL ({scheme}://): photos are read from local files only, so download it and name the file"
    if drive := windows_drive(str(path)):
        return (f"; the name is a path on a Windows drive ({drive}:), no file here: name the photo relative to the "
                "dataset's folder, or by its path on this machine")
    return ""


def _other_case(path: Path) -> str:
    """For a missing file, the note that it is there in other letter case, its name or a folder on its way (`Images/`
    for `images/`), as a dataset written on Windows or macOS names it (they tell no case apart, so it worked there);
    '' when it is not, or when the name itself is there (a link that reaches no file)."""
    missing: list[str] = []  # the parts of `path` past the deepest folder that exists as spelt
    base = path
    try:
        while not os.path.isdir(base.parent) and base.parent != base and len(missing) < 32:
            missing.append(base.name)
            base = base.parent
        missing.append(base.name)
        folder, found = str(base.parent), []
        for part in reversed(missing):
            other = _names_by_case(folder, os.stat(folder).st_mtime_ns).get(part.casefold())
            if other is None:
                return ""
            found.append(other)
            folder = os.path.join(folder, other)
    except (OSError, ValueError):  # no such folder, or a name no folder can have
        return ""
    if found == missing[::-1]:
        return ""
    return f" ({'/'.join(found)} is there: only the letter case differs, which Windows and macOS ignore)"


def _other_suffix(path: Path) -> str:
    """For a missing file, the note that its folder holds photos of its name with another suffix (`a.jpg` for
    `a.jpeg`, a PNG a tool saved as JPEG): "image file not found" alone sent users looking for the wrong folder."""
    try:
        folder = str(path.parent)
        names = _names_by_case(folder, os.stat(folder).st_mtime_ns).values()
    except (OSError, ValueError):  # no such folder, or a name no folder can have
        return ""
    stem = path.stem.casefold()
    found = [n for n in names if Path(n).stem.casefold() == stem and Path(n).suffix.lower() in IMAGE_SUFFIXES
             and n != path.name]
    if not found:
        return ""
    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return f" ({shown} {'is' if len(found) == 1 else 'are'} there: the same name with another suffix)"


def load_image(path: str | Path, orient: bool = True, at_least: tuple[int, int] | None = None) -> LoadedImage:
    """Decode an image completely (truncated files fail here, not later) and return it as RGB. A JPEG past Pillow's
    pixel limit is decoded at the largest of 1/2, 1/4, 1/8 of its size under it (its `size` is still the stored
    photo's). `at_least`: the (upright) size the caller will shrink it to; a JPEG is then decoded at the smallest of
    1/2, 1/4, 1/8 of its size that still covers it (a picture for people, not a model's input: the pixels differ from a
    full decode's)."""
    with _opened(Path(path), True, at_least) as (im, raw_size), _named_errors(Path(path), "decode image"):  # a corrupt EXIF block, too
        mode = im.mode
        img, orientation = oriented(im) if orient else (im, exif_orientation(im))  # pixels already loaded
    rgb, conversion = convert_to_rgb(img)
    return LoadedImage(rgb, raw_size, orientation, mode, oriented_size(raw_size, orientation) if orient else raw_size,
                       conversion)


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation of an opened image still to be applied: 1 when it has none or one outside 1-8, or when
    Pillow applies it itself (a TIFF, `pillow_turns_tiff`); ValueError when it is no number."""
    if im.format == "TIFF" and pillow_turns_tiff():
        return 1
    try:
        exif = im.getexif()
    except (SyntaxError, struct.error):
        # An EXIF block Pillow cannot parse (no TIFF header after "Exif") holds no turn anyone can read: the photo is
        # read as stored, as Pillow's JPEG opener takes such a block (its file's getexif() is empty). Raised here
        # instead, a copy of that JPEG's pixels, which carries the block along, failed where the file had not: a 500
        # in `bbuvl serve`, and `bbuvl predict --tiles` stopped with a traceback at its first region.
        return 1
    try:
        value = int(exif.get(EXIF_ORIENTATION, 1) or 1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"EXIF orientation is not a number: {e}") from None
    return value if value in range(1, 9) else 1


@lru_cache(maxsize=1)
def pillow_turns_tiff() -> bool:
    """Whether this Pillow turns a TIFF by its EXIF orientation itself: its size reported turned from the header on,
    its pixels turned as they are decoded, and the tag dropped then. Turned again here, the header's size was turned
    twice (`data check --no-decode` and the decode disagreed on a photo's width) and a near copy found turned 90
    degrees from its own JPEG. Asked of a 2x1 TIFF, since the version that began doing so is not documented."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    buffer = io.BytesIO()
    Image.new("L", (2, 1)).save(buffer, "TIFF", exif=exif.tobytes())
    buffer.seek(0)
    with Image.open(buffer) as im:
        return im.size == (1, 2)


# Where an image's metadata can say how to turn it (Pillow's getexif reads all of them): a turned image keeps none.
TURN_METADATA = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def upright(im: Image.Image, orientation: int) -> Image.Image:
    """`im` turned as the EXIF `orientation` asks (`im` itself for 1). The turned image carries no EXIF or XMP block:
    Pillow copies `info` to it, so it still said "turn me", and `oriented` (an in-memory image given to the
    Predictor) would have turned it twice."""
    turn = EXIF_TURNS.get(orientation)
    if turn is None:
        return im
    turned = im.transpose(turn)
    for key in TURN_METADATA:
        turned.info.pop(key, None)
    return turned


def oriented(im: Image.Image) -> tuple[Image.Image, int]:
    """`im` upright as its own EXIF orientation asks (`exif_orientation`, `upright`), and that orientation: the one
    rule for a photo read from a file (`load_image`), uploaded (serve/images.py) or given in memory
    (infer/predictor.py `Predictor.prepare`); ValueError when the orientation is no number."""
    orientation = exif_orientation(im)
    return upright(im, orientation), orientation


def image_size(path: str | Path) -> tuple[int, int]:
    """`(width, height)` of the file's pixel grid, read from the header only."""
    with open_image(path, decode=False) as im:
        return im.size


def upright_size(path: str | Path) -> tuple[int, int]:
    """`(width, height)` of the photo as `load_image` turns it (its `size`), read from the header and EXIF only; a
    PNG whose EXIF follows its pixels is decoded to read it."""
    with open_image(path, decode=False) as im, _named_errors(Path(path), "read image header"):
        return oriented_size(im.size, exif_orientation(im))


def list_images(folder: str | Path, skipped: Counter[str] | None = None) -> list[Path]:
    """Image files under a folder, recursively, sorted, leaving out hidden files and folders: Jupyter's
    `.ipynb_checkpoints/` copies of a class's photos became a class of their own, and macOS's `._x.jpg` companions were
    each reported unreadable. A link that reaches no file is listed (its reader says so). The other files (a phone's
    .heic photos) are counted into `skipped` by their lower-case suffix ("" for none)."""
    root, images = Path(folder), []
    for path in root.rglob("*"):
        # A link to a photo that moved (a share not mounted) is listed, as predict lists it (infer/batch.py
        # folder_photos), so that its reader names it missing: it was left out without a word, a class fitted from
        # fewer photos, queries missing from the results.
        dead_link = path.is_symlink() and not path.exists()
        if any(part.startswith(".") for part in path.relative_to(root).parts) or not (path.is_file() or dead_link):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        elif skipped is not None:
            skipped[path.suffix.lower()] += 1
    return sorted(images)


def suffix_counts(skipped: Counter[str], most: int = 5) -> str:
    """`.heic 40, .txt 2`: the commonest suffixes first, then how many kinds more."""
    kinds = ", ".join(f"{suffix or 'no suffix'} {n}" for suffix, n in skipped.most_common(most))
    return kinds + (f", and {len(skipped) - most} more kinds" if len(skipped) > most else "")


def skipped_note(folder: str | Path, skipped: Counter[str]) -> str | None:
    """What a folder held besides photos, by suffix, most first (None when nothing): a phone's .heic photos were
    left out of a run without a word."""
    if not skipped:
        return None
    total = sum(skipped.values())
    return (f"{total} file{'s' if total > 1 else ''} in {folder} {'are' if total > 1 else 'is'} not read as photos "
            f"({suffix_counts(skipped)}); photos are {', '.join(sorted(IMAGE_SUFFIXES))}: convert others to JPEG or PNG to "
            "use them")


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex): the same photo under two names has one digest."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# APPn segments (EXIF, XMP, ICC profiles, a viewer's thumbnail) and comments: what tools rewrite when they copy a photo,
# re-date it, strip its GPS or turn it by its orientation tag, all without touching its compressed pixels.
_JPEG_METADATA = frozenset(range(0xE0, 0xF0)) | {0xFE}


def photo_digests(path: str | Path, whole: bool = True) -> tuple[str, str]:
    """SHA-256 (hex) of a photo file's bytes and of its image data, read once: the data is a JPEG's bytes without its
    metadata segments, so a copy whose EXIF a tool rewrote (turned by its orientation tag, re-dated) has its original's;
    any other file's data is its bytes. Without `whole`, the first is '' and only the data is hashed, in the time of
    hashing the file (measured on a 14 MB JPEG: 24 ms, file_digest 31 ms, both 49 ms)."""
    data = memoryview(Path(path).read_bytes())
    parts = _jpeg_image_data(data)
    if parts is None:
        digest_of_bytes = hashlib.sha256(data).hexdigest()
        return digest_of_bytes if whole else "", digest_of_bytes
    bytes_digest = hashlib.sha256(data).hexdigest() if whole else ""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return bytes_digest, digest.hexdigest()


def _jpeg_image_data(data: memoryview) -> list[memoryview] | None:
    """The segments of a JPEG that are no metadata, in order, to the end of the file; None for a file whose segments do
    not read as a JPEG's."""
    if bytes(data[:2]) != b"\xff\xd8":
        return None
    parts, i = [data[:2]], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before a marker
            i += 1
        elif marker == 0xDA:  # start of scan: the compressed pixels, to the end of the file
            return parts + [data[i:]]
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            parts.append(data[i : i + 2])
            i += 2
        else:
            end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
            if marker not in _JPEG_METADATA:
                parts.append(data[i:end])
            i = end
    return None
