"""Text compared the way people type it: one key for labels, one for file names, and how to show a difference.

Two labels are the same label when their `label_key`s are equal. The key is NFC (an accent typed as one
code point or as letter + combining mark), full-width ASCII folded to half-width (a Chinese input method
types `／` and `ＢＢＵ` for `/` and `BBU`), invisible characters removed (zero-width space, joiners, word
joiner, a BOM pasted mid-text) and each `/` part trimmed. The key decides equality only: a label is written
in its canonical spelling (the hierarchy's, or the cleaned text), never as its key; the cleaned text keeps a
zero-width joiner or non-joiner where it joins (an emoji sequence, a Persian word), and drops it elsewhere.

File names are compared in NFC only, and only after their exact spelling: macOS writes names decomposed (NFD), JSON
written elsewhere holds them composed, and the two must name one file; but a Linux disk may hold `café.jpg` composed
and decomposed, two photos, so a name pairs with the file (or line) spelt exactly as it first. Nothing else about a
file name is folded. `names_apart` shows names that differ only in composition so that they print apart.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import shlex
import sys
import unicodedata
from typing import Callable, Iterable

SEP = "/"
FULL_WIDTH_SEP = "\uff0f"  # `／`, what a Chinese input method types for SEP
# U+FF01..U+FF5E are ASCII 0x21..0x7E typed full-width; U+3000 is the ideographic (full-width) space.
_HALF_WIDTH = {**{cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}, 0x3000: 0x20}


def drop_invisible(text: str, keep_joiners: bool = False) -> str:
    """`text` without format characters (Unicode category Cf): zero-width space and joiners (U+200B..U+200D),
    word joiner (U+2060), BOM (U+FEFF), soft hyphen, direction marks. None of them is ever seen, so none is meant.

    `keep_joiners`: a zero-width joiner or non-joiner between two characters it changes is kept (`_joins`)."""
    if text.isascii():
        return text
    return "".join(c for i, c in enumerate(text)
                   if unicodedata.category(c) != "Cf" or (keep_joiners and c in _JOINERS and _joins(text, i)))


# Zero-width non-joiner and joiner: seen where they stand between letters of a joining script (Persian `می‌خواهم`
# keeps its letters apart with U+200C) or between emoji (`👩‍🔧` is one picture of a mechanic, two without U+200D).
_JOINERS = "\u200c\u200d"
# Scripts whose letters never join: between them a joiner changes nothing and is a paste's stray.
_NEVER_JOINED = ("CJK ", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO", "IDEOGRAPHIC", "FULLWIDTH", "HALFWIDTH")


def _joins(text: str, i: int) -> bool:
    """Whether the joiner at `text[i]` stands between two characters it can change: letters, marks or symbols, neither
    ASCII nor of a script that never joins."""
    if i == 0 or i == len(text) - 1:
        return False
    for c in (text[i - 1], text[i + 1]):
        if c.isascii() or unicodedata.category(c)[0] not in "LMS" or unicodedata.name(c, "").startswith(_NEVER_JOINED):
            return False
    return True


def clean_label(text: str) -> str:
    """A label as it should be written: NFC, no invisible characters but the joiners that join (`drop_invisible`), `／`
    as `/` (it is structure), trimmed."""
    text = drop_invisible(text, keep_joiners=True).replace(FULL_WIDTH_SEP, SEP)  # dropped before NFC: `e\u200b\u0301` is é
    return unicodedata.normalize("NFC", text).strip()


def label_parts(text: str) -> list[str]:
    """A label as an annotation tool names it, in its parts: split at `/` and `／`, each trimmed, the empty ones (a
    trailing `/`, `//`, a part of spaces) dropped."""
    return [p.strip() for p in text.replace(FULL_WIDTH_SEP, SEP).split(SEP) if p.strip()]


def control_characters(text: str) -> str:
    """The control characters (Unicode category Cc: ESC, tab, newline, NUL, ...) and line and paragraph separators
    (U+2028, U+2029) in `text`, as `show_text` spells them; '' when it has none. In a label they are never meant: a
    terminal obeys ESC, and a newline splits a line, as a separator does wherever text is read by lines."""
    found = dict.fromkeys(c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp"))
    return ", ".join(show_text(c) for c in found)


# Qwen's chat marks turns, photos and thinking with tokens spelt as text (`<|im_end|>`, `<|image_pad|>`, `<think>`,
# data/families.py), and a tokenizer reads them as those tokens in any text it is given: in a label, `<|image_pad|>`
# stood for a photo's pixels (training failed at its first step, naming no label) and `<|im_end|>` ended the answer.
_CHAT_TOKEN = re.compile(r"<\|[^<>|\s]{1,40}\|>|</?(?:think|tool_call|tool_response)>")


def chat_token_problem(text: str, what: str = "label") -> str | None:
    """Why `text` (a label, a name or a gloss, as `what` says) cannot go into a prompt or an answer: it holds a token of
    the model's chat format; None when it holds none."""
    found = list(dict.fromkeys(_CHAT_TOKEN.findall(text)))
    if not found:
        return None
    return (f"{what} {show_text(text)} holds {', '.join(map(show_text, found))}, a token of the model's chat format: "
            "the tokenizer reads it as that token, not as text (an answer's end, a photo's place); remove it")


