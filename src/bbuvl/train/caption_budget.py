"""Labels the detection head cannot caption: refused before the first step, each named with its first photo's line.

The head writes a label as a caption of at most `detection.caption_max_tokens` tokens with its end
(model/detection_head.py); the loss refused a longer one only at the step that drew its photo, after every step before
it, naming "image 1 of the batch" and neither the label nor its line.
"""

from __future__ import annotations

from typing import Any, Sequence

from bbuvl.data.text import short_words, show_text
from bbuvl.train.dataset import SampleSource, SourcedRecord, locate


def long_caption_problem(sources: Sequence[SampleSource], tokenizer: Any, max_tokens: int) -> str | None:
    """Why the longest caption among `sources`' labels (as the training samples tokenise them) cannot be learnt with
    its end in `max_tokens` tokens, naming the label and its first photo; None when every one fits."""
    longest: tuple[int, str, SourcedRecord] | None = None
    seen: set[str] = set()
    for source in sources:
        for o in source.student.record.objects:
            if o.desc in seen:
                continue
            seen.add(o.desc)
            tokens = len(tokenizer.encode(o.desc, add_special_tokens=False))
            if tokens + 1 > max_tokens and (longest is None or tokens > longest[0]):
                longest = (tokens, o.desc, source.student)
    if longest is None:
        return None
    tokens, label, record = longest
    return (f"detection.caption_max_tokens ({max_tokens}) is shorter than the caption of label "
            f"{short_words(show_text(label))} ({tokens} tokens and its end), first at {locate([record])[0]}; raise "
            f"detection.caption_max_tokens to {tokens + 1}, or shorten the label")
