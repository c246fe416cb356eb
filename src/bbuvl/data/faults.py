"""Which labels are faults, and of which part they are a state: read from the hierarchy file, never written here.

The hierarchy file marks a fault where it is a state (`{"gloss": "wrong", "fault": true}` in place of the state's
gloss) or an attribute without states (`"fault": true` beside its gloss); data/labels.py reads the marks. A fault
label splits into its *kind*, the part being judged (a category/attribute path, or a category), and its *state*
(the label's last part); the kind's states are its children in the hierarchy, faults or not. A label as a platform
spells it is first mapped by the token map (resources/token_map.json). docs/faults.md says why and how to add one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from bbuvl.data.labels import Hierarchy, TokenMap
from bbuvl.data.text import SEP, clean_label, label_key, label_parts

# The verdict's thresholds a checkpoint carries once `bbuvl eval --choose-thresholds` chose them (infer/verdict.py
# reads and writes it); named here, below both, so that copying a checkpoint (model/checkpoint.py) keeps it.
THRESHOLDS_FILE = "verdict_thresholds.json"
TILED_THRESHOLDS_FILE = "verdict_thresholds_tiled.json"  # photos predicted through tiles or zoom


@dataclass(frozen=True)
class FaultKind:
    """A part whose state an inspection judges: its label path, every state the hierarchy allows, those that are faults."""

    kind: str
    states: tuple[str, ...]
    faults: tuple[str, ...]

    def label(self, state: str) -> str:
        """The full label of this kind in `state`."""
        return SEP.join((self.kind, state))


@dataclass(frozen=True)
class FaultCount:
    """How many photos and objects a set holds, and how many of each are faults: whether it can measure them at all."""

    photos: int
    faulty_photos: int
    objects: int
    faults: int

    def describe(self) -> str:
        """One line for a person: '6 of 32 photos hold a fault; 11 faulty parts of 147 objects'."""
        def many(n: int, what: str) -> str:
            return f"{n} {what}{'' if n == 1 else 's'}"

        return (f"{self.faulty_photos} of {many(self.photos, 'photo')} {'holds' if self.photos == 1 else 'hold'} a "
                f"fault; {many(self.faults, 'faulty part')} of {many(self.objects, 'object')}")


@dataclass(frozen=True)
class Faults:
    """The fault labels of one hierarchy: which labels are faults, and each judged part's kind and states."""

    labels: frozenset[str]  # complete canonical label paths that are faults
    kinds: dict[str, FaultKind]  # kind path -> its states; only kinds with at least one fault state
    hierarchy: Hierarchy
    token_map: TokenMap | None = None
    _canonical: dict[str, str | None] = field(default_factory=dict, repr=False, compare=False)
    _known: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, hierarchy: str | Path | Hierarchy | None = None, token_map: str | Path | TokenMap | None = None) -> "Faults":
        """The faults a hierarchy file marks (the shipped one when None), platform spellings read through `token_map`."""
        h = hierarchy if isinstance(hierarchy, Hierarchy) else Hierarchy.load(hierarchy)
        tm = token_map if isinstance(token_map, TokenMap) or token_map is None else TokenMap.load(token_map)
        return cls.of(h, tm if tm is not None else TokenMap.load())

    @classmethod
    def of(cls, hierarchy: Hierarchy, token_map: TokenMap | None = None) -> "Faults":
        """The faults `hierarchy` marks."""
        labels = hierarchy.labels()
        kinds: dict[str, FaultKind] = {}
        for fault in sorted(hierarchy.faults, key=labels.index):
            kind = fault.rsplit(SEP, 1)[0]
            if kind in kinds:
                continue
            states = tuple(label[len(kind) + 1:] for label in labels if label.rsplit(SEP, 1)[0] == kind and SEP in label)
            kinds[kind] = FaultKind(kind, states, tuple(s for s in states if SEP.join((kind, s)) in hierarchy.faults))
        return cls(frozenset(hierarchy.faults), kinds, hierarchy, token_map)

    def canonical(self, label: str) -> str | None:
        """The hierarchy's spelling of `label`, as typed or as the token map maps a platform's spelling; None if neither."""
        if label not in self._canonical:
            found = self.hierarchy.canonical(label)
            if found is None and self.token_map is not None:
                found = self.hierarchy.canonical(self.token_map.map_path(label))
            if found is None:  # a dataset in English (`data convert --lang en`): its faults are the same faults
                found = self.hierarchy.from_english(label)
            if found is None and (parts := SEP.join(label_parts(label))) != label:
                # ... its empty parts dropped, as the token map drops them from a label in the hierarchy's language:
                # a fault so written in its names failed its photo, and in its English glosses (a trailing `/`, `//`)
                # sent it to review as a label not read
                found = self.hierarchy.from_english(parts)
            self._canonical[label] = found
        return self._canonical[label]

    def known_path(self, label: str) -> tuple[str, str]:
        """`(path, rest)`: the hierarchy's spelling of the longest leading parts of `label` that are one of its paths
        (category, category/attribute or full label; however spelt, as `canonical` reads a label), and the parts after
        them, cleaned; `("", label cleaned)` when its first part is no category. `螺丝连接点/BBU安装螺丝/连接错` is
        `("螺丝连接点/BBU安装螺丝", "连接错")`: of the right category and attribute, in an unknown state."""
        if label not in self._known:
            self._known[label] = self._known_path(label)
        return self._known[label]

    def _known_path(self, label: str) -> tuple[str, str]:
        if (full := self.canonical(label)) is not None:
            return full, ""
        typed = [clean_label(part) for part in clean_label(label).split(SEP)]
        keys = label_key(label).split(SEP)
        # Every part may be a path short of a label: a category alone ('机柜空间', whose brand or state went unwritten)
        # was read as no category, and sent its photo to review however far it lies from a fault
        for n in range(len(keys), 0, -1):
            head = SEP.join(keys[:n])
            found = self.hierarchy.path(head)
            if found is None and self.token_map is not None:
                found = self.hierarchy.path(self.token_map.map_path(head))
            if found is not None and found.count(SEP) == n - 1:  # the token map drops empty parts: no longer a head
                return found, SEP.join(typed[n:])
        return "", SEP.join(typed)

    def unjudgeable(self, label: str) -> bool:
        """True when the hierarchy cannot read `label` and it may stand for one of its faults: none of its parts is
        known (a category misspelt), or those that are lead to a fault (`螺丝连接点/BBU安装螺丝/连接错`, a state it
        lacks) or are one (a fault with a part written after it). A verdict never passes a photo on such a
        box (infer/verdict.py); a known part without faults (`bbu基带处理单元/华`) is no fault however it ends."""
        if not self.labels or self.canonical(label) is not None:
            return False
        head, _ = self.known_path(label)
        # A fault the answer went on writing after (its state, then '/松动') was read as no fault, and the photo passed
        return not head or head in self.labels or any(fault.startswith(head + SEP) for fault in self.labels)

    def is_fault(self, label: str) -> bool:
        """True when `label` (however spelt) is a fault the hierarchy marks."""
        return self.canonical(label) in self.labels

    def kind_state(self, label: str) -> tuple[str, str] | None:
        """`(kind, state)` of a label of a judged kind (faulty or not); None for any other label."""
        canonical = self.canonical(label)
        if canonical is None or SEP not in canonical:
            return None
        kind, state = canonical.rsplit(SEP, 1)
        return (kind, state) if kind in self.kinds else None

    def count(self, photos: Iterable[Sequence[str]]) -> FaultCount:
        """The faults among `photos`, each given as its objects' labels."""
        wrong = [(len(labels), sum(map(self.is_fault, labels))) for labels in photos]
        return FaultCount(len(wrong), sum(n > 0 for _, n in wrong), sum(k for k, _ in wrong), sum(n for _, n in wrong))

    def __bool__(self) -> bool:
        return bool(self.labels)
