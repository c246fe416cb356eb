"""`PredictOptions`: how to predict beyond the mode, validated once, each defaulting to the checkpoint's config.

Options arrive by name (from the CLI, from Python callers); a name that is not an option is an error naming
the closest one, never silently ignored, and a value out of range is refused by the config's own checks
(`InferenceConfig`), so the bounds are written once.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bbuvl.config import InferenceConfig
from bbuvl.data.regions import parse_grid
from bbuvl.infer.tiles import TilePlan
from bbuvl.infer.verdict import (FramedThresholds, VerdictThresholds, config_thresholds, framed_thresholds,
                                 hidden_below_score_threshold)


class PredictOptions(BaseModel):
    """Every option a prediction mode reads (infer/modes/); see `InferenceConfig` for what each means."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    constrained: bool  # answers (generate, teachers) and captions (head, name) kept to the checkpoint's labels
    score_threshold: float  # objects scoring below are dropped
    objectness_threshold: float  # head, name: queries at least this sure an object is there
    nms_iou: float | None  # head, name: duplicates above this IoU removed (None: no NMS)
    max_new_tokens: int  # generate, teachers: the answer's token budget
    batch_rows: int = Field(gt=0)  # name: boxes named per forward pass
    tiles: str = "off"  # every mode: "off", "auto" or COLSxROWS (docs/tiles.md)
    tile_overlap: float = 0.15
    tile_stride: float | None = None
    tile_zoom: float | None = None
    tile_whole: bool = True
    zoom_containers: tuple[str, ...] = ()
    merge_overlap: float = 0.6
    labels_per_box: int = 1  # head: the likeliest labels reported per box
    part_nms: float | None = None  # head, name: one box a part above this IoU (modes/head.py, `one_box_per_part`)
    tile_whole_above: float | None = None
    tile_drop_cut: bool = False
    tile_refine: tuple[str, ...] | None = None  # None: the categories `bbuvl choose-tiles` chose (`plan`'s `chosen_refine`)
    tile_queries: int | None = None  # head, name: the head's queries in each tile's pass (None: all)
    queries: int | None = Field(None, ge=1)  # head, name: the head's queries in every pass (None: all)
    tile_auto_parts: bool = False  # auto: the grid from the whole pass's part sizes (TilePlan.part_sides)
    verdict_review: float = 0.25  # a fault scoring at least this sends the photo to review (infer/verdict.py)
    verdict_fail: float = 0.5  # ... at least this fails it
    verdict_review_tiled: float | None = None  # the same for a photo predicted through tiles or zoom (None: as above)
    verdict_fail_tiled: float | None = None

    def plan(self, train_scale: float | None = None, part_sides: tuple[tuple[str, float], ...] = (),
             long_sides: tuple[tuple[str, float], ...] = (), chosen_refine: tuple[str, ...] = ()) -> TilePlan | None:
        """The tiles-and-zoom plan these options ask for; None for one pass over the whole photo.

        `auto` shows each tile at `tile_zoom` when given, else at `train_scale` (the scale the checkpoint trained at,
        data/scale.py), else at the photo's full size. `part_sides` and `long_sides`: each category's trained side and
        longest side (data/scale.py); who answers for a category goes by its longest side where the checkpoint has them.
        `chosen_refine`: the categories the tiles refine when `tile_refine` is None (infer/tile_refine.py).
        """
        if self.tiles == "off" and not self.zoom_containers:
            return None
        grid = None if self.tiles in ("off", "auto") else parse_grid(self.tiles)
        return TilePlan(grid=grid, auto=self.tiles == "auto", overlap=self.tile_overlap, stride=self.tile_stride,
                        zoom=self.tile_zoom, whole=self.tile_whole, containers=tuple(self.zoom_containers),
                        min_overlap=self.merge_overlap,
                        train_scale=self.tile_zoom or train_scale or 1.0, whole_above=self.tile_whole_above,
                        drop_cut=self.tile_drop_cut, part_sides=part_sides if self.tile_auto_parts else (),
                        whole_sides=(long_sides or part_sides) if self.tile_whole_above is not None else (),
                        whole_by_longest=bool(long_sides),
                        refine=tuple(self.tile_refine) if self.tile_refine is not None else tuple(chosen_refine))

    def thresholds(self, tiled: bool = False) -> VerdictThresholds:
        """The verdict's thresholds for a photo predicted in one pass, or through tiles or zoom (`tiled`)."""
        return config_thresholds(self, tiled)

    def framed(self) -> FramedThresholds:
        """The verdict's thresholds for each framing (`tiled` None when tiled photos are judged as the others)."""
        return framed_thresholds(self)

    def hidden_faults(self) -> str | None:
        """What `score_threshold` hides from the verdict of the photos these options predict, in words; None when it
        hides nothing (`predict` and `serve` say it)."""
        may_tile = self.tiles != "off" or bool(self.zoom_containers)
        pairs = [self.thresholds()] + ([self.thresholds(tiled=True)] if may_tile else [])
        return hidden_below_score_threshold(self.score_threshold, pairs)

    def one_pass(self, tile: bool = False) -> "PredictOptions":
        """These options without tiles or zoom: what each region's pass runs with (a tile's with `tile_queries`)."""
        update: dict[str, Any] = {"tiles": "off", "zoom_containers": ()}
        if tile and self.tile_queries is not None:
            update["queries"] = self.tile_queries
        return self.model_copy(update=update)

    @classmethod
    def of(cls, inference: InferenceConfig, **given: Any) -> "PredictOptions":
        """`inference`'s defaults with `given` over them; ValueError naming a misspelt option or a value out of range."""
        valid = list(cls.model_fields)
        for name in given:
            if name not in cls.model_fields:
                close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
                hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(valid)}"
                raise ValueError(f"unknown prediction option '{name}' ({hint})")
        shared = {k: v for k, v in given.items() if k in InferenceConfig.model_fields}
        try:
            checked = InferenceConfig.model_validate(inference.model_dump() | shared)
            fields = {k: getattr(checked, k) for k in valid if k in InferenceConfig.model_fields}
            fields["zoom_containers"] = tuple(fields.get("zoom_containers", ()))
            if fields.get("tile_refine") is not None:
                fields["tile_refine"] = tuple(fields["tile_refine"])
            return cls(**fields,
                       batch_rows=given.get("batch_rows", inference.batch_size * 4), queries=given.get("queries"))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            msg, value = first["msg"].removeprefix("Value error, "), first.get("input")
            if not where:  # a rule between options (review above fail): its message names them, the input is all of them
                raise ValueError(f"prediction options: {msg}") from None
            if f"got '{value}'" not in msg and f"got {value!r}" not in msg:  # our own checks name the value already
                msg = f"{msg}, got {value!r}"
            raise ValueError(f"prediction option '{where}': {msg}") from None