def label_problem(text: str, what: str = "label") -> str | None:
    """Why `text` cannot be a label, or part of one (`what`: "name"): control characters or a token of the chat format
    in it, or nothing left once cleaned; None when it can."""
    if (problem := not_text(text)) is not None:
        return f"{what} {problem}"
    control = control_characters(text)
    if control:
        return f"{what} {show_text(text)} holds control characters ({control}): a label is one line of text; remove them"
    if (problem := chat_token_problem(text, what)) is not None:
        return problem
    if not clean_label(text):
        return f"{what} {show_text(text)} is empty once invisible characters and spaces are removed"
    return None


def label_key(text: str) -> str:
    """What decides whether two labels are one: NFC, full-width ASCII folded, no invisible characters, parts trimmed."""
    folded = unicodedata.normalize("NFC", drop_invisible(text.translate(_HALF_WIDTH)))
    return SEP.join(part.strip() for part in folded.split(SEP))


def same_label(a: str, b: str) -> bool:
    """True when `a` and `b` are one label however each was typed."""
    return a == b or label_key(a) == label_key(b)


def spelling_of(known: Iterable[str]) -> Callable[[str], str]:
    """A function giving a label the first spelling in `known` of the same label (or the label cleaned, if none)."""
    first: dict[str, str] = {}
    for label in known:
        first.setdefault(label_key(label), label)
    return lambda label: first.get(label_key(label)) or clean_label(label)


def file_name_key(name: str) -> str:
    """What decides whether two spellings of a file name (or path) name one file: NFC."""
    return unicodedata.normalize("NFC", name)


def _composes(char: str) -> bool:
    """Whether NFC and NFD may spell `char` otherwise: a combining mark, or a character NFD takes apart."""
    return unicodedata.combining(char) != 0 or unicodedata.normalize("NFD", char) != char


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def show_composition(name: str) -> str:
    """`name` quoted as `show_text` quotes it, each character NFC and NFD spell otherwise escaped (`'caf\\u00e9'`,
    `'cafe\\u0301'`): printed as they are, two names that differ only in composition look alike."""
    return "'" + "".join(_escaped(c) if _composes(c) or not c.isprintable() else c for c in name) + "'"


def quote_name(name: str) -> str:
    """`name` in quotes, each character NFC and NFD spell otherwise escaped where it is not composed (NFC), as
    `names_apart` shows it: `'cafe\\u0301.json'` is no `'café.json'`."""
    return f"'{name}'" if unicodedata.is_normalized("NFC", name) else show_composition(name)


def names_apart(*names: str) -> list[str]:
    """`names` to show side by side: as they are when every one is composed (NFC), else each as `show_composition`
    spells it. Two names that differ only in composition (`café` typed, `café` from macOS) cannot both be NFC."""
    if all(unicodedata.is_normalized("NFC", n) for n in names):
        return list(names)
    return [show_composition(n) for n in names]


# A word of a message longer than this (a label, a path or a number a file holds, 50,000 characters of it) is shown
# cut in its middle: printed whole, one "line" of an error filled screens and buried the reason after it.
LONGEST_WORD = 200
_LONG_WORD = re.compile(rf"\S{{{LONGEST_WORD + 1},}}")


def short_words(message: str) -> str:
    """`message` with each run of characters without a space longer than LONGEST_WORD cut in its middle: its start
    and end kept, and its length said."""
    if len(message) <= LONGEST_WORD:
        return message
    return _LONG_WORD.sub(lambda m: f"{m[0][:120]}...{m[0][-40:]} ({len(m[0]):,} characters)", message)


