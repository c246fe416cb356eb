"""JPEGs whose header claims more than their data holds, built the way an attacker builds them, for the readers'
tests (docs/serving.md, "Bad input")."""

from __future__ import annotations

import io
import struct

from PIL import Image


def claiming(side: int, progressive: bool = True, mode: str = "L") -> bytes:
    """A 16x16 JPEG of one colour with only its start-of-frame size field written over to claim `side` x `side`: 280
    bytes for the progressive grey one, whose decoder once held the coefficients of every claimed pixel."""
    buf = io.BytesIO()
    Image.new(mode, (16, 16), 128 if mode == "L" else (128, 60, 200)).save(buf, "JPEG", progressive=progressive)
    data = bytearray(buf.getvalue())
    at = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", side, side)  # height, width
    return bytes(data)


def scanned_one_by_one(side: int) -> bytes:
    """A baseline 4:2:0 colour JPEG claiming `side` x `side` whose first scan holds its first component alone: coded in
    several scans, as a progressive one is, so its decoder holds every block's coefficients too."""
    data = bytearray(claiming(side, progressive=False, mode="RGB"))
    at = data.find(b"\xff\xda")
    length = int.from_bytes(data[at + 2:at + 4], "big")
    data[at:at + 2 + length] = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"  # one component (id 1, tables 0), spectrum 0-63
    return bytes(data)


# A flat grey 2000x2000 JPEG coded arithmetically (libjpeg-turbo's `cjpeg -arithmetic`): 125 bytes, 0.002 bits a block
# of its 62,500, as a real photo of one colour may be coded
ARITHMETIC_FLAT_2000 = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a1f1e1d1a"
    "1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc9000b0807d007d001011100ffcc000600101005ffda0008"
    "010100003f001eb780ffd9")


class PeakMemory:
    """This process's peak resident memory from now on, above what it holds now (Linux: /proc/self/clear_refs starts
    the peak again; `growth_mib` is None elsewhere)."""

    def __init__(self) -> None:
        self.start = None
        if _status() is not None:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.start = _status()["VmRSS"]

    def growth_mib(self) -> float | None:
        """The peak since this was made, above the memory held then, in MiB."""
        return None if self.start is None else (_status()["VmHWM"] - self.start) / 1024


def _status() -> dict[str, int] | None:
    """VmRSS and VmHWM of this process in KiB, or None where /proc does not tell them."""
    try:
        with open("/proc/self/status") as fh:
            return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in fh) if k in ("VmRSS", "VmHWM")}
    except OSError:
        return None


def rescanned(size: tuple[int, int], extra_scans: int, comment: bytes = b"") -> bytes:
    """A progressive JPEG of one colour, `size`, whose last scan (and the table before it) is repeated `extra_scans`
    times: each repeat a few dozen bytes, an end-of-band run over every block, and a pass of the decoder over the whole
    photo (libjpeg warns of the progression and goes on). `comment`, when given, is put in a COM segment right after
    the first scan's image data."""
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 130, 140)).save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    scans = [at for at in range(len(data) - 1) if data[at:at + 2] == b"\xff\xda"]
    last, end = scans[-1], data.rindex(b"\xff\xd9")
    table = data.rfind(b"\xff\xc4", scans[-2], last)
    repeated = data[table if table >= 0 else last:end] * extra_scans
    if comment:
        first_end = data.index(b"\xff", scans[0] + 2 + int.from_bytes(data[scans[0] + 2:scans[0] + 4], "big"))
        while data[first_end + 1] == 0:  # a 0xFF of image data
            first_end = data.index(b"\xff", first_end + 2)
        segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
        data = data[:first_end] + segment + data[first_end:]
        end += len(segment)
    return data[:end] + repeated + data[end:]


def flooded(segments: int, where: str = "before") -> bytes:
    """A 64x48 progressive JPEG holding `segments` empty comment segments (4 bytes each) right after its start
    (`where` "before" its first scan) or after its first scan's image data ("among" its scans): each a step of a reader
    in Python however small (Pillow's opener, a marker walk)."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 130, 140)).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    at = 2
    if where == "among":
        first = data.index(b"\xff\xda")
        at = data.index(b"\xff", first + 2 + int.from_bytes(data[first + 2:first + 4], "big"))
        while data[at + 1] == 0:  # a 0xFF of image data
            at = data.index(b"\xff", at + 2)
    return data[:at] + b"\xff\xfe\x00\x02" * segments + data[at:]
