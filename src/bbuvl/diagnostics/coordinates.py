"""Does the language model know where an object is before it writes its box? (`bbuvl doctor coordinates`)

Generate mode writes `[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]` token by token. When its boxes miss,
two failures look alike in AP: the model may not know where the object is when it starts a coordinate
(the answer's hidden state never gathered the object's position from the image), or it may know and fail
to spell the number in digits. This tells them apart with a linear probe (Alain & Bengio 2016): each
photo is fed with its true answer (teacher forcing, exactly as in training), the hidden state after every
layer is read at the position that predicts each coordinate's first digit, and a ridge regression from it
to the coordinate's value is scored by cross-validated R² (1 = the value can be read off linearly, 0 = no
better than the mean coordinate). Beside it, the R² of the coordinates already written (x1 and y1 for x2):
a model can write x2 from x1 and a typical width without looking, so only x1 and y1 show whether it looked.
And the R² of the box before it in the answer (its four numbers, none for the first) with the box's place there:
answers list their boxes by y1, so on a photo of several objects the previous box's y1 and the count so far predict
this one's, and an untrained model's last layer, which has read them, gave y1 at 0.85 where they alone give 0.91 (a
baseline that took the previous row of the table, the last box of the previous photo for each first box, gave 0.48:
the rows must be grouped by answer). The verdict weighs the probe against the better of the two baselines (`beyond`).
And the R² of the mean of the photo's own image tokens at each layer: what the image holds for an answer that
attended to all of it evenly (a photo with one object; with several, the mean is of the whole scene).
docs/localisation.md has what it measured on the demo's models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bbuvl.encode.chat import IGNORE_INDEX, SPAN_STUDENT, answer_boxes
from bbuvl.encode.collate import Batch
from bbuvl.model.vlm import core_model

COORDINATES = ("x1", "y1", "x2", "y2")
ALPHAS = np.logspace(-3, 4, 15)
MIN_OBJECTS = 10  # fewer rows than this cannot be cross-validated five ways with any meaning


@dataclass
class CoordinateProbe:
    """Cross-validated R² of each coordinate, read from each layer's hidden state and from the coordinates before it."""

    objects: int  # rows probed: one per object of the answers
    r2: list[list[float]]  # [layers + 1][4]: row 0 the input embeddings, row L the last layer's output
    from_written: list[float]  # [4]: R² from the true values of the coordinates written before it (x1: 0.0)
    from_previous: list[float]  # [4]: R² from the box before it in its answer and the box's place there
    image_r2: list[list[float]]  # [layers + 1][4]: R² from the mean of the photo's image tokens at each layer
    values: np.ndarray  # [objects, 4] the coordinates as the answers write them (model frame)

    def baseline(self, k: int) -> float:
        """The better R² of coordinate `k` from what its answer wrote before it (0 at worst: a baseline explains no
        less than the mean)."""
        return max(0.0, self.from_written[k], self.from_previous[k])

    def beyond(self, k: int, layer: int = -1) -> float:
        """The share of coordinate `k`'s variance that the better baseline leaves and `layer`'s probe explains:
        `(R² - baseline) / (1 - baseline)`; the probe's R² itself where no baseline explains anything (one box a
        photo), 0 where the baseline explains it all."""
        base = self.baseline(k)
        return 0.0 if base >= 1.0 else (self.r2[layer][k] - base) / (1.0 - base)


def coordinate_positions(token_texts: list[str], supervised: list[bool]) -> list[tuple[list[int], list[int]]]:
    """For each box of one answer: the index of each coordinate's first digit token, and the four values.

    token_texts: every token of the sequence decoded alone; supervised: which tokens are the student's answer.
    A box counts only when its four numbers start on token boundaries (digits split, as Qwen's tokenizers do).
    """
    begins: dict[int, int] = {}  # character offset in the answer -> the token starting there
    pieces, offset = [], 0
    for i, (piece, sup) in enumerate(zip(token_texts, supervised)):
        if sup:
            begins[offset] = i
            pieces.append(piece)
            offset += len(piece)
    answer = "".join(pieces)
    found = []
    for values, chars in answer_boxes(answer):
        tokens = [begins.get(start) for start, _ in chars]
        if all(t is not None for t in tokens):
            found.append(([int(t) for t in tokens if t is not None], values))
    return found


def previous_box(values: list[list[int]], index: int) -> list[float]:
    """What an answer wrote before its box `index`: the box before it (zeros for the first), 1 for the first box
    (else 0), and `index`, the boxes before it."""
    before = [float(v) for v in values[index - 1]] if index > 0 else [0.0] * 4
    return [*before, float(index == 0), float(index)]


