"""The label hierarchy (`category/attribute[/state]`) and the platform-token map, both loaded from data files."""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from bbuvl.data.jsonfile import json_kind, read_json
from bbuvl.data.text import (FULL_WIDTH_SEP, SEP, chat_token_problem, clean_label, did_you_mean, label_key, label_problem,
                             show_text)
from bbuvl.paths import real_path

# How the problem of a label spelt in both languages ends: it names both of its spellings, no nearest label.
_IN_ONE_LANGUAGE = ", written in one language"


def _resource(name: str) -> Path:
    return Path(str(resources.files("bbuvl.resources").joinpath(name)))


DEFAULT_HIERARCHY = _resource("hierarchy.json")
DEFAULT_TOKEN_MAP = _resource("token_map.json")


@dataclass(frozen=True)
class Category:
    """One top-level category with its attributes and, per attribute, its allowed states."""

    name: str
    gloss: str
    cue_zh: str
    cue_en: str
    attributes: dict[str, tuple[str, dict[str, str]]]  # attribute -> (gloss, {state: gloss})


@dataclass(frozen=True)
class Hierarchy:
    """Every valid label path; answers whether a label is valid and what it is at each level."""

    categories: dict[str, Category]
    source: str = "<builtin>"
    # Complete label paths the file marks `"fault": true` (a state, or an attribute without states): what an
    # inspection must flag. Only the file says which (data/faults.py reads them; docs/faults.md).
    faults: frozenset[str] = frozenset()
    _by_key: dict[str, str] = field(default_factory=dict, repr=False)  # label_key -> the label as spelt here
    # A dataset repeats one bad label thousands of times; the nearest-label search runs once per spelling.
    _problems: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    _english: dict[str, str] = field(default_factory=dict, repr=False, compare=False)  # label_key(gloss) -> label
    # label_key of a path (category, category/attribute or full label), as spelt here or in English -> its path here
    _paths: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Hierarchy":
        """Load a hierarchy JSON file (the shipped default when `path` is None)."""
        if path and os.path.islink(path) and not os.path.exists(path):
            # Named by where the link leads, the error named a file the user never typed
            raise ValueError(f"{path}: cannot read label hierarchy: a link that reaches no file (to "
                             f"{os.readlink(path)}, or its links lead in a loop)")
        real = str(real_path(path)) if path else str(DEFAULT_HIERARCHY)
        return _load_hierarchy(real, _file_version(real))

    def labels(self) -> list[str]:
        """All complete label paths, in file order."""
        out: list[str] = []
        for cat in self.categories.values():
            if not cat.attributes:
                out.append(cat.name)
            for attr, (_, states) in cat.attributes.items():
                if states:
                    out.extend(SEP.join((cat.name, attr, s)) for s in states)
                else:
                    out.append(SEP.join((cat.name, attr)))
        return out

    def paths(self) -> list[str]:
        """Every path of the hierarchy, in file order: each category, each category/attribute and each full label."""
        out: dict[str, None] = {}
        for label in self.labels():
            parts = label.split(SEP)
            out.update((SEP.join(parts[:n]), None) for n in range(1, len(parts) + 1))
        return list(out)

    def path(self, label: str) -> str | None:
        """The hierarchy's spelling of a path (a category, category/attribute or full label) typed as `label_key` says
        or as its English gloss; None when it is none of them."""
        if not self._paths:
            self._paths.update({label_key(self.english(p)): p for p in self.paths()})
            self._paths.update({label_key(p): p for p in self.paths()})  # its own spelling wins over a gloss
        return self._paths.get(label_key(label))

    def canonical(self, label: str) -> str | None:
        """The hierarchy's spelling of `label` (equal as `label_key` says), or None when it is not a complete path."""
        return self._by_key.get(label_key(label))

    def is_valid(self, label: str) -> bool:
        """True when `label` is a complete path of the hierarchy, as people type it (see data/text.py)."""
        return label_key(label) in self._by_key

    def problem(self, label: str) -> str | None:
        """None for a valid label, else a sentence saying what is wrong with it and the nearest valid label."""
        if self.is_valid(label):
            return None
        if label not in self._problems:
            if (known := self.from_english(label)) is not None:
                # "has too many parts (nearest known label: 'air baffle/not installed')" said of that very label
                self._problems[label] = (f"label {show_text(label)} is the hierarchy's English for {show_text(known)}, "
                                         "not its label")
                return self._problems[label]
            why = self._part_problem(label)
            # the nearest in either language: an English label's is its gloss; a label of both languages is told its
            # two spellings instead (its nearest by letters is another label's)
            self._problems[label] = why if why.endswith(_IN_ONE_LANGUAGE) else why + did_you_mean(
                label, self.labels() + [self.english(known) for known in self.labels()])
        return self._problems[label]

    def _part_problem(self, label: str) -> str:
        parts = label_key(label).split(SEP)
        typed = label.replace(FULL_WIDTH_SEP, SEP).split(SEP)  # the parts as typed, to quote them
        typed = typed if len(typed) == len(parts) else parts
        # A part is read as its name, or as its English gloss (`data convert --lang en`, a model trained on such
        # labels): read by names alone, 'air baffle/not installed/loose' was of an "unknown category 'air baffle'"
        by_gloss = {label_key(c.gloss): c.name for c in self.categories.values()}
        en = parts[0] not in _keyed(self.categories) and parts[0] in by_gloss
        cat = self.categories.get(_keyed(self.categories).get(parts[0]) or by_gloss.get(parts[0], ""))
        if cat is None:
            return f"unknown category {show_text(typed[0])} (known: {', '.join(self.categories)})"

        def said(names: dict[str, str]) -> str:  # {name: gloss} in the label's language
            return ", ".join(names.values() if en else names)

        kind = self.english(cat.name) if en else cat.name
        if not cat.attributes:
            return f"category '{kind}' takes no attribute, got {show_text(label)}"
        attributes = {a: g for a, (g, _) in cat.attributes.items()}
        if len(parts) < 2:
            return f"label {show_text(label)} lacks an attribute (one of: {said(attributes)})"
        attr_name = _keyed(cat.attributes).get(parts[1]) or {label_key(g): a for a, g in attributes.items()}.get(parts[1])
        if attr_name is None:
            return f"unknown attribute {show_text(typed[1])} for '{kind}' (known: {said(attributes)})"
        states = cat.attributes[attr_name][1]
        kind = SEP.join((kind, attributes[attr_name] if en else attr_name))
        if states and len(parts) < 3:
            return f"label {show_text(label)} lacks a state (one of: {said(states)})"
        state = (_keyed(states).get(parts[2]) or {label_key(g): n for n, g in states.items()}.get(parts[2])) if states \
            else None
        if states and state is None:
            return f"unknown state {show_text(typed[2])} for '{kind}' (known: {said(states)})"
        if len(parts) > (3 if states else 2):
            return f"label {show_text(label)} has too many parts"
        # Every part is known, some by its name and some by its English gloss: "has too many parts" was said of
        # 'air baffle/已安装', a partial token map's rendering of an English platform label.
        known = SEP.join([cat.name, attr_name, *([state] if state else [])])
        return (f"label {show_text(label)} mixes the hierarchy's names and their English glosses: "
                f"{show_text(known)} or {show_text(self.english(known))}{_IN_ONE_LANGUAGE}")

    def from_english(self, label: str) -> str | None:
        """The label whose English gloss (`english`) `label` is, as `bbuvl data convert --lang en` writes it; None
        when it is none's."""
        if not self._english:
            self._english.update({label_key(self.english(known)): known for known in self.labels()})
        return self._english.get(label_key(label))

    def english(self, label: str) -> str:
        """The English gloss of a label path, part by part (unknown parts kept as they are)."""
        parts = (self.canonical(label) or label).split(SEP)
        cat = self.categories.get(parts[0])
        if cat is None:
            return label
        out = [cat.gloss]
        if len(parts) > 1 and parts[1] in cat.attributes:
            gloss, states = cat.attributes[parts[1]]
            out.append(gloss)
            if len(parts) > 2:
                out.append(states.get(parts[2], parts[2]))
        else:
            out.extend(parts[1:])
        return SEP.join(out)


