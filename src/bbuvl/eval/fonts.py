"""Finding a font that can draw Chinese labels, and saying so clearly when there is none.

Pillow's bundled font has no CJK glyphs: Chinese labels come out as empty boxes. We look for a CJK
font in this order: the user's `--font-path`, fontconfig (`fc-list :lang=zh`), the usual font
folders (Linux, macOS, Windows), and matplotlib's font list. Every candidate is checked by drawing
two different Chinese characters: a font without them draws the same "missing glyph" box twice.
With no CJK font, pictures fall back to Pillow's font and English label glosses, with a warning; a character the
font in use cannot draw (a label part the hierarchy has no gloss for, a `≥` Pillow's font lacks) is spelt in one it can
(`FontChoice.spelt`), never drawn as a blank box.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_SUFFIXES = (".ttf", ".ttc", ".otf", ".otc")
# File-name fragments of common CJK fonts (lower case), most common on Linux first.
CJK_NAME_HINTS = (
    "wqy", "wenquanyi", "notosanscjk", "notoserifcjk", "notosanssc", "notosans-cjk", "sourcehan", "droidsansfallback",
    "ukai", "uming", "arphic", "simhei", "simsun", "msyh", "msjh", "yahei", "pingfang", "hiragino", "stheiti",
    "heiti", "songti", "cjk",
)
FONT_DIRS = (
    "/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts",
    "/System/Library/Fonts", "/Library/Fonts", "~/Library/Fonts", "C:/Windows/Fonts",
)
# Pillow's font has no glyph for these; their meaning survives in ASCII.
_ASCII = {"≥": ">=", "≤": "<=", "≠": "!=", "—": "--", "–": "-", "−": "-", "×": "x", "…": "...", "→": "->"}
INSTALL_HINT = "install one (Debian/Ubuntu: `apt-get install fonts-wqy-microhei`) or pass --font-path FILE.ttf|.ttc"


@dataclass(frozen=True)
class FontChoice:
    """The font pictures are drawn with: a CJK font file, or None for Pillow's own font (with a warning)."""

    path: Path | None
    warning: str | None = None

    @property
    def cjk(self) -> bool:
        """True when Chinese labels can be drawn as they are."""
        return self.path is not None and self.warning is None

    def load(self, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        """The font at `size` pixels."""
        if self.path is not None:
            try:
                return ImageFont.truetype(str(self.path), size)
            except OSError:
                pass
        return ImageFont.load_default(size)

    def spelt(self, text: str) -> str:
        """`text` with each character this font cannot draw spelt in ones it can: its plain form (`é` e, `／` /, `≥`
        >=), else its code point (`挡` \\u6321). Drawn as they were, a label part without an English gloss came out
        as blank boxes under a warning that said labels were drawn in English."""
        return "".join(_spelt(str(self.path) if self.path is not None else None, c) for c in text)


@lru_cache(maxsize=4096)
def _spelt(path: str | None, char: str) -> str:
    """One character as the font at `path` (None: Pillow's) can draw it (`FontChoice.spelt`)."""
    if _draws(path, char):
        return char
    plain = _ASCII.get(char) or "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if plain and plain != char and all(_draws(path, c) for c in plain):
        return plain
    return char.encode("unicode_escape").decode("ascii")


@lru_cache(maxsize=4096)
def _draws(path: str | None, char: str) -> bool:
    """Whether the font at `path` (None: Pillow's) has a glyph for `char`: it draws it otherwise than a character no
    font has (U+10FFFF, its "missing glyph" box); white space and invisible characters are never missing."""
    if char.isspace() or not char.isprintable():
        return True
    font = FontChoice(Path(path) if path is not None else None).load(24)
    return _render(font, char) != _render(font, "\U0010FFFF")


def has_cjk_glyphs(path: str | Path) -> bool:
    """True when the font file draws Chinese characters (two different ones look different and non-empty)."""
    try:
        font = ImageFont.truetype(str(path), 24)
        a, b = _render(font, "螺"), _render(font, "柜")
    except (OSError, ValueError):
        return False
    return a != b and any(a) and any(b)


def _render(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    image = Image.new("L", (40, 40))
    ImageDraw.Draw(image).text((4, 4), char, font=font, fill=255)
    return image.tobytes()


def find_cjk_font(font_path: str | Path | None = None) -> FontChoice:
    """The font to draw labels with: `font_path` when given (it must be a font file: else an error naming it; a font
    without Chinese glyphs is drawn with, with a warning), else the first CJK font found."""
    if font_path is not None:
        path = Path(font_path).expanduser()
        if path.is_dir():
            raise IsADirectoryError(f"{path}: a folder, not a font file (--font-path); give a {'/'.join(FONT_SUFFIXES)} file")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: font file not found (--font-path)")
        try:
            ImageFont.truetype(str(path), 24)
        except OSError as e:  # asked for by name: drawing in another font instead would hide the mistake
            raise ValueError(f"{path}: not a font file FreeType can read ({e}) (--font-path); give a "
                             f"{'/'.join(FONT_SUFFIXES)} file with Chinese glyphs") from None
        if not has_cjk_glyphs(path):
            return FontChoice(path, f"{path} has no Chinese glyphs: Chinese labels will not render; {INSTALL_HINT}")
        return FontChoice(path)
    found = _search()
    if found is None:
        return FontChoice(None, f"no CJK font found on this machine: labels are drawn in English, a part without an "
                                f"English gloss as its code points (\\u6321); {INSTALL_HINT}")
    return FontChoice(found)


@lru_cache(maxsize=1)
def _search() -> Path | None:
    """The first installed font with Chinese glyphs (cached: the search reads many files)."""
    seen: set[str] = set()
    for candidate in _candidates():
        key = os.path.realpath(candidate)
        if key in seen:
            continue
        seen.add(key)
        if has_cjk_glyphs(candidate):
            return Path(candidate)
    return None


def _candidates():  # noqa: ANN202 - a generator of paths, cheapest source first
    yield from _fontconfig_zh()
    for folder in FONT_DIRS:
        root = Path(folder).expanduser()
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.suffix.lower() in FONT_SUFFIXES and _looks_cjk(p.name):
                    yield str(p)
    try:
        from matplotlib import font_manager
    except ImportError:
        return
    for entry in font_manager.fontManager.ttflist:
        if _looks_cjk(Path(entry.fname).name) or _looks_cjk(entry.name):
            yield entry.fname


def _looks_cjk(name: str) -> bool:
    flat = name.lower().replace(" ", "").replace("_", "")
    return any(h in flat for h in CJK_NAME_HINTS)


def _fontconfig_zh() -> list[str]:
    """Font files fontconfig says cover Chinese (empty when fc-list is not installed)."""
    if shutil.which("fc-list") is None:
        return []
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    # Each line is "PATH: ": cut at the last colon, as a folder may hold one ("Fonts: CJK/"), which lost the font.
    files = [line.rstrip().removesuffix(":") for line in out.stdout.splitlines() if line.strip()]
    return sorted(f for f in files if f.lower().endswith(FONT_SUFFIXES))
