"""Opening photos safely: decode fully, read EXIF orientation, convert any mode to RGB."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

EXIF_ORIENTATION = 0x0112
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class ImageError(ValueError):
    """An image that cannot be used; the message names the file."""


@dataclass
class LoadedImage:
    """A decoded photo: EXIF-oriented RGB pixels plus what the file said about itself."""

    image: Image.Image  # RGB, EXIF orientation applied
    raw_size: tuple[int, int]  # (width, height) of the pixel grid in the file
    orientation: int  # EXIF orientation tag (1 = none)
    mode: str  # mode in the file before conversion


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of any PIL mode; transparent pixels are composited on white, not black."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")  # CMYK, L, I;16, P, YCbCr ...


def load_image(path: str | Path, orient: bool = True) -> LoadedImage:
    """Decode an image completely (truncated files fail here, not later) and return it as RGB."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            raw_size = im.size
            orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
            mode = im.mode
            img = ImageOps.exif_transpose(im) if orient and orientation != 1 else im  # pixels already loaded
    except FileNotFoundError:
        raise ImageError(f"{path}: image file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (cannot identify format)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: image too large to decode safely: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data
        raise ImageError(f"{path}: cannot decode image: {e}") from None
    if orientation not in range(1, 9):
        orientation = 1
    return LoadedImage(to_rgb(img), raw_size, orientation, mode)


def image_size(path: str | Path) -> tuple[int, int]:
    """`(width, height)` of the file's pixel grid, read from the header only."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise ImageError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"{path}: cannot read image header: {e}") from None


def list_images(folder: str | Path) -> list[Path]:
    """Image files under a folder, recursively, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex): the same photo under two names has one digest."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