def one_line(message: str) -> str:
    """`message` with its line ends spelt (`\\n`): a `file:line: problem` is one line, and a photo's name in it may hold
    one, which printed the rest of the problem on a line naming no file."""
    return message.replace("\r\n", "\\r\\n").replace("\n", "\\n")


def show_text(text: str) -> str:
    """`text` quoted, with invisible, control and odd spacing characters escaped (`'螺丝\\u200b连接点'`)."""
    return "'" + "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text) + "'"


# The control characters (category Cc, as `control_characters` finds them: C0, DEL, C1) but newline and tab, spelled
# as `show_text` spells them.
_SPELLED_CONTROLS = {cp: chr(cp).encode("unicode_escape").decode("ascii")
                     for cp in range(0xA0) if unicodedata.category(chr(cp)) == "Cc" and chr(cp) not in "\n\t"}
# And the bidirectional controls (embeddings, overrides, isolates, marks): a terminal obeys them too, and a file name
# `evil\u202egpj.exe` showed as `evilexe.jpg`. Arabic and Hebrew letters are text, shown as they are.
_SPELLED_CONTROLS.update({cp: f"\\u{cp:04x}" for cp in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                                          *range(0x2066, 0x206A))})


def spell_controls(text: str) -> str:
    """`text` with its control characters but newline and tab, and its bidirectional controls, spelled out (`\\x1b`,
    `\\u202e`): a terminal shown a label or a file name from data must display it, not obey an ESC sequence, a
    carriage return or a right-to-left override in it. Bytes of a file name that are not UTF-8 are spelt `\\xbb` too
    (`name_as_text`): a UTF-8 terminal's stream refused them, a traceback."""
    text = text.translate(_SPELLED_CONTROLS)
    return text if not_text(text) is None else name_as_text(text)


def nearest(text: str, known: list[str]) -> str | None:
    """The known string most like `text` (compared as label keys), or None when none is close."""
    keys = {label_key(k): k for k in known}
    close = difflib.get_close_matches(label_key(text), list(keys), n=1, cutoff=0.5)
    return keys[close[0]] if close else None


def difference(given: str, known: str) -> str:
    """What `given` has that `known` does not and the reverse, as `show_text` spells them (empty when equal)."""
    parts = []
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(None, given, known, autojunk=False).get_opcodes():
        if op == "replace":
            parts.append(f"{show_text(given[a1:a2])} where it has {show_text(known[b1:b2])}")
        elif op == "delete":
            parts.append(f"extra {show_text(given[a1:a2])}")
        elif op == "insert":
            parts.append(f"missing {show_text(known[b1:b2])}")
    return "; ".join(parts)


def did_you_mean(text: str, known: list[str]) -> str:
    """` (nearest known: '...', which differs by: ...)` for an unknown label, or '' when nothing is close."""
    near = nearest(text, known)
    if near is None:
        return ""
    diff = difference(text, near)
    return f" (nearest known label: {show_text(near)}" + (f"; this one differs by: {diff})" if diff else ")")