def probe_rows(model: Any, tokenizer: Any,
               batches: list[Batch]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hidden states `[objects, layers + 1, 4, hidden]` before each coordinate's first digit, the mean of the
    photo's image tokens `[objects, layers + 1, hidden]`, the coordinates' values `[objects, 4]` and what each box's
    answer wrote before it `[objects, 6]` (`previous_box`, over the boxes probed in that answer)."""
    core = core_model(model.vlm)
    device = next(model.parameters()).device
    states, images, values, previous = [], [], [], []
    for batch in batches:
        batch = batch.to(device)
        with torch.no_grad():
            out = core.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                             position_ids=batch.position_ids, pixel_values=batch.pixel_values,
                             image_grid_thw=batch.image_grid_thw, use_cache=False, output_hidden_states=True,
                             return_dict=True)
        layers = out.hidden_states  # (layers + 1) x [B, L, D]; not stacked: for a 3B model that copy is gigabytes
        pads = batch.det_vision_mask  # the student photo's image tokens, one sample a row (padded batches)
        for row in range(batch.input_ids.shape[0]):
            ids = batch.input_ids[row].tolist()
            supervised = ((batch.labels[row] != IGNORE_INDEX) & (batch.span_ids[row] == SPAN_STUDENT)).tolist()
            texts = [tokenizer.decode([t]) if sup else "" for t, sup in zip(ids, supervised)]  # only the answer is read
            boxes = coordinate_positions(texts, supervised)
            if not boxes:
                continue
            image_mean = torch.stack([h[row, pads[row]].float().mean(dim=0) for h in layers]).cpu().numpy()
            for index, (tokens, vals) in enumerate(boxes):
                # The hidden state at t - 1 is what predicts the token at t (the causal shift of the LM loss).
                before = [t - 1 for t in tokens]
                states.append(torch.stack([h[row, before].float() for h in layers]).cpu().numpy())
                images.append(image_mean)
                values.append(vals)
                previous.append(previous_box([v for _, v in boxes], index))  # this answer's, never the row before
    if not states:
        return (np.zeros((0, 0, 4, 0), np.float32), np.zeros((0, 0, 0), np.float32), np.zeros((0, 4)),
                np.zeros((0, 6)))
    return (np.stack(states), np.stack(images), np.asarray(values, dtype=np.float64),
            np.asarray(previous, dtype=np.float64))


def cross_validated_r2(x: np.ndarray, y: np.ndarray, folds: int = 5) -> float:
    """R² of a ridge regression from `x` `[N, F]` to `y` `[N]`, each row predicted by a model that never saw it.

    Features are standardised within each fold, and each prediction is clipped to the range of the values its
    model trained on: hidden units differ in scale by orders of magnitude, and a unit that is nearly constant in
    the training rows but not in a held-out one would otherwise throw that row's prediction far out (a probe says
    what can be read, so no coordinate outside what it was shown).
    """
    if np.ptp(y) == 0:
        return 0.0
    pred = np.empty_like(y, dtype=np.float64)
    for train, held in KFold(folds, shuffle=True, random_state=0).split(x):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS)).fit(x[train], y[train])
        pred[held] = np.clip(model.predict(x[held]), y[train].min(), y[train].max())
    return float(r2_score(y, pred))


def probe_coordinates(model: Any, tokenizer: Any, batches: list[Batch]) -> CoordinateProbe:
    """Probe every layer for every coordinate on the teacher-forced answers of `batches`."""
    states, images, values, previous = probe_rows(model, tokenizer, batches)
    if len(values) < MIN_OBJECTS:
        photos = sum(int(b.input_ids.shape[0]) for b in batches)
        raise ValueError(f"the answers of the {photos} photos probed held {len(values)} boxes; the probe needs at least "
                         f"{MIN_OBJECTS}: pass more photos with objects (--samples, --data)")
    layers = states.shape[1]
    r2 = [[cross_validated_r2(states[:, layer, k], values[:, k]) for k in range(4)] for layer in range(layers)]
    written = [0.0] + [cross_validated_r2(values[:, :k], values[:, k]) for k in range(1, 4)]
    from_previous = [cross_validated_r2(previous, values[:, k]) for k in range(4)]
    image = [[cross_validated_r2(images[:, layer], values[:, k]) for k in range(4)] for layer in range(layers)]
    return CoordinateProbe(objects=len(values), r2=r2, from_written=written, from_previous=from_previous,
                           image_r2=image, values=values)


def verdict(probe: CoordinateProbe) -> tuple[bool, str]:
    """Whether the last layer knows where a box starts (x1 or y1), and the sentence that says so or why not.

    Known: its R² of x1 or y1 is at least 0.5 and it explains at least half of what the better baseline (the
    coordinates written before it, the box before it and its place) leaves; where one box a photo leaves no baseline
    anything, the R² alone, as before. On several objects a photo, answers listed by y1 made an untrained model's y1
    read at 0.85, said as known, where the box before it alone gave 0.91."""
    last = len(probe.r2) - 1
    known = max(probe.r2[last][0], probe.r2[last][1])
    if known < 0.5:
        return False, (f"the last layer does not know where a box starts (R² of x1, y1 at most {known:.2f}): generate "
                       "mode cannot place boxes yet; its misses are not a matter of spelling digits")
    k = max((0, 1), key=probe.beyond)
    name, r2, base, beyond = COORDINATES[k], probe.r2[last][k], probe.baseline(k), probe.beyond(k)
    if beyond < 0.5:
        k = max((0, 1), key=lambda i: probe.r2[last][i])
        return False, (f"the last layer reads {COORDINATES[k]} at R² {probe.r2[last][k]:.2f}, but what its answer wrote "
                       f"before it gives {probe.baseline(k):.2f} (the box before it and its place: answers list their "
                       "boxes by y1): the probe reads the answer's order, not where the photo's objects are, and "
                       "generate mode cannot place boxes yet")
    return True, (f"the last layer knows where a box starts: R² of {name} {r2:.2f}, where what its answer wrote before "
                  f"it gives {base:.2f} ({beyond:.2f} of the rest explained); misses of generate mode are then a matter "
                  "of spelling the digits")
