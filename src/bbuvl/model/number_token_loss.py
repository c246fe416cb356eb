"""Number-token loss ("Regress, Don't Guess", Zausinger et al., ICML 2025): a regression-like term on answer digits.

Cross-entropy scores a coordinate digit predicted 1 off the same as one predicted 8 off. This term adds, at every
supervised position whose target is a digit token, the Wasserstein-1 distance between the model's distribution
over the ten digit tokens and the target digit. With a one-hot target that distance is the expected absolute
error of the digit, `sum_k p_k * |k - y|`, so a near miss costs less than a far one. Why this form and not the
paper's MSE one, which positions count and what the sums are divided by: docs/number_token_loss.md.

It needs a tokenizer that writes each digit of a number as its own token (Qwen's do); `digit_token_ids` checks
that and names the tokenizer when it does not.
"""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.nn.functional as F

from bbuvl.encode.chat import SPAN_STUDENT, SPAN_TEACHER

DIGITS = "0123456789"
# Every number an answer can write: 0-1000 for the relative families, frame pixels below 10000 for the absolute one.
PROBE_NUMBERS = range(10_000)
PROBE_NUMBERS_PER_ANSWER = 1000  # one encode call per 1000 numbers stays below any tokenizer's length warning


def _probe_answers() -> list[str]:
    """Every probe number as answers write coordinates (encode/chat.py:format_answer): boxes of four, each number
    after ' [' or ', ' and before ',' or ']'. Only the numbers: a digit elsewhere (`bbox_2d`) is no coordinate."""
    numbers = list(PROBE_NUMBERS)
    answers = []
    for start in range(0, len(numbers), PROBE_NUMBERS_PER_ANSWER):
        chunk = numbers[start:start + PROBE_NUMBERS_PER_ANSWER]
        answers.append(json.dumps([chunk[i:i + 4] for i in range(0, len(chunk), 4)]))
    return answers


def digit_token_ids(tokenizer: Any) -> torch.Tensor:
    """Ids of the tokens '0'..'9' in digit order, `[10]`.

    ValueError naming the tokenizer when a digit is not one token by itself, or when answers would write a digit
    inside a longer token ('12', ' 1'): the loss reads one digit per position.
    """
    name = f"the tokenizer of {tokenizer.name_or_path or '(unnamed)'} ({type(tokenizer).__name__})"
    advice = "set loss.number_token: 0, or train a model whose tokenizer splits digits (docs/number_token_loss.md)"
    ids = []
    for digit in DIGITS:
        encoded = tokenizer.encode(digit, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"loss.number_token needs every digit to be one token, but {name} writes '{digit}' as "
                             f"{len(encoded)} tokens {tokenizer.convert_ids_to_tokens(encoded)}; {advice}")
        ids.append(encoded[0])
    digit_ids = set(ids)
    for answer in _probe_answers():
        encoded = tokenizer.encode(answer, add_special_tokens=False)
        for token_id, piece in zip(encoded, tokenizer.convert_ids_to_tokens(encoded)):
            if token_id not in digit_ids and any(c in DIGITS for c in piece):
                raise ValueError(f"loss.number_token needs a tokenizer that writes every digit of a number as its own "
                                 f"token (Qwen's do), but {name} writes {tokenizer.decode([token_id])!r} as one token "
                                 f"in an answer; {advice}")
    return torch.tensor(ids, dtype=torch.long)


def span_number_token_loss(hidden: torch.Tensor, lm_head: torch.nn.Module, labels: torch.Tensor, span_ids: torch.Tensor,
                           digit_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Wasserstein-1 distance of the predicted digit to the target digit, summed over (teacher, student) answers.

    hidden: [B, L, H] last hidden states; labels / span_ids: [B, L] (unshifted, as the collator builds them);
    digit_ids: [10] the ids of '0'..'9' (`digit_token_ids`). Position t counts when its next label is a digit
    token (IGNORE_INDEX never is, so only supervised answer digits do); each span's sum is a 0 still in the
    graph when it has no digit.
    """
    next_labels, next_spans = labels[:, 1:], span_ids[:, 1:]  # [B, L-1]: what position t predicts
    is_digit = next_labels.unsqueeze(-1) == digit_ids  # [B, L-1, 10]
    at = is_digit.any(-1)  # [B, L-1]
    values = torch.arange(len(DIGITS), device=labels.device)  # [10]
    target = (is_digit[at].long() * values).sum(-1)  # [N] the digit each position must write
    spans = next_spans[at]  # [N]
    # Only the ten digit rows of the LM head: the distribution is over digits alone (docs/number_token_loss.md),
    # and a [N, vocab] logits tensor is never built. The head is a plain Linear: LoRA and quantisation skip it.
    bias = None if getattr(lm_head, "bias", None) is None else lm_head.bias[digit_ids]
    logits = F.linear(hidden[:, :-1][at], lm_head.weight[digit_ids], bias).float()  # [N, 10]
    probs = logits.softmax(-1)
    distance = (values.unsqueeze(0) - target.unsqueeze(1)).abs().to(probs.dtype)  # [N, 10]: |k - y|
    w1 = (probs * distance).sum(-1)  # [N]
    return w1[spans == SPAN_TEACHER].sum(), w1[spans == SPAN_STUDENT].sum()