def _file_version(path: str) -> tuple[int, ...]:
    """What tells one content of the file at `path` from another without reading it (inode, size, modification and
    change times); () when it cannot be read, which the load then names."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return ()
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# Keyed by the file's version too: keyed by its name alone, a hierarchy edited (or replaced) while one process ran
# (a notebook, the test suite, a server reloading) kept giving the labels and faults it first read.
@lru_cache(maxsize=16)
def _load_hierarchy(path: str, version: tuple[int, ...] = ()) -> Hierarchy:
    try:
        raw = read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read label hierarchy: {str(e).removeprefix(f'{path}: ')}") from e
    cats: dict[str, Category] = {}
    faults: set[str] = set()
    top = _keys(path, "the file", _object(path, "the file", raw), _FILE_KEYS)
    for name, spec in _object(path, "categories", top.get("categories", {})).items():
        spec = _keys(path, f"category '{name}'", _object(path, f"category '{name}'", spec), _CATEGORY_KEYS)
        if _fault(path, f"category '{name}'", spec):
            raise ValueError(f"{path}: category '{name}' is marked \"fault\": mark the attribute or state that is "
                             "wrong instead (a fault is a part's state, docs/faults.md)")
        attrs = {}
        for a, aspec in _object(path, f"category '{name}' attributes", spec.get("attributes", {})).items():
            aspec = _keys(path, f"attribute '{name}/{a}'", _object(path, f"attribute '{name}/{a}'", aspec), _ATTRIBUTE_KEYS)
            states = _states(path, name, a, _object(path, f"attribute '{name}/{a}' states", aspec.get("states", {})),
                             faults)
            if _fault(path, f"attribute '{name}/{a}'", aspec):
                if states:
                    raise ValueError(f"{path}: attribute '{name}/{a}' has states and is marked \"fault\": mark the "
                                     "state that is wrong instead")
                faults.add(SEP.join((name, a)))
            attrs[a] = (_text(path, f"attribute '{name}/{a}'", aspec, "gloss", a), states)
        cats[name] = Category(name, *(_text(path, f"category '{name}'", spec, key, default) for key, default in
                                      (("gloss", name), ("cue_zh", ""), ("cue_en", ""))), attrs)
    if not cats:
        raise ValueError(f"{path}: label hierarchy has no 'categories'")
    for cat in cats.values():
        for part in [cat.name, *cat.attributes, *(s for _, states in cat.attributes.values() for s in states)]:
            # A label is its parts joined by '/': a part holding one would be read back as two parts.
            problem = label_problem(part, "name") or (
                f"name {show_text(part)} holds '{SEP}', which separates a label's parts"
                if SEP in part.replace(FULL_WIDTH_SEP, SEP) else None)
            if problem:
                raise ValueError(f"{path}: category '{cat.name}': {problem}")
        glosses = [cat.gloss, *(g for g, _ in cat.attributes.values()),
                   *(g for _, states in cat.attributes.values() for g in states.values())]
        # A gloss is an English label's part, and the cues go into the system prompt
        for text, what in [*((g, "gloss") for g in glosses), (cat.cue_zh, "cue_zh"), (cat.cue_en, "cue_en")]:
            if (problem := chat_token_problem(text, what)) is not None:
                raise ValueError(f"{path}: category '{cat.name}': {problem}")
        for gloss in glosses:
            # An English label is the glosses joined by '/': `eval --level` and `data stats` cut "fibre/optic cable" at
            # level 1 as "fibre", its attribute as the category's second half.
            if SEP in gloss.replace(FULL_WIDTH_SEP, SEP):
                raise ValueError(f"{path}: category '{cat.name}': gloss {show_text(gloss)} holds '{SEP}', which "
                                 "separates an English label's parts; write it without one (fibre-optic cable)")
    h = Hierarchy(cats, source=path, faults=frozenset(faults))
    by_key: dict[str, str] = {}
    for label in h.labels():
        # Labels are found by their key: of two alike, the later would silently stand for both.
        if (other := by_key.setdefault(label_key(label), label)) != label:
            raise ValueError(f"{path}: labels {show_text(other)} and {show_text(label)} are one label however typed "
                             "(spaces, width or invisible characters differ); keep one")
    cats, faults = _cleaned(path, cats, faults)
    h = Hierarchy(cats, source=path, faults=frozenset(faults))
    object.__setattr__(h, "_by_key", {label_key(label): label for label in h.labels()})
    _refuse_shared_glosses(path, h)
    return h


def _cleaned(path: str, cats: dict[str, Category], faults: set[str]) -> tuple[dict[str, Category], set[str]]:
    """The categories and faults with every name spelt as a dataset's label is (`clean_label`: NFC, no invisible
    characters, trimmed): a hierarchy saved on macOS spells `é` decomposed, and each label typed as the file spells it
    was said to be typed otherwise, and the file's spelling was none a dataset could hold. Two names of one parent
    that are one however typed are refused: looked up by their key, the later stood for both."""

    def names(what: str, raw: Iterable[str]) -> dict[str, str]:
        first: dict[str, str] = {}
        for name in raw:
            if (other := first.setdefault(label_key(name), name)) != name:
                raise ValueError(f"{path}: {what} {show_text(other)} and {show_text(name)} are one name however typed "
                                 "(spaces, width or invisible characters differ); keep one")
        return {name: clean_label(name) for name in raw}

    out: dict[str, Category] = {}
    for name, clean in names("categories", cats).items():
        cat = cats[name]
        attributes = {}
        for attr, clean_attr in names(f"category {show_text(clean)}: attributes", cat.attributes).items():
            gloss, states = cat.attributes[attr]
            spelt = names(f"attribute {show_text(SEP.join((clean, clean_attr)))}: states", states)
            attributes[clean_attr] = (gloss, {spelt[state]: g for state, g in states.items()})
        out[clean] = replace(cat, name=clean, attributes=attributes)
    return out, {SEP.join(clean_label(part) for part in fault.split(SEP)) for fault in faults}


def _refuse_shared_glosses(path: str, hierarchy: Hierarchy) -> None:
    """ValueError for two paths with one English gloss however typed: `data convert --lang en` wrote both parts as one
    label, which reads back (`from_english`) as the later alone, and `eval --level` cut them as one category."""
    first: dict[str, str] = {}
    for label in hierarchy.paths():
        gloss = hierarchy.english(label)
        if (other := first.setdefault(label_key(gloss), label)) != label:
            raise ValueError(f"{path}: {show_text(other)} and {show_text(label)} share the English gloss "
                             f"{show_text(gloss)}: `data convert --lang en` would write both as one label; give each "
                             "its own \"gloss\"")


def _object(path: str | Path, what: str, value: Any) -> dict:
    """`value` when it is a JSON object; else a ValueError naming the file and what should have been one."""
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {what} must be a JSON object ({{...}}), got {json_kind(value)} {str(value)[:40]}")
    return value


# The keys each object of a hierarchy file may hold; a key starting with '_' is a comment (the shipped file's `_doc`).
# Another key was ignored: `"fualt": true` marked nothing, and the verdicts never flagged that state.
_FILE_KEYS = ("categories",)
_CATEGORY_KEYS = ("gloss", "cue_zh", "cue_en", "attributes", "fault")
_ATTRIBUTE_KEYS = ("gloss", "states", "fault")
_STATE_KEYS = ("gloss", "fault")


def _keys(path: str | Path, what: str, spec: dict, known: tuple[str, ...]) -> dict:
    """`spec` when every key it holds is one of `known` (or a '_' comment); else a ValueError naming the key."""
    for key in spec:
        if key not in known and not key.startswith("_"):
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"{path}: {what}: unknown key {show_text(key)}{hint}; the keys here are "
                             f"{', '.join(known)}")
    return spec


def _text(path: str | Path, what: str, spec: dict, key: str, default: str) -> str:
    """`spec[key]` (`default` when absent) when it is a string; else a ValueError naming it: a number or a list as a
    gloss failed as a TypeError in `data convert --lang en`, and went into the system prompt as Python's repr."""
    value = spec.get(key, default)
    if not isinstance(value, str):
        shown = "" if value is None else f" {json.dumps(value, ensure_ascii=False)[:40]}"  # not "got null null"
        raise ValueError(f"{path}: {what}: \"{key}\" must be text (a JSON string), got {json_kind(value)}{shown}")
    return value


