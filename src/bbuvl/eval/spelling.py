"""Every label of an evaluation in one spelling, the ground truth's, so that COCO AP, label accuracy and the error counts
score as one label, and at `--level` as one category, what the hierarchy reads as one (docs/eval.md).

A label is spelt part by part along the hierarchy's path it names: each level as the ground truth first spells that
level (`a／b`, `a / b`, a full-width `ｂｂｕ`, a platform's token; its labels taken most used first, equal counts in
code-point order, so that the spelling is the same whatever order the files list them in, as every number of `bbuvl
eval` is: eval/order.py), and a level the ground truth never spells in the
ground truth's language (the hierarchy's names, or its English glosses when the ground truth is in English, as `data
convert --lang en` writes). So the first N parts of two labels are one text exactly when they are one path of the
hierarchy, which `label_at_level` (data/labels.py) then cuts. Parts past what the hierarchy knows are kept as typed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Callable, Iterable

from bbuvl.data.faults import Faults
from bbuvl.data.schema import ImageRecord
from bbuvl.data.text import SEP, clean_label, label_key, spelling_of
from bbuvl.eval.predictions import PredictionLine


def one_spelling(records: list[ImageRecord], lines: list[PredictionLine],
                 faults: Faults) -> tuple[list[ImageRecord], list[PredictionLine]]:
    """Ground truth and predictions with each label in the ground truth's spelling (`truth_spelling`); only what
    changes is copied."""
    # A dataset repeats a few dozen labels: spell each distinct one once, and copy only the photos holding one that
    # changes.
    gt_labels = _most_used(Counter(o.desc for r in records for o in r.objects))
    pred_labels = _most_used(Counter(o["label"] for line in lines for o in line.objects))
    spell = truth_spelling(gt_labels, pred_labels, faults)
    respelt = {label: spell(label) for label in dict.fromkeys([*gt_labels, *pred_labels])}
    changed = {label for label, spelt in respelt.items() if spelt != label}
    if not changed:
        return records, lines
    records = [r if not any(o.desc in changed for o in r.objects) else r.model_copy(
        update={"objects": [o.model_copy(update={"desc": respelt[o.desc]}) for o in r.objects]}) for r in records]
    lines = [line if not any(o["label"] in changed for o in line.objects) else replace(
        line, objects=[{**o, "label": respelt[o["label"]]} for o in line.objects]) for line in lines]
    return records, lines


def _most_used(counts: Counter[str]) -> list[str]:
    """The labels counted, most used first, equal counts in code-point order: not in the order a file lists them."""
    return sorted(counts, key=lambda label: (-counts[label], label))


def truth_spelling(gt_labels: list[str], others: Iterable[str], faults: Faults) -> Callable[[str], str]:
    """A function giving any label its spelling under the ground truth `gt_labels` (see the module docstring); a label
    the hierarchy does not know at all is given the first spelling of it, the ground truth's before `others`."""
    plain = spelling_of([*gt_labels, *others])
    english = _in_english(gt_labels, faults)
    spelt = _spelt_levels(gt_labels, faults, english)

    def spell(label: str) -> str:
        path, rest = faults.known_path(label)
        if not path:
            return plain(label)
        names = path.split(SEP)
        own = faults.hierarchy.english(path).split(SEP) if english else names
        parts = [spelt.get(SEP.join(names[:n]), own)[n - 1] for n in range(1, len(names) + 1)]
        read = SEP.join([*parts, rest] if rest else parts)
        # Respelt, a label is judged as predict judges it as typed, or kept as typed: its parts in two languages (a
        # category's English gloss before a state's Chinese name; a sound label in two languages, then a word) spelt in
        # the truth's became a fault, or a sound part, of a photo `bbuvl predict` sends to review for a label the
        # hierarchy cannot judge
        same = faults.canonical(read) == faults.canonical(label) and faults.unjudgeable(read) == faults.unjudgeable(label)
        return read if same else plain(label)

    return spell


def _written(label: str, faults: Faults) -> tuple[str, list[str]]:
    """The hierarchy path `label` starts with and its parts as typed (cleaned) up to that path's end."""
    path, _ = faults.known_path(label)
    return path, [clean_label(part) for part in clean_label(label).split(SEP)][:path.count(SEP) + 1] if path else []


def _in_english(gt_labels: list[str], faults: Faults) -> bool:
    """Whether more of the ground truth's known labels are typed as the hierarchy's English glosses than as its names
    (or a platform's tokens for them): the language a level the ground truth never spells is written in."""
    english = other = 0
    for label in gt_labels:
        path, typed = _written(label, faults)
        if path:
            gloss, key = label_key(faults.hierarchy.english(path)), label_key(SEP.join(typed))
            english += key == gloss != label_key(path)
            other += key != gloss
    return english > other


def _spelt_levels(gt_labels: list[str], faults: Faults, english: bool) -> dict[str, list[str]]:
    """Each hierarchy path the ground truth spells -> its parts as the ground truth first spells them, in its language
    (a label typed in the other one is spelt in this one: its mixed parts would be no label the hierarchy reads)."""
    out: dict[str, list[str]] = {}
    for label in gt_labels:
        path, typed = _written(label, faults)
        gloss = label_key(faults.hierarchy.english(path)) if path else ""
        if not path or (label_key(SEP.join(typed)) == gloss) != english and gloss != label_key(path):
            continue
        names = path.split(SEP)
        for n in range(1, len(names) + 1):
            out.setdefault(SEP.join(names[:n]), typed[:n])
    return out
