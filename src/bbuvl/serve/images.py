"""Turning uploaded bytes into an upright RGB photo, refusing anything unsafe with a 4xx that names the problem.

What a photo costs to read is told from its header and checked before a single pixel is decoded (data/read_cost.py):
a small file that inflates to gigapixels (a decompression bomb) costs nothing, nor does a progressive JPEG whose
decoder would hold the coefficients of its whole stored size whatever scale it is decoded at. The limit comes from
the checkpoint's coordinate contract (`pixel_limit`); a JPEG past it (a phone's 200 MP mode) is decoded at a reduced
scale within it. Orientation and colour follow `bbuvl.data.images`, so an upload and the same file given to
`bbuvl predict` reach the model as the same pixels.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any, Callable

from PIL import Image, UnidentifiedImageError

from bbuvl.data.coords import MAX_ASPECT, oriented_size
from bbuvl.data.images import (JpegTooLarge, LoadedImage, convert_to_rgb, jpeg_scale, open_photo, oriented,
                               photo_problem, pillow_limit)
from bbuvl.data.read_cost import ReadCost, read_cost
from bbuvl.serve.errors import ApiError, cut

# A photo may have this many times the model frame's largest pixel count: a 12 MP phone photo is 12x the
# 1 MP frame of configs/base.yaml; anything far beyond is a mistake or an attack (docs/serving.md, "Bad input").
PIXEL_LIMIT_FACTOR = 100
_URL_SAFE = str.maketrans("-_", "+/")
_DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I)


def pixel_limit(contract_max_pixels: int) -> int:
    """The largest upload, in pixels, for a checkpoint whose model frame holds at most `contract_max_pixels`."""
    return contract_max_pixels * PIXEL_LIMIT_FACTOR


def decode_image(data: bytes | memoryview, max_pixels: int, on_size: Callable[[int, int], None] | None = None) -> Image.Image:
    """Upright (EXIF-applied) 8-bit RGB pixels of an uploaded file (`decode_upload`'s, at a reduced scale for a JPEG
    past the pixel limit); ApiError 400/413 when it cannot be used."""
    return decode_upload(data, max_pixels, on_size).image


def decode_upload(data: bytes | memoryview, max_pixels: int,
                  on_size: Callable[[int, int], None] | None = None) -> LoadedImage:
    """An uploaded file's upright (EXIF-applied) 8-bit RGB pixels and its stored size; ApiError 400/413 when it cannot
    be used. A JPEG whose reading costs past `max_pixels` (`read_cost`: a phone's 200 MP mode) is decoded at the
    largest of 1/2, 1/4, 1/8 of its size within them, as `bbuvl predict` reads the file (data/images.py); its `size` is
    still the stored photo's. `on_size` is told the size it decodes at, before a pixel is decoded (and may refuse it by
    raising ApiError)."""
    if not data:
        raise ApiError(400, "empty_image", "the image is empty (0 bytes)")
    try:
        im, first = open_photo(io.BytesIO(data) if isinstance(data, bytes) else _View(data))
        with im:
            if (why := photo_problem(im)) is not None:
                raise ApiError(415, "unsupported_image_format", why)
            w, h = stored = im.size
            cost = read_cost(im, first)
            limit = max_pixels if (pillow := pillow_limit()) is None else min(max_pixels, pillow)
            if cost.at(stored) > limit and im.format in ("JPEG", "MPO"):
                _draft_within(im, limit, cost)
                w, h = im.size
            if w * h > max_pixels:
                raise ApiError(413, "image_too_large", f"the image is {w}x{h} = {w * h} pixels; this server accepts "
                               f"at most {max_pixels} (a decompression bomb, or a photo to scale down first)")
            if cost.at((w, h)) > max_pixels:
                raise ApiError(413, "image_too_large", _costly(cost, stored, (w, h), max_pixels))
            if cost.short is not None:
                raise ApiError(400, "corrupt_image", f"the image cannot be decoded: {cost.short}")
            if cost.slow is not None:  # a decoding thread held for minutes, past the request's deadline and any other's
                raise ApiError(413, "image_too_large", f"the image is {cost.slow}")
            sw, sh = stored
            if max(sw, sh) > MAX_ASPECT * min(sw, sh):  # no model frame holds it: the client's photo, not the model, fails
                raise ApiError(400, "bad_aspect_ratio", f"the image is {sw}x{sh}, {max(sw, sh) / min(sw, sh):.1f} times as "
                               f"long as it is wide; the model frame takes at most {MAX_ASPECT}:1: crop it first")
            if on_size is not None:
                on_size(w, h)
            try:
                im.load()
            except TypeError as e:
                # Pillow's TIFF reader, given an offset or count tag of the wrong type (a fraction, text): a corrupt
                # file, not a server failure (a 500 before)
                raise ApiError(400, "corrupt_image", f"the image cannot be decoded (a corrupt tag): {cut(str(e))}") from None
            turned, orientation = _oriented(im)
            rgb, conversion = convert_to_rgb(turned)
            return LoadedImage(rgb if rgb is not im else im.copy(), stored, orientation, im.mode,
                               oriented_size(stored, orientation), conversion)
    except ApiError:
        raise
    except UnidentifiedImageError:
        raise ApiError(400, "not_an_image", "the upload is not an image Pillow can identify (JPEG, PNG, WebP, BMP, TIFF)") from None
    except Image.DecompressionBombError as e:  # Pillow's own check, at twice its MAX_IMAGE_PIXELS, fires inside open()
        raise ApiError(413, "image_too_large", _past_pillows_limit(e, max_pixels)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ApiError(400, "corrupt_image", f"the image cannot be decoded (truncated or corrupt): {e}") from None


_PILLOW_SIZE = re.compile(r"Image size \((\d+) pixels\)")


def _past_pillows_limit(e: Image.DecompressionBombError, max_pixels: int) -> str:
    """Why a PNG, TIFF or WebP Pillow refused to open (past twice its MAX_IMAGE_PIXELS) is refused, with this server's
    limit: Pillow's own words named its 178956970, so a 192 MP PNG scaled down to 170 MP was refused again, at this
    server's 100 MP (docs/serving.md, "Bad input")."""
    found = _PILLOW_SIZE.search(str(e))
    has = f"{int(found.group(1))} pixels" if found else "more pixels than Pillow opens"
    limit = max_pixels if (pillow := pillow_limit()) is None else min(max_pixels, pillow)
    return (f"the image has {has}; this server decodes at most {limit} of a PNG, TIFF or WebP (a decompression bomb, "
            "or a photo to scale down first; a JPEG past it is read at a reduced scale)")