def name_as_text(name: str) -> str:
    """A file name as text that any UTF-8 file holds: bytes of it that are not UTF-8 (which Python reads from the disk
    as lone surrogates, and no JSON writer can write) spelt `\\xbb`; `name` itself when it is text."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        errors = "surrogateescape" if _escaped_bytes(name) else "backslashreplace"
        return name.encode("utf-8", errors).decode("utf-8", "backslashreplace")


def _escaped_bytes(text: str) -> bool:
    """Whether every lone surrogate in `text` is one Python made of a byte that is not UTF-8 (U+DC80..U+DCFF)."""
    return all("\udc80" <= c <= "\udcff" for c in text if "\ud800" <= c <= "\udfff")


# What makes this system read and spell file names in UTF-8, where it does not (`file_names_in_utf8`).
LOCALE_FIX = "run in a UTF-8 locale (LC_ALL=C.UTF-8) or with PYTHONUTF8=1"


def file_names_in_utf8() -> bool:
    """Whether this system turns file names into bytes and back as UTF-8: a UTF-8 locale, or Python's UTF-8 mode. In
    another locale (zh_CN.GBK, en_US.ISO-8859-1, or C with PYTHONUTF8=0) a name written in UTF-8 reads otherwise."""
    return codecs.lookup(sys.getfilesystemencoding()).name == "utf-8"


def utf8_name(text: str) -> str | None:
    """The name `text` is on disk when this system reads file names in another encoding than UTF-8 and the name's
    bytes are UTF-8 (`红.jpg`, read in zh_CN.GBK as `绾\\udca2.jpg`); None otherwise."""
    if file_names_in_utf8() or text.isascii():
        return None
    try:
        return os.fsencode(text).decode("utf-8")
    except UnicodeError:
        return None


def not_text(text: str) -> str | None:
    """Why `text` is no Unicode text, or None when it is: it holds lone surrogates, which a file name of bytes that are
    not UTF-8 gives (an archive made on a Chinese Windows, unpacked here), or a JSON writer's `\\udcff` escape of one.
    No UTF-8 file (a dataset line, errors.jsonl) can hold them: every writer failed on them after its work. A name
    whose bytes are UTF-8, read by a system that reads file names in another encoding, is said to be that: renamed
    "in UTF-8" it would be spelt twice over."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    shown = name_as_text(text)
    if not _escaped_bytes(text):
        return f"{show_text(shown)} is not UTF-8 text: it holds half of a character (a JSON \\u escape of a lone surrogate)"
    if (name := utf8_name(text)) is not None:
        seen = "" if name == shown else f" (as {show_text(shown)})"
        return (f"{show_text(name)} is a file name in UTF-8, but this system reads file names as "
                f"{sys.getfilesystemencoding()}{seen}: {LOCALE_FIX}")
    gbk = ""
    try:
        gbk = f"; they read as GBK: {show_text(text.encode('utf-8', 'surrogateescape').decode('gb18030'))}"
    except UnicodeDecodeError:
        pass
    return (f"{show_text(shown)} is not UTF-8 text (a file name of bytes that are not UTF-8{gbk}); rename the file in "
            "UTF-8 (convmv -f gbk -t utf-8 does a folder) and write its name as such")


def bom_encoding(head: bytes) -> str | None:
    """"utf-16" or "utf-32" when `head` (a file's first bytes) opens with that encoding's byte order mark, as Windows
    Notepad's "Unicode" saves text; None otherwise (UTF-8, with or without its own BOM)."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00 starts like FF FE
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


# Binary files given where text is read (a photo as the dataset): their first bytes are no UTF-8, and a PNG's first
# line happens to read as GBK holding Chinese, which sent the user to re-save a photo as UTF-8.
BINARY_STARTS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG photo"), (b"\x1f\x8b", "a gzip archive"),
                 (b"7z\xbc\xaf", "a 7-Zip archive"))


def _cut_in_a_character(data: bytes) -> bool:
    """Whether `data` is UTF-8 text but for its last character, cut short at the very end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)  # an unfinished last character is kept back
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start > 0 and e.end == len(data) and e.reason == "unexpected end of data"
    return False


def gbk_hint(data: bytes) -> str:
    """'; it reads as GBK ...' when `data`, which is not UTF-8, reads cleanly as GB18030 (GBK) text holding Chinese,
    as Windows saves Chinese text by default ("ANSI" in Notepad); what it is when it starts as a photo or an archive
    does, or holds NUL bytes; '' otherwise."""
    for start, kind in BINARY_STARTS:
        if data.startswith(start):
            return f"; it is {kind}, not text"
    if b"\x00" in data:
        return "; it holds NUL bytes: a binary file, not text"
    if _cut_in_a_character(data):
        # A copy or a save that did not finish, cut inside a Chinese character, was told to be saved as UTF-8, or
        # read as GBK
        return "; it ends in the middle of a character: the file was cut short (a copy or a save that did not finish)"
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        return ""
    if not any("\u4e00" <= c <= "\u9fff" for c in text):
        return ""
    return "; it reads as GBK (GB18030) text, as Windows saves Chinese by default: save it as UTF-8"


def as_argument(path: str | os.PathLike[str]) -> str:
    """`path` as a command's argument: `./` before a relative path that begins with `-`, which every command line
    reads as an option (`bbuvl data check -a.jsonl`: "No such option: -a"); any other path as it is."""
    text = os.fspath(path)
    return f"./{text}" if text.startswith("-") else text


def shell_word(path: str | os.PathLike[str]) -> str:
    """`path` as a shell passes it to a command whole (`as_argument`, quoted where it must be), for a command printed to
    be pasted."""
    return shlex.quote(as_argument(path))
