"""What a server computes: a checkpoint's `Predictor` on a batch of decoded photos, then optional few-shot re-scoring.

A thin adapter over `bbuvl.infer.predictor.Predictor`: photos arrive decoded (upright RGB, as
`bbuvl.data.images.load_image` would give them from a file), so a served photo and the same file given to
`bbuvl predict` go through the same `prepare`, the same encoding and the same forward pass. `prepare` runs on
a decoding thread as the photo arrives; only the batch's forward pass runs in the batcher's worker
(docs/serving.md, "Dynamic batching").
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from bbuvl.config import PREDICT_MODES
from bbuvl.infer.dropped_rows import GIVEN_UP, Awaited
from bbuvl.infer.options import PredictOptions
from bbuvl.infer.predictor import Predictor, Prepared
from bbuvl.infer.verdict import Verdict
from bbuvl.serve.fewshot import FewShotRescorer
from bbuvl.serve.names import served_name
from bbuvl.model.own_weights import own_weights
from bbuvl.model.vlm import core_model

SERVE_MODES = tuple(name for name, m in PREDICT_MODES.items() if m.serves)


class GivenUp(Exception):
    """A photo no one awaits any more (its request's deadline passed, or its client left): every photo of its batch
    was, and the batch stopped, or it `left` the batch while the others were computed (`passes_saved`: the passes of
    the language model its row was left out of; infer/dropped_rows.py)."""

    def __init__(self, message: str, left: bool = False, passes_saved: int = 0):
        super().__init__(message)
        self.left, self.passes_saved = left, passes_saved


@dataclass
class Photo:
    """An uploaded photo (upright RGB, for the few-shot crops; None without them) and what the model takes of it."""

    image: Image.Image | None
    prepared: Prepared
    given_up: threading.Event = field(default_factory=threading.Event)  # its request ended unanswered (answering.py)
    orientation: int = 1  # the EXIF orientation it was turned upright by (1: none)


@dataclass
class Answer:
    """One photo's result: objects in its own pixels (each saying whether its label is a fault, and whether it is one
    of the verdict's faults), the photo's verdict (infer/verdict.py), the model's raw text (generate mode) and compute
    times."""

    width: int
    height: int
    objects: list[dict[str, Any]]
    verdict: Verdict
    raw: str | None = None
    timing_ms: dict[str, float] = field(default_factory=dict)
    cut: bool = False  # generate mode: the answer reached the token budget with more to write
    tiled: bool = False  # predicted through tiles or zoom, judged by the tiled photos' thresholds (infer/verdict.py)
    prompt_tokens: int = 0  # what the model read and wrote for it, over every pass (ImageResult's)
    completion_tokens: int = 0
    fewshot: dict[str, Any] | None = None  # the model info of the support set that scored its boxes (serve/fewshot.py)
    orientation: int = 1  # the EXIF orientation the photo was turned upright by, the boxes' frame (1: none)

    def judged(self) -> dict[str, Any]:
        """What every route says of the photo's judging, from this one place: its verdict, and, when true, `cut` (the
        answer stopped with more to write) and `tiled` (the tiled photos' thresholds judged it). The chat route's
        `bbuvl` block carried the verdict alone, so a client could not tell which thresholds judged it."""
        return {"verdict": self.verdict.to_dict(), **({"cut": True} if self.cut else {}),
                **({"tiled": True} if self.tiled else {})}

    def usage(self) -> dict[str, int]:
        """OpenAI's `usage` object of this answer: the tokens read, written, and both."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


class Engine:
    """A loaded checkpoint (and support set) that answers batches of photos."""

    def __init__(self, predictor: Predictor, mode: str | None, checkpoint: str, fewshot: FewShotRescorer | None = None,
                 options: PredictOptions | None = None, overrides: dict[str, Any] | None = None):
        """`mode` None: the checkpoint's `inference.mode`; `options` (else the checkpoint's for `mode` with `overrides`
        over them, as `bbuvl serve`'s tile flags) are what every answer runs with."""
        mode = mode or predictor.cfg.inference.mode  # the one place a server's default mode is resolved
        if mode not in SERVE_MODES:
            raise ValueError(f"mode must be one of {', '.join(SERVE_MODES)}, got '{mode}'")
        predictor.check_mode(mode)
        self.predictor, self.mode, self.checkpoint, self.fewshot = predictor, mode, checkpoint, fewshot
        self.options = options or predictor.options(mode, **(overrides or {}))  # tiles and zoom: every answer's
        # An answer in another mode (the chat route's generate) runs with the same options but is judged by the
        # thresholds chosen in its own mode: a head's scores and generate mode's are on different scales
        # (docs/serving.md, "POST /v1/chat/completions"); it was judged by the server's mode's before.
        # Thresholds the server was given (`bbuvl serve --verdict-review`) judge every mode's answers, as they judge every
        # photo of `bbuvl predict`
        typed = {k: v for k, v in (overrides or {}).items() if k.startswith("verdict_")}
        self._by_mode = {m: self.options if m == mode else self.options.model_copy(update=_verdict_of(
            predictor.options(m, **typed))) for m in SERVE_MODES}
        # a few-shot backbone's files may change once they are served, as the checkpoint's may (model/own_weights.py,
        # which `Predictor.load` applies to the checkpoint's model)
        backbone = getattr(fewshot.backbone if fewshot else None, "model", None)
        if isinstance(backbone, torch.nn.Module):
            own_weights(backbone)
        # The fault labels are read now, not at the first answer: a hierarchy file (the run config's data.hierarchy)
        # moved or removed once the server runs failed every answer with a 500; a missing one now stops the start
        self.faults = predictor.faults
        # A Hugging Face fast tokenizer may refuse two threads at once ("Already borrowed"): one encoding at a time.
        self._encoding = threading.Lock()
        # A decode whose callers have all gone kept the worker for the rest of its tokens, while the next requests
        # waited (their own deadlines running): during a batch, the language model's every forward pass, one a
        # token, checks first (docs/serving.md, "Deadlines").
        self._language_model = core_model(predictor.model.vlm).model.language_model

    @classmethod
    def load(cls, checkpoint: str | Path, mode: str | None = None, device: str | None = None,
             fewshot: FewShotRescorer | None = None) -> "Engine":
        """Load a checkpoint written by `bbuvl train`; `mode` defaults to its `inference.mode`."""
        return cls(Predictor.load(checkpoint, device=device), mode, served_name(checkpoint), fewshot)

    @property
    def max_pixels(self) -> int:
        """The model frame's largest pixel count (the coordinate contract's)."""
        return self.predictor.contract.max_pixels

    @property
    def keeps_full_pixels(self) -> bool:
        """Whether a photo keeps its upload's own pixels while it waits: few-shot crops, tiles and zoom are cut from them."""
        return self.fewshot is not None or self.options.plan() is not None

    def options_for(self, mode: str) -> PredictOptions:
        """The options answers in `mode` run with: the server's own, judged by the thresholds chosen in `mode`."""
        return self._by_mode[mode]

    def info(self, mode: str | None = None, fewshot: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `model` object of every answer; `fewshot` the info of the support set that scored it (else the one
        served now)."""
        c = self.predictor.contract
        o = self.options
        plan = o.plan(chosen_refine=self.predictor.tile_refine)
        return {"checkpoint": self.checkpoint, "mode": mode or self.mode,
                "contract": {"min_pixels": c.min_pixels, "max_pixels": c.max_pixels, "factor": c.factor},
                "tiles": None if plan is None else {"grid": o.tiles, "zoom": o.tile_zoom, "stride": o.tile_stride,
                                                     "whole": o.tile_whole, "zoom_into": list(o.zoom_containers),
                                                     "refine": list(plan.refine)},
                "labels": len(self.predictor.prompt.labels or []),
                "fewshot": fewshot or (self.fewshot.info() if self.fewshot is not None else None)}

    def prepare(self, image: Image.Image, size: tuple[int, int] | None = None, orientation: int = 1) -> Photo:
        """Resize a decoded photo to its model frame and encode its prompt, ready for any mode's batch (thread-safe);
        `size`: the stored photo's, when `image` is it decoded at a reduced scale (serve/images.py); `orientation`:
        the EXIF orientation `image` was turned upright by, which its answer reports."""
        prepared = self.predictor.prepare(image, keep_stored=self.options.plan() is not None, size=size)
        # The upload's own pixels are kept only for the few-shot crops: a photo waits in the queue at its model frame's
        # size, where 64 waiting uploads of 100 MP each (the pixel limit's size) held 18 GiB (docs/serving.md, "Bad input")
        kept = image if self.fewshot is not None else None
        with self._encoding:
            return Photo(kept, self.predictor.encode(prepared), orientation=orientation)

    def run(self, mode: str, photos: Sequence[Photo]) -> list[Answer | Exception]:
        """One answer per photo from one forward pass; when the batch fails, each photo is retried alone
        (`Predictor.predict_each`, the retry policy `bbuvl predict` has too)."""
        start = time.perf_counter()
        options = self.options_for(mode)
        # With some of them still awaited, a given-up photo's row leaves the decode at its next token, where it went on
        # costing its share of every token (infer/dropped_rows.py)
        prepared = [replace(p.prepared, awaited=Awaited(p.given_up.is_set)) for p in photos]
        # Hooked for this batch alone: a hook left on the model would keep this engine and its last photos alive
        # with it, and run for any other engine of the same model. The model's pass lock is held while it is on, so
        # no pass of another thread or engine runs into it (infer/predictor.py `pass_lock`).
        with self.predictor.passes:
            hook = self._language_model.register_forward_pre_hook(partial(_stop_if_given_up, photos))
            try:
                results = self.predictor.predict_each(prepared, mode, options)
            except GivenUp as e:  # no one waits for these answers: nothing to log, nothing to retry
                # without the traceback, whose frames hold the photos; those that left the batch before it stopped saved
                return [GivenUp(str(e), *_left(p.awaited)) for p in prepared]
            finally:
                hook.remove()
        infer_ms = (time.perf_counter() - start) * 1000
        answers: list[Answer | Exception] = []
        for photo, p, r in zip(photos, prepared, results):
            if p.awaited is not None and p.awaited.dropped:
                answers.append(GivenUp(GIVEN_UP, *_left(p.awaited)))
                continue
            if isinstance(r, Exception):
                answers.append(r)
                continue
            is_fault = self.faults.is_fault
            # "fault": the label is one the hierarchy marks; "flagged": the object is one of the verdict's faults, by
            # the thresholds that judged the photo. The page counted and drew every fault label as a fault, so a
            # photo that passed read "20 faults", down to a score of 8e-05 (docs/serving.md, "POST /v1/detect").
            flagged = self.predictor.flagged(r, options)
            # "unjudgeable": a label the hierarchy cannot read and which may be a fault, that sends the photo to
            # review (infer/verdict.py `judge`): unmarked, the page drew it as a sound part and counted "0 faults".
            # Only those scoring at least review send it there: a head's alternatives at 0.0 do not.
            unjudgeable = self.predictor.unjudged(r, options)
            # "gloss": what a viewer without a font for Chinese shows (the page; reports do the same, eval/draw.py)
            english = self.predictor.faults.hierarchy.english
            objects = [{**d.to_dict(), "unknown": False, "fault": is_fault(d.label), "flagged": f,
                        "unjudgeable": u, "gloss": english(d.label)}
                       for d, f, u in zip(r.objects, flagged, unjudgeable)]
            timing = {"inference": round(infer_ms, 2)}
            scored_by = None
            if self.fewshot is not None and photo.image is not None and objects:
                t = time.perf_counter()
                scored_by = self.fewshot.rescore(photo.image, objects, p.size)  # a reload after it leaves this answer's set
                timing["fewshot"] = round((time.perf_counter() - t) * 1000, 2)
            answers.append(Answer(r.width, r.height, objects, self.predictor.verdict(r, options), r.raw, timing,
                                  r.cut, r.tiled, r.prompt_tokens, r.completion_tokens, scored_by, photo.orientation))
        return answers


def _stop_if_given_up(photos: Sequence[Photo], module: torch.nn.Module, args: Any) -> None:
    """GivenUp, before the language model's next pass, once every photo of the batch `photos` is given up on."""
    if all(p.given_up.is_set() for p in photos):
        raise GivenUp(f"all {len(photos)} photo(s) of the batch were given up on; stopped")


def _left(awaited: Awaited | None) -> tuple[bool, int]:
    """Whether a photo left its batch before the batch was done, and the passes that saved."""
    return (False, 0) if awaited is None else (awaited.dropped, awaited.passes_saved)


def _verdict_of(options: PredictOptions) -> dict[str, float | None]:
    """The verdict thresholds of `options` (infer/verdict.py), one pass and tiled."""
    return {name: getattr(options, name) for name in ("verdict_review", "verdict_fail", "verdict_review_tiled",
                                                      "verdict_fail_tiled")}