class _View(io.RawIOBase):
    """A file reading the bytes of a memoryview in place: BytesIO copies any buffer but `bytes`, and a multipart
    upload's photo is a view of its body (serve/bodies.py), megabytes a copy would hold twice."""

    def __init__(self, view: memoryview):
        self._view, self._at = view.cast("B"), 0

    def readable(self) -> bool:
        """Always."""
        return True

    def seekable(self) -> bool:
        """Always."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Read into `buffer` from where the file stands; the bytes read."""
        n = max(0, min(len(buffer), len(self._view) - self._at))
        buffer[:n] = self._view[self._at:self._at + n]
        self._at += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to `offset` from the start, the current place or the end; the new place."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._at = base + offset
        return self._at

    def tell(self) -> int:
        """Where the file stands."""
        return self._at


def _draft_within(im: Image.Image, limit: int, cost: ReadCost) -> None:
    """Set a JPEG to decode at the largest of 1/2, 1/4, 1/8 of its size within `limit` pixels (the server's
    `max_pixels` or Pillow's own limit, the lower), counting what its decoder holds at any scale (`cost`); ApiError 413
    when even 1/8 is past them."""
    w, h = im.size
    try:
        scale = jpeg_scale((w, h), limit, cost)
    except JpegTooLarge:
        raise ApiError(413, "image_too_large", _costly(cost, (w, h), (-(-w // 8), -(-h // 8)), limit)) from None
    im.draft(None, (w // scale, h // scale))


def _costly(cost: ReadCost, stored: tuple[int, int], size: tuple[int, int], limit: int) -> str:
    """Why a photo of `stored` size read at `size` costs past `limit` pixels of an 8-bit photo, and what to do."""
    w, h = size
    if cost.held:
        return (f"the image is {cost.words(stored)}; this server accepts at most {limit} with the pixels it decodes "
                f"({w}x{h} at the least): save it as a baseline JPEG, or scale it down")
    if cost.per_pixel > 1:
        return (f"the image is {w}x{h} = {w * h} pixels of {cost.kind} ({cost.mode}), which take {cost.per_pixel} "
                f"times an 8-bit photo's memory to read; this server accepts at most {limit // cost.per_pixel} pixels "
                "of it: save it as an 8-bit JPEG or PNG, or scale it down")
    return (f"the image is {stored[0]}x{stored[1]} = {stored[0] * stored[1]} pixels; this server decodes at most {limit}, "
            f"and even decoded at 1/8 of its size it holds {w * h}")


def _oriented(im: Image.Image) -> tuple[Image.Image, int]:
    """An opened image upright and its EXIF orientation (1: none), by the rule a file and an image given to the
    Predictor follow (data/images.py `oriented`); ApiError 400 when the orientation is no number."""
    try:
        return oriented(im)
    except ValueError as e:
        raise ApiError(400, "corrupt_image", f"the image's {cut(str(e))}") from None


def decode_base64(text: str, where: str = "image") -> bytes:
    """Bytes of a base64 string (either alphabet, padded or not) or a `data:` URI; ApiError 400 naming `where` when it
    is neither, 415 when the URI says it holds no image."""
    if not isinstance(text, str) or not text:
        raise ApiError(400, "missing_image", f"'{where}' must be a non-empty base64 string or data: URI")
    text = text.strip()  # ' data:image/jpeg;base64,...' was 'not valid base64', ' https://...' not named a URL
    m = _DATA_URI.match(text)
    if m:
        if not m.group("b64"):
            raise ApiError(400, "bad_base64", f"'{where}': only base64 data: URIs are accepted (data:image/png;base64,...)")
        mime = (m.group("type") or "").lower()
        if mime and not mime.startswith("image/") and mime != "application/octet-stream":  # octet-stream: "some bytes"
            raise ApiError(415, "unsupported_media_type", f"'{where}' is a data: URI of type '{cut(mime)}', not an image: "
                           "send data:image/jpeg;base64,... (or image/png, ...)")
        text = text[m.end():]
    elif re.match(r"^[a-z][a-z0-9+.-]*://", text, re.I):
        raise ApiError(400, "url_not_allowed", f"'{where}' is a URL; this server never fetches URLs: send the image as a "
                       "base64 data: URI")
    text = "".join(text.split())
    # The URL-safe alphabet and unpadded base64 (RFC 4648, sections 5 and 3.2) are what many encoders write; neither
    # is ambiguous with the standard alphabet, so both are read rather than answered "not valid base64".
    text = text.translate(_URL_SAFE) + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_base64", f"'{where}' is not valid base64") from None
