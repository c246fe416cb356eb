"""Labels the validation set holds and no training photo does: named once at the start of a run.

The prompt names the labels of data.train and data.val alike (run_inputs.py), so such a label is offered to the model
and written by the checkpoint's grammar, yet no step teaches it: every evaluation's loss keeps its objects at the
untrained model's cost, and a split that put a rare part's only photos in validation trained as if all were well.
"""

from __future__ import annotations

from bbuvl.data.text import label_key, show_text
from bbuvl.train.dataset import SampleSource, SourcedRecord, locate

SHOWN = 5  # labels named in the note; the count covers them all


def val_only_note(train: list[SampleSource], val: list[SampleSource], key: str = "data.val") -> str | None:
    """One warning naming each label of `val` no photo of `train` holds (however typed), with its objects and the
    `file:line` of its first photo; None when training holds every one."""
    trained = {label_key(o.desc) for s in train for o in s.student.record.objects}
    found: dict[str, tuple[str, SourcedRecord]] = {}  # key -> the label as first typed, its first photo
    counts: dict[str, int] = {}
    for s in val:
        for o in s.student.record.objects:
            if (k := label_key(o.desc)) not in trained:
                found.setdefault(k, (o.desc, s.student))
                counts[k] = counts.get(k, 0) + 1
    if not found:
        return None
    shown = list(found)[:SHOWN]
    where = locate([found[k][1] for k in shown])
    named = "; ".join(f"{show_text(found[k][0])} ({counts[k]} object{'s' if counts[k] > 1 else ''}, first at {at})"
                      for k, at in zip(shown, where))
    more = f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""
    return (f"{key} holds {len(found)} label(s) no training photo has: {named}{more}. The prompt offers them, but "
            "no step teaches them, and every evaluation's loss counts their objects at what the untrained model makes "
            "of them; give data.train photos of them, or move their photos there from data.val")