def _states(path: str, category: str, attribute: str, spec: dict, faults: set[str]) -> dict[str, str]:
    """`{state: gloss}` of one attribute; a state is a gloss or `{"gloss": ..., "fault": true}` (added to `faults`)."""
    out: dict[str, str] = {}
    for state, value in spec.items():
        if isinstance(value, dict):
            what = f"state '{category}/{attribute}/{state}'"
            out[state] = _text(path, what, _keys(path, what, value, _STATE_KEYS), "gloss", state)
            if _fault(path, f"state '{category}/{attribute}/{state}'", value):
                faults.add(SEP.join((category, attribute, state)))
        elif isinstance(value, str):
            out[state] = value
        else:
            raise ValueError(f"{path}: state '{category}/{attribute}/{state}' must be a gloss or an object "
                             f"{{\"gloss\": ..., \"fault\": true}}, got {value!r}")
    return out


def _fault(path: str | Path, what: str, spec: dict) -> bool:
    """Whether `spec` marks `what` as a fault: `"fault": true`; ValueError for a value neither true nor false, since
    Python's truth read the text "false" as a fault and taught its parts as wrong."""
    value = spec.get("fault", False)
    if not isinstance(value, bool) and value is not None:
        raise ValueError(f"{path}: {what}: \"fault\" must be true or false, got {json.dumps(value, ensure_ascii=False)}")
    return bool(value)


