"""The scale `tiles: auto` shows photos at, when `bbuvl choose-tiles` chose it on validation photos.

`auto` cuts a photo into the grid whose tiles, each filling the model's frame, show it at a scale: frame pixels per
stored pixel. By default that is the scale the checkpoint trained at (data/scale.py), which assumes new photos show
a part with as many pixels as the training photos did. A whole-cabinet photo taken at another resolution does not:
the demo's 1792x1344 cabinets show a screw at about 1.5 times its close-up size, and the grid chosen by the training
scale (4x4) found fewer of their faults than a coarser one (docs/faults_learning.md, "Whole cabinets: the grid").
The scale that finds the most on photos like the ones to predict is measured there, not guessed: `bbuvl
choose-tiles` predicts validation photos at each candidate scale and writes the best into the checkpoint
(`tile_scale.json`), which `auto` then uses in place of the training scale (`inference.tile_zoom` still wins).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bbuvl.atomic import write_text_atomic
from bbuvl.data.jsonfile import read_json
from bbuvl.data.scale import TILE_SCALE_FILE
from bbuvl.model.identity import CHOSEN_FOR_ANOTHER, chosen_for_another, trained_identity

TOOL = "bbuvl choose-tiles"
WITHIN = 0.5  # standard errors under the best score within which a cheaper candidate is taken (eval/tile_choice.py)
# Standard errors a category's gain from the tiles' refinement must exceed to be kept: on 16 choosing cabinets one
# seed's BBUs gained 1.5 errors from a refinement that lost them AP on 15 of 24 unseen seeds (docs/tiles.md, "Thin parts
# from the tiles").
REFINE_WITHIN = 2.0


@dataclass(frozen=True)
class Candidate:
    """One scale tried: the grids it gave the validation photos (`COLSxROWS` -> photos) and what it scored."""

    scale: float
    grids: dict[str, int]
    score: float | None  # the metric on the validation photos (None: nothing to score, e.g. no object)
    passes: int  # model passes over all the validation photos (tiles and the whole photo)
    # The jackknife standard error (each photo left out in turn) of the best candidate's score minus this one's: how
    # far apart two grids score on photos like these by chance (None: not measured, e.g. a single photo).
    spread: float | None = None


@dataclass(frozen=True)
class RefineScore:
    """One category the whole pass answers for, scored with and without the tiles' refinement (infer/tile_refine.py)."""

    category: str
    without: float | None  # the metric at the category level, the whole pass's boxes as they are
    refined: float | None  # ... with their short side and state from the tiles
    spread: float | None  # the jackknife standard error of (refined - without) over the photos
    kept: bool  # refined gained more than REFINE_WITHIN (or the asked number of) standard errors


@dataclass(frozen=True)
class ChosenTileScale:
    """The scale `auto` shows photos at, chosen on validation photos, with every candidate's score."""

    scale: float
    metric: str  # what was compared (e.g. "AP50": COCO AP50 per label)
    train_scale: float  # the checkpoint's own training scale, the default it replaces
    candidates: list[Candidate]
    photos: int
    chosen_on: str  # the ground truth it was chosen on
    notes: list[str] = field(default_factory=list)
    refine: list[str] = field(default_factory=list)  # the categories the tiles refine at this scale (kept below)
    refine_scores: list[RefineScore] = field(default_factory=list)
    # The checkpoint's `trained_identity` when it was written into it (None: not recorded): a scale in a checkpoint
    # whose training record differs was chosen on another model's predictions (`for_model`).
    model: str | None = None
    # The prediction mode its candidates were predicted and scored in (None: a file written before it was recorded).
    # `auto` in another mode still shows photos at it (`scale_of_other_mode`).
    mode: str | None = None
    # What ties it to the tiled photos' verdict thresholds `choose-tiles` wrote with it or kept (their `pair`; None: not
    # recorded): a pair whose id is another's is of another run (infer/verdict.py `unpaired`).
    pair: str | None = None

    def save(self, checkpoint: str | Path) -> Path:
        """Write tile_scale.json into the checkpoint folder (atomically), recording the model it was chosen for."""
        body = {"tool": TOOL, **asdict(self), "model": trained_identity(checkpoint)}
        text = json.dumps(body, ensure_ascii=False, indent=2) + "\n"
        return write_text_atomic(Path(checkpoint) / TILE_SCALE_FILE, text)

    @classmethod
    def load(cls, checkpoint: str | Path) -> "ChosenTileScale | None":
        """The chosen scale in a checkpoint folder (None when it has none); ValueError naming the file when damaged."""
        path = Path(checkpoint) / TILE_SCALE_FILE
        if not path.is_file():
            return None
        data = read_json(path, "tile scale")
        try:
            if not isinstance(data, dict) or data.pop("tool", None) != TOOL:
                raise ValueError(f"not written by `{TOOL}`")
            data["candidates"] = [Candidate(**c) for c in data.get("candidates", [])]
            data["refine_scores"] = [RefineScore(**r) for r in data.get("refine_scores", [])]
            chosen = cls(**data)
            if not isinstance(chosen.refine, list) or not all(isinstance(c, str) for c in chosen.refine):
                raise ValueError(f"refine must be a list of category names, got {chosen.refine!r}")
            if chosen.mode is not None and not isinstance(chosen.mode, str):
                raise ValueError(f"mode must be the name of a prediction mode, got {chosen.mode!r}")
            if chosen.model is not None and not isinstance(chosen.model, str):
                raise ValueError(f"model must be the checkpoint's digest, got {chosen.model!r}")
            if chosen.pair is not None and not isinstance(chosen.pair, str):
                raise ValueError(f"pair must be the id of the pair it was chosen with, got {chosen.pair!r}")
            scale = chosen.scale
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
                raise ValueError(f"scale must be a positive number, got {chosen.scale!r}")
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a tile scale ({e}); choose again with `{TOOL}` or delete the file") from e
        return chosen


def for_model(chosen: ChosenTileScale | None, model: str | None,
              where: Path) -> tuple[ChosenTileScale | None, str | None]:
    """`chosen` when it was chosen for the checkpoint whose `trained_identity` is `model` (or either is not recorded),
    else None and the sentence saying why it is left out (`where`: its file)."""
    if chosen is None or not chosen_for_another(chosen.model, model):
        return chosen, None
    return None, (f"{where} {CHOSEN_FOR_ANOTHER}: `tiles: auto` shows photos at the training scale instead; choose "
                  f"again with `{TOOL}`")


def scale_of_other_mode(chosen: ChosenTileScale | None, mode: str) -> str | None:
    """The sentence saying that `tiles: auto` in `mode` shows photos at a scale chosen in another mode; None when it was
    chosen in `mode`, or its mode is not recorded.

    The scale is kept all the same: it measures how large the parts of photos like these are against the training
    photos, which no mode changes, where the training scale it would fall back to assumes they are as large. Which grid
    scores best can still differ between modes (a grid's tiles are read by the head or written out token by token), so
    the note says how to measure it in this one.
    """
    if chosen is None or chosen.mode is None or chosen.mode == mode:
        return None
    return (f"{TILE_SCALE_FILE} chose scale {chosen.scale:g} on {chosen.mode} mode's predictions: `tiles: auto` in "
            f"{mode} mode shows photos at it all the same, unmeasured in this mode; `{TOOL} --mode {mode}` measures "
            f"{mode} mode's own")
