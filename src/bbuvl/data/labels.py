"""The label hierarchy (`category/attribute[/state]`) and the platform-token map, both loaded from data files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

SEP = "/"


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
    _paths: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Hierarchy":
        """Load a hierarchy JSON file (the shipped default when `path` is None)."""
        return _load_hierarchy(str(Path(path).resolve()) if path else str(DEFAULT_HIERARCHY))

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

    def is_valid(self, label: str) -> bool:
        """True when `label` is a complete path of the hierarchy."""
        return label in self._paths

    def problem(self, label: str) -> str | None:
        """None for a valid label, else a sentence saying what is wrong with it."""
        if label in self._paths:
            return None
        parts = label.split(SEP)
        cat = self.categories.get(parts[0])
        if cat is None:
            return f"unknown category '{parts[0]}' (known: {', '.join(self.categories)})"
        if not cat.attributes:
            return f"category '{cat.name}' takes no attribute, got '{label}'"
        if len(parts) < 2:
            return f"label '{label}' lacks an attribute (one of: {', '.join(cat.attributes)})"
        attr = cat.attributes.get(parts[1])
        if attr is None:
            return f"unknown attribute '{parts[1]}' for '{cat.name}' (known: {', '.join(cat.attributes)})"
        states = attr[1]
        if states and len(parts) < 3:
            return f"label '{label}' lacks a state (one of: {', '.join(states)})"
        if states and parts[2] not in states:
            return f"unknown state '{parts[2]}' for '{cat.name}/{parts[1]}' (known: {', '.join(states)})"
        return f"label '{label}' has too many parts"

    def english(self, label: str) -> str:
        """The English gloss of a label path, part by part (unknown parts kept as they are)."""
        parts = label.split(SEP)
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


@lru_cache(maxsize=16)
def _load_hierarchy(path: str) -> Hierarchy:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read label hierarchy: {e}") from e
    cats: dict[str, Category] = {}
    for name, spec in raw.get("categories", {}).items():
        attrs = {
            a: (aspec.get("gloss", a), dict(aspec.get("states", {})))
            for a, aspec in spec.get("attributes", {}).items()
        }
        cats[name] = Category(name, spec.get("gloss", name), spec.get("cue_zh", ""), spec.get("cue_en", ""), attrs)
    if not cats:
        raise ValueError(f"{path}: label hierarchy has no 'categories'")
    h = Hierarchy(cats, source=path)
    object.__setattr__(h, "_paths", frozenset(h.labels()))
    return h


def label_at_level(label: str, level: int | None) -> str:
    """The label truncated to its first `level` parts (None or 0 = the full label)."""
    if not level:
        return label
    return SEP.join(label.split(SEP)[:level])


@dataclass(frozen=True)
class TokenMap:
    """Maps platform tokens (each '/'-separated part of a label path) to canonical ones."""

    tokens: dict[str, str]
    source: str = "<builtin>"

    @classmethod
    def load(cls, path: str | Path | None = None) -> "TokenMap":
        """Load a token-map JSON file (the shipped default when `path` is None)."""
        p = Path(path) if path else DEFAULT_TOKEN_MAP
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{p}: cannot read token map: {e}") from e
        return cls(dict(raw.get("tokens", raw)), source=str(p))

    def map_token(self, token: str) -> str:
        """Canonical name of one token (itself when unmapped)."""
        token = token.strip()
        return self.tokens.get(token, self.tokens.get(token.lower(), token))

    def map_path(self, parts: list[str] | str) -> str:
        """Canonical label path from platform parts; empty parts are dropped, nothing else is."""
        if isinstance(parts, str):
            parts = parts.split(SEP)
        return SEP.join(self.map_token(p) for p in parts if p and p.strip())