def _keyed(names: Iterable[str]) -> dict[str, str]:
    """`{label_key(name): name}`: a category, attribute or state found however it was typed."""
    return {label_key(n): n for n in names}


# A side of the photo in a label: mirrored left to right, the part shown is on the other side under the same label
SIDE_WORDS = re.compile(r"左|右|\b(?:left|right)", re.IGNORECASE)


def side_labels(labels: Iterable[str], hierarchy: Hierarchy) -> list[str]:
    """The labels among `labels` and the hierarchy's whose name or English gloss names a side (左/右, left/right), in
    order, each once as written (with its gloss when only the gloss names it)."""
    found: dict[str, None] = {}
    for label in [*hierarchy.labels(), *labels]:
        gloss = hierarchy.english(label)
        if SIDE_WORDS.search(label):
            found.setdefault(label)
        elif gloss != label and SIDE_WORDS.search(gloss):
            found.setdefault(f"{label} ({gloss})")
    return list(found)


def label_at_level(label: str, level: int | None) -> str:
    """The label's first `level` parts as `label_key` spells them (None or 0 = the full label, as it is): a label typed
    `螺丝连接点 / BBU安装螺丝` or `ＢＢＵ...` is of the category every other spelling of it is (data/text.py)."""
    if not level:
        return label
    return SEP.join(label_key(label).split(SEP)[:level])


def _refuse_alike_tokens(path: Path, tokens: dict[str, str]) -> None:
    """ValueError for two tokens that are one once typed alike (`BBU` and full-width `ＢＢＵ`, a trailing space) but
    map to different names: tokens are looked up by `label_key`, so the later silently replaced the earlier."""
    first: dict[str, str] = {}
    for token, name in tokens.items():
        other = first.setdefault(label_key(token), token)
        if tokens[other] != name:
            raise ValueError(f"{path}: tokens {show_text(other)} and {show_text(token)} are one token however typed, "
                             f"but map to {show_text(tokens[other])} and {show_text(name)}; keep one")


@dataclass(frozen=True)
class TokenMap:
    """Maps platform tokens (each '/'-separated part of a label path) to canonical ones."""

    tokens: dict[str, str]
    source: str = "<builtin>"
    _by_key: dict[str, str] = field(default_factory=dict, repr=False)  # label_key(platform token) -> canonical

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {label_key(k): v for k, v in self.tokens.items()})

    @classmethod
    def load(cls, path: str | Path | None = None) -> "TokenMap":
        """Load a token-map JSON file (the shipped default when `path` is None)."""
        p = Path(path) if path else DEFAULT_TOKEN_MAP
        try:
            raw = read_json(p)
        except (OSError, ValueError) as e:
            raise ValueError(f"{p}: cannot read token map: {str(e).removeprefix(f'{p}: ')}") from e
        tokens = _object(p, "tokens", _object(p, "the file", raw).get("tokens", raw))
        if bad := [k for k, v in tokens.items() if not isinstance(v, str)]:
            raise ValueError(f"{p}: token '{bad[0]}' must map to a name (a string), got {tokens[bad[0]]!r}")
        _refuse_alike_tokens(p, tokens)
        return cls(dict(tokens), source=str(p))

    def map_token(self, token: str) -> str:
        """Canonical name of one token, found however it was typed (itself, cleaned, when unmapped)."""
        key = label_key(token)
        return self._by_key.get(key, self._by_key.get(key.lower(), clean_label(token)))

    def map_path(self, parts: list[str] | str) -> str:
        """Canonical label path from platform parts; empty parts are dropped, nothing else is."""
        if isinstance(parts, str):
            # `／` separates parts as `/` does (data/text.py `clean_label`): a platform's path typed with it was one
            # part no token names, and its fault was read as no label
            parts = parts.replace(FULL_WIDTH_SEP, SEP).split(SEP)
        return SEP.join(self.map_token(p) for p in parts if p and p.strip())
