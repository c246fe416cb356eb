"""`Predictor`: images in, `{bbox_2d, label, score}` out, in the stored image's pixels.

What every mode shares is here: the checkpoint loaded, each photo prepared with the coordinate contract saved
with it, encoded, collated and decoded greedily, the labels' grammar, the options validated once
(`PredictOptions`), the score threshold and one retry policy (`predict_each`). Each mode is one small module in
infer/modes/ (generate, head, name, teachers), declared in config.py's `PREDICT_MODES`.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import weakref
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList

from bbuvl.config import PREDICT_MODES
from bbuvl.data.coords import CoordinateContract
from bbuvl.data.digests import FileDigest
from bbuvl.data.faults import Faults
from bbuvl.data.families import IMAGE_TOKEN, TURN_END, get_family
from bbuvl.data.images import frames_problem, load_image, oriented, to_rgb, upright_size
from bbuvl.data.scale import TILE_SCALE_FILE, TrainingScale
from bbuvl.data.schema import ImageRecord, Sample, read_lines, require_photos, resolve_image
from bbuvl.encode.chat import SPAN_STUDENT, SPAN_TEACHER, ChatEncoder, EncodedSample, Turn, format_answer
from bbuvl.encode.collate import Batch, PaddedCollator
from bbuvl.infer.constrained import AnswerConstraint
from bbuvl.infer.continuations import PromptRead, can_continue_prompt, greedy_continuations
from bbuvl.infer.dropped_rows import GIVEN_UP, Awaited, RowDrops, gone
from bbuvl.infer.modes import runner
from bbuvl.infer.options import PredictOptions
from bbuvl.infer.parse import parse_detections
from bbuvl.infer.tiles import TilePlan, category_spellings, predict_tiled
from bbuvl.infer.tile_scale import ChosenTileScale, for_model, scale_of_other_mode
from bbuvl.infer.verdict import (SCORE_DIGITS, ChosenThresholds, Verdict, VerdictThresholds, at_review, cut_otherwise,
                                 for_faults, hierarchy_judges_none, judge, other_mode, unjudged_at_review, unpaired,
                                 with_chosen)
from bbuvl.model.checkpoint import ModelFolder
from bbuvl.model.identity import trained_identity
from bbuvl.model.own_weights import own_weights

logger = logging.getLogger(__name__)


@dataclass
class Detection:
    """One detected object in the stored image's pixels."""

    bbox_2d: list[float]
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (box rounded to 0.1 px)."""
        d = asdict(self)
        d["bbox_2d"] = [round(v, 1) for v in self.bbox_2d]
        d["score"] = round(self.score, SCORE_DIGITS)  # as the verdict reads it (infer/verdict.py)
        return d


@dataclass
class ImageResult:
    """Everything predicted for one image (what a line of predictions.jsonl holds)."""

    objects: list[Detection] = field(default_factory=list)
    raw: str | None = None
    width: int = 0
    height: int = 0
    error: str | None = None
    parse_ok: bool | None = None  # tiles and zoom: whether every region's answer parsed (raw then lists them all)
    vision_tokens: int = 0  # what the photo cost the LLM, over every region it was shown in
    # Tokens the LLM read (the prompt's text and vision tokens, teachers' turns, name mode's box prefixes) and wrote
    # (its answers, each with the stop token that ended it), summed over every pass; docs/serving.md, "Token usage".
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cut: bool = False  # generate modes: the answer reached `max_new_tokens` with more to write (objects may be missing)
    tiled: bool = False  # predicted through tiles or zoom: regions beside the whole photo (its own verdict thresholds)


class _ChosenLogProb(LogitsProcessor):
    """Records, per generation step, the log-probability of the greedy choice (a [B] vector, not [B, V] scores).

    With a `constraint` (infer/constrained.py) the choice is the best token the grammar allows, and what is
    recorded is the model's own, unconstrained probability of it (docs/constrained_decoding.md, "Scores").
    """

    def __init__(self, constraint: LogitsProcessor | None = None) -> None:
        self.steps: list[torch.Tensor] = []
        self.constraint = constraint

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.constraint is None:
            self.steps.append(scores.float().log_softmax(-1).max(-1).values.cpu())
            return scores
        logp = scores.float().log_softmax(-1)
        scores = self.constraint(input_ids, scores)
        self.steps.append(logp.gather(-1, scores.argmax(-1, keepdim=True)).squeeze(-1).cpu())
        return scores

    def logprobs(self, rows: int) -> torch.Tensor:
        """The recorded choices' log-probabilities, `[rows, steps]`."""
        return torch.stack(self.steps, dim=1) if self.steps else torch.zeros(rows, 0)


_WINDOWS: "weakref.WeakKeyDictionary[Any, Callable[[tuple[int, ...]], str]]" = weakref.WeakKeyDictionary()


def _window_decoder(tokenizer: Any) -> Callable[[tuple[int, ...]], str]:
    """`tokenizer.decode(window, skip_special_tokens=True)` remembered per window of ids, for this tokenizer.

    Name mode's rows and generate's answers repeat the same few-token windows (a label's tokens, `"bbox_2d": [`) on
    every box of every photo; each `decode` through transformers costs tens of microseconds of Python, and decoding
    them again cost name and generate modes a tenth of their time on the CPU (bench/predict_speed.py). A window's
    text depends on its ids alone, so the text remembered is the text decoded."""
    try:
        return _WINDOWS[tokenizer]
    except (KeyError, TypeError):
        pass

    try:
        own = weakref.ref(tokenizer)
        hash(tokenizer)
    except TypeError:  # one that cannot be a weak key is remembered for this call only
        return functools.lru_cache(maxsize=None)(lambda window: tokenizer.decode(list(window), skip_special_tokens=True))

    # The tokenizer only weakly: the remembered texts go with it, not kept alive by their own cache.
    @functools.lru_cache(maxsize=1 << 16)
    def decode(window: tuple[int, ...]) -> str:
        return own().decode(list(window), skip_special_tokens=True)

    _WINDOWS[tokenizer] = decode
    return decode


def token_char_ends(tokenizer: Any, ids: list[int]) -> list[int]:
    """Character offset in `decode(ids)` where each token ends, in O(len(ids)) decodes (byte-level BPE safe).

    Incremental detokenisation (as in TGI/vLLM): only a window since the last complete character is
    re-decoded, not the whole prefix. A token that ends inside a multi-byte character (a CJK label
    split over byte tokens) ends where the previous one did; the token completing the character
    carries all of it.
    """
    decode = _window_decoder(tokenizer)
    ends, text_len, prefix, read = [], 0, 0, 0
    for k in range(len(ids)):
        before = decode(tuple(ids[prefix:read]))
        after = decode(tuple(ids[prefix : k + 1]))
        if len(after) > len(before) and not after.endswith("\ufffd"):
            text_len += len(after) - len(before)
            prefix, read = read, k + 1
        ends.append(text_len)
    return ends


@dataclass
class Prepared:
    """One photo ready for the model: resized to its model frame and, once `Predictor.encode` ran, its prompt encoded."""

    image: Image.Image  # model-frame RGB
    size: tuple[int, int]  # stored (EXIF-oriented) size
    sample: EncodedSample | None = None  # the student turn's encoded sample (no teachers), when encoded ahead
    # the stored (EXIF-oriented) RGB, kept only for tiles and zoom; smaller than `size` when it is a JPEG past Pillow's
    # pixel limit, decoded at a reduced scale (data/images.py)
    stored: Image.Image | None = None
    awaited: Awaited | None = None  # a server's photo: given up on, it leaves its batch (infer/dropped_rows.py)


# On the CPU a tiled photo's regions go through the model up to this many at a time, whatever the batch size: the
# memory is the machine's, and --batch-size chunks cost choose-tiles 5-13% (docs/tiles.md, "Regions per pass").
CPU_REGION_BATCH = 64


def read_teachers(teachers_jsonl: str | Path, k: int) -> list[ImageRecord]:
    """The first `k` records of a teachers JSONL; ValueError naming the file when it holds none (cheap: no photo is
    opened, so a command checks it before the model loads)."""
    # An empty file left no teacher to show, and the mode was refused after the model had loaded, as if no
    # --teachers had been given.
    return [sample.student for _, sample in read_teacher_lines(teachers_jsonl, k)]


def read_teacher_lines(teachers_jsonl: str | Path, k: int) -> list[tuple[int, Sample]]:
    """`read_teachers` with each record's line number, which an error about its photo names."""
    return require_photos(read_lines(teachers_jsonl), teachers_jsonl)[:k]


def photo_size(path: str | Path) -> tuple[int, int] | None:
    """The (upright) size of a photo, read from its header; None when even that cannot be read."""
    try:
        return upright_size(path)
    except (OSError, ValueError, MemoryError):
        return None


def ran_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation that failed: Python's and numpy's MemoryError, torch's OutOfMemoryError (an
    accelerator's), or torch's CPU allocator, which raises a plain RuntimeError saying so."""
    return (isinstance(error, (MemoryError, torch.OutOfMemoryError))
            or "DefaultCPUAllocator: can't allocate memory" in str(error))


def out_of_memory(path: str | Path, doing: str, size: tuple[int, int] | None) -> str:
    """The error of a photo this process had no memory for while `doing` it: the photo, its size and the way out."""
    what = "this photo"
    if size is not None:
        what = f"this {size[0]}x{size[1]} photo ({size[0] * size[1] / 1e6:.0f} megapixels)"
    return (f"{path}: out of memory {doing} {what}; free memory, or save it at a lower resolution (no model frame "
            "holds more than a few megapixels), and predict it again")


def region_batch(device: str, batch_size: int) -> int:
    """How many of a tiled photo's regions one forward pass reads on `device`: `batch_size` on an accelerator, where
    all of a 16x16 grid at a stride in one pass ran out of memory; on the CPU at least CPU_REGION_BATCH."""
    return max(batch_size, CPU_REGION_BATCH) if str(device).split(":")[0] == "cpu" else batch_size


# Passes through one model run one at a time, whichever thread or Predictor starts them: a pass leaves state on the
# model for its length (a server's batch hooks the language model to drop rows, infer/dropped_rows.py and
# serve/engine.py; transformers' Qwen VL models keep each generate's rope_deltas on the model, which a pass given no
# positions of its own reads) that another pass at the same time would run into (docs/architecture.md, "The Predictor
# in Python").
_PASS_LOCKS: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_PASS_LOCKS_GUARD = threading.Lock()

_Result = TypeVar("_Result")


def pass_lock(model: Any) -> "threading.RLock":
    """The lock every pass through `model` holds, the same for every Predictor built on it (reentrant: a mode's pass
    calls `greedy` inside `predict`'s)."""
    with _PASS_LOCKS_GUARD:
        return _PASS_LOCKS.setdefault(model, threading.RLock())


def one_pass_at_a_time(method: Callable[..., _Result]) -> Callable[..., _Result]:
    """`method` of a Predictor run holding its model's pass lock (`pass_lock`)."""
    @functools.wraps(method)
    def locked(self: "Predictor", *args: Any, **kwargs: Any) -> _Result:
        with self.passes:
            return method(self, *args, **kwargs)
    return locked


def photo_list(images: Any, call: str) -> list[Any]:
    """`images` as a list of photos; TypeError when it is one photo (a path or a PIL image), which iterating would
    read letter by letter ('s: image file not found') or pixel row by row."""
    if isinstance(images, (str, bytes, os.PathLike, Image.Image)):
        shown = "image" if isinstance(images, Image.Image) else repr(os.fsdecode(images))
        raise TypeError(f"{call} takes a list of photos (paths or PIL images), got one {type(images).__name__}: "
                        f"pass [{shown}]")
    return list(images)


def _frames_problem(image: Image.Image) -> str | None:
    """Why an image given in memory is refused as its file is (data/images.py `frames_problem`): an animated PNG
    opened with `Image.open` was answered for its first frame, where its path was refused. A frame the caller chose
    (`seek`) is taken, and an image whose file is closed, whose frames cannot be counted, is taken as given."""
    try:
        return frames_problem(image) if image.tell() == 0 else None
    except (OSError, ValueError, EOFError):
        return None


class Predictor:
    """A trained checkpoint ready to predict; see the module docstring for the modes.

    Thread-safe: `predict`, `predict_detection`, `predict_each`, `predict_lines`, `greedy`, `greedy_continued` and
    `sample` may be called from several threads at once; their passes through the model run one at a time
    (`pass_lock`, one lock per model), while `prepare` (decoding, resizing) runs on each caller's thread beside them
    (docs/architecture.md, "The Predictor in Python").
    """

    def __init__(self, model: Any, processor: Any, contract: CoordinateContract, prompt: Any, cfg: Any, device: str = "cpu",
                 train_scale: float | None = None):
        self.model, self.processor, self.contract, self.prompt, self.cfg = model, processor, contract, prompt, cfg
        self.device = device
        self.passes = pass_lock(model)  # held by every pass through the model (`one_pass_at_a_time`)
        generation = getattr(getattr(model, "vlm", None), "generation_config", None)
        if generation is not None and generation.max_length is not None:
            # Every call passes max_new_tokens: a base's max_length beside it made transformers warn "Both
            # `max_new_tokens` and `max_length`" on every batch
            generation.max_length = None
        # Frame pixels per photo pixel `tiles: auto` shows photos at: the checkpoint's chosen tile scale, else its
        # training scale (infer/tile_scale.py).
        self.train_scale = train_scale
        self.tile_scale: ChosenTileScale | None = None  # where `train_scale` came from, when chosen
        self.part_sides: tuple[tuple[str, float], ...] = ()  # each category's trained box side (tiles: auto)
        self.long_sides: tuple[tuple[str, float], ...] = ()  # ... and longest side (who answers: tiles or whole)
        self.tile_refine: tuple[str, ...] = ()  # categories the tiles refine, as `bbuvl choose-tiles` chose them
        # A tiled photo's regions (tiles, zoomed containers) read per forward pass (`region_batch`; `bbuvl predict`
        # sets it from --batch-size).
        self.region_batch: int = region_batch(device, cfg.inference.batch_size)
        self.encoder = ChatEncoder(processor, prompt.system, prompt.lang, get_family(contract.family).assistant_prefix)
        tok = processor.tokenizer
        self.tokenizer = tok
        self.collator = PaddedCollator(tok.pad_token_id, tok.convert_tokens_to_ids(IMAGE_TOKEN), padding_side="left")
        # The head's pass generates nothing: right padding lets its rows start together and the shared system
        # prompt be read once (model/shared_prefix.py).
        self.right_collator = replace(self.collator, padding_side="right")
        self.teachers: list[tuple[Image.Image, str]] = []
        self._constraint: AnswerConstraint | None = None
        self._faults: Faults | None = None
        # The verdict thresholds `bbuvl eval --choose-thresholds` wrote into the checkpoint (one pass, tiled): each
        # judges the photos of the mode it was chosen in (`options`), the run config's the others.
        self.chosen: tuple[ChosenThresholds | None, ChosenThresholds | None] = (None, None)
        self.identity: str | None = None  # the checkpoint's `trained_identity`, which chosen files are checked against
        self.scale_pair: str | None = None  # the `pair` of its tile_scale.json, which the tiled pair is checked against

    @classmethod
    def load(cls, folder: ModelFolder | str | Path, device: str | None = None, dtype: str | None = None,
             known: Mapping[str, FileDigest] | None = None) -> "Predictor":
        """A checkpoint written by `bbuvl train` (coordinate contract and prompt included), by its path or read
        (`read_model_folder`); a plain Hugging Face model folder is read there first, with the labels it answers with.
        `known`: its files' digests taken at this start (`identify`'s, e.g. for predict's resume key), not taken again."""
        from bbuvl.model.checkpoint import load_model

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = folder.path if isinstance(folder, ModelFolder) else folder
        chosen = ChosenThresholds.load(path)  # before minutes of loading: a damaged file is an error naming it
        chosen_tiled = ChosenThresholds.load(path, tiled=True)
        chosen_scale = ChosenTileScale.load(path)
        # What the chosen files were chosen for, if this model. Only read when there is one to check: a copied
        # checkpoint's files are hashed to know it (model/identity.py).
        identity = (trained_identity(path, known) if (chosen, chosen_tiled, chosen_scale) != (None, None, None)
                    else None)
        tile_scale, other_model = for_model(chosen_scale, identity, Path(path) / TILE_SCALE_FILE)
        if other_model:
            logger.warning(other_model)
        model, processor, run, contract, prompt = load_model(folder, dtype=dtype, device=device)
        own_weights(model)  # on the CPU: computed on the checkpoint's mapped files, which may be copied over meanwhile
        scale = TrainingScale.load(path)
        # `auto` shows photos at the scale chosen on validation photos when there is one, else at the training scale.
        shown = tile_scale.scale if tile_scale is not None else None if scale is None else scale.median
        predictor = cls(model, processor, contract, prompt, run, device, shown)
        predictor.chosen = (chosen, chosen_tiled)
        predictor.identity = identity
        predictor.scale_pair = None if chosen_scale is None else chosen_scale.pair
        predictor.tile_scale = tile_scale
        predictor.part_sides = () if scale is None else tuple(scale.part_sides.items())
        predictor.long_sides = () if scale is None else tuple(scale.part_long_sides.items())
        predictor.tile_refine = () if tile_scale is None else tuple(tile_scale.refine)
        return predictor

    @property
    def faults(self) -> Faults:
        """The fault labels of the run's hierarchy (`data.hierarchy`, else the shipped one), read once."""
        if self._faults is None:
            self._faults = Faults.load(self.cfg.data.hierarchy)
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults

    def chosen_for_faults(self) -> tuple[ChosenThresholds | None, ChosenThresholds | None]:
        """The chosen thresholds (one pass, tiled) that were chosen for this model and the faults this predictor judges
        by (`for_faults`): one chosen for another model (copied in, or the model trained again since), or when the
        hierarchy marked other faults (edited since, or another given with --hierarchy), is left out for the run
        config's thresholds, as `bbuvl eval` leaves it out."""
        return for_faults(*self.chosen, self.faults.labels, self.identity, self.scale_pair)[0]

    def threshold_notes(self, mode: str, tiles: str | None = None) -> list[str]:
        """What the checkpoint's chosen thresholds leave to the run config's for photos predicted in `mode`, in words
        (`bbuvl predict` and `bbuvl serve` print them): chosen in another mode, for another model, or when the
        hierarchy marked other faults; a hierarchy that marks none of its labels a fault; and a tile scale chosen in
        another mode, unless the photos are cut with other `tiles` than auto (None: not known)."""
        kept, left_out = for_faults(*self.chosen, self.faults.labels, self.identity, self.scale_pair)
        # Said with its own remedy (choose-tiles), not eval's
        other_scale = unpaired(self.chosen[1], self.scale_pair)
        left_out = [r for r in left_out if r != other_scale]
        auto = tiles in (None, "auto")
        tiled = kept[1] if kept[1] is not None and kept[1].applies(mode) else None
        notes = [other_mode(*kept, mode), hierarchy_judges_none(self.faults, self.prompt.labels),
                 scale_of_other_mode(self.tile_scale, mode) if auto else None,
                 cut_otherwise(tiled, self.train_scale, self.tile_refine) if auto else None,
                 other_scale]
        if left_out:
            notes.append(f"{' and '.join(left_out)}: the photos are judged by the run config's thresholds; choose them "
                         "again with `bbuvl eval --choose-thresholds` on predictions of this model judged by these faults")
        return [n for n in notes if n]

    # --- inputs ------------------------------------------------------------------------------

    def prepare(self, image: str | Path | Image.Image, keep_stored: bool = False,
                size: tuple[int, int] | None = None) -> Prepared:
        """Load (EXIF-oriented RGB) and resize to the model frame the checkpoint was trained with; `keep_stored`
        keeps the stored pixels too, which tiles and zoom cut their regions from. A PIL `image` is turned by the EXIF
        orientation it carries, as its file would be (`Image.open(path)` answers as `path` does). `size`: the stored
        photo's, upright, when a PIL `image` shows it at another scale (serve's upload of a JPEG past the pixel limit
        decoded smaller; GRPO's view of a training photo, at its frame already)."""
        # A PIL image given directly gets the same turn and mode conversion as a file (16-bit, CMYK, alpha:
        # data/images.py): a phone's portrait opened with Image.open was predicted on its sideways pixels, its boxes
        # in a frame its file's do not share. What data/images.py or a server turned says no turn is left.
        if isinstance(image, Image.Image):
            if (why := _frames_problem(image)) is not None:
                raise ValueError(why)
            turned = oriented(image)[0]
            img, stored = to_rgb(turned), size or turned.size
        else:
            # A JPEG past Pillow's pixel limit comes decoded at a reduced scale: its frame, and every box, are still
            # the stored photo's (data/images.py)
            loaded = load_image(image)
            img, stored = loaded.image, loaded.size
        try:
            msize = self.contract.model_size(stored)
        except ValueError as e:  # a 10000x20 strip: its predictions line and the console name the photo and why
            named = f"{image}: " if not isinstance(image, Image.Image) else ""
            raise ValueError(f"{named}{e}: no model frame holds it; crop it first") from None
        return Prepared(img if img.size == msize else img.resize(msize, Image.BICUBIC), stored,
                        stored=img if keep_stored else None)

    def encode(self, prepared: Prepared) -> Prepared:
        """`prepared` with its prompt encoded (the processor's pixels and the tokens), as a batch would encode it.

        What a batch would do per photo, done ahead: a server encodes each photo as it arrives, on another thread,
        while the model computes the previous batch (docs/serving.md, "Dynamic batching").
        """
        enc = self.encoder.encode([Turn(prepared.image, None, SPAN_STUDENT)], add_generation_prompt=True)
        return Prepared(prepared.image, prepared.size, enc, prepared.stored)

    def set_teachers(self, teachers_jsonl: str | Path, k: int | None = None) -> None:
        """Teacher photos and answers for `teachers` mode (the first `k` of a teachers JSONL)."""
        teachers = []
        for line, sample in read_teacher_lines(teachers_jsonl, k or self.cfg.inference.num_teachers):
            r, path = sample.student, resolve_image(teachers_jsonl, sample.student.image)
            where = f"{teachers_jsonl}:{line}: teacher {r.image}"
            try:
                prep = self.prepare(path)
            except ValueError as e:  # the photo alone was named, not the teachers file that lists it
                raise ValueError(f"{where}: {str(e).removeprefix(f'{path}: ')}") from None
            if prep.size != r.size:
                raise ValueError(f"{where} is {prep.size}, its record says {r.size}")
            teachers.append((prep.image, format_answer(r, self.contract)))
        self.teachers = teachers

    def student_sample(self, p: Prepared) -> EncodedSample:
        """The photo's encoded prompt without teachers: encoded ahead (`encode`) or now."""
        return p.sample if p.sample is not None else self.encode(p).sample

    def batch(self, prepared: Sequence[Prepared], with_teachers: bool, for_generation: bool = True) -> Batch:
        """The photos' prompts (after the teachers' turns when `with_teachers`) collated on the model's device:
        padded on the left to generate after them, on the right for one pass (the head's)."""
        samples = []
        for p in prepared:
            if not with_teachers:
                samples.append(self.student_sample(p))
                continue
            turns = [Turn(img, ans, SPAN_TEACHER) for img, ans in self.teachers]
            samples.append(self.encoder.encode(turns + [Turn(p.image, None, SPAN_STUDENT)], add_generation_prompt=True))
        return (self.collator if for_generation else self.right_collator)(samples).to(self.device)

    # --- decoding ----------------------------------------------------------------------------

    def labels_constraint(self) -> AnswerConstraint:
        """The answer grammar over the checkpoint's labels (built once)."""
        if self._constraint is None:
            self._constraint = AnswerConstraint.from_tokenizer(self.tokenizer, self.prompt.labels)
        return self._constraint

    def answer_constraint(self, prepared: Sequence[Prepared], constrained: bool, max_new_tokens: int) -> LogitsProcessor | None:
        """The grammar processor for this batch (each row bounded by its answer extent: frame or 0-1000), or None when off."""
        if not constrained:
            return None
        if not self.prompt.labels:
            logger.warning("constrained decoding is off: the checkpoint's prompt.json lists no labels")
            return None
        return self.labels_constraint().processor([self.contract.answer_extent(p.size) for p in prepared], max_new_tokens)

    @one_pass_at_a_time
    def greedy(self, batch: Batch, constraint: LogitsProcessor | None, max_new_tokens: int,
               awaited: Sequence[Awaited | None] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding of a collated batch: new token ids `[B, T]` and each choice's log-probability `[B, T]`.
        `awaited` (one per row): a row whose photo is given up on leaves the batch at the next step
        (infer/dropped_rows.py); its answer then ends there."""
        recorder = _ChosenLogProb(constraint)
        if not any(a is not None for a in awaited):
            new = self._generate(batch, [recorder], max_new_tokens, do_sample=False)
        else:
            with RowDrops(self.model.vlm, awaited) as drops:
                end = drops.end_dropped(self.tokenizer.convert_tokens_to_ids(TURN_END))
                new = self._generate(batch, [recorder, end], max_new_tokens, do_sample=False)
        return new, recorder.logprobs(new.shape[0])

    @one_pass_at_a_time
    def greedy_continued(self, prompt: EncodedSample | PromptRead, continuations: Sequence[list[int]],
                         constraint: LogitsProcessor | None, max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`greedy` over rows that are one photo's prompt followed by each of `continuations` (answers begun): the
        prompt and its photo are read once where the LLM allows it (infer/continuations.py; a `PromptRead` once for
        every call given it), else each row whole."""
        if not can_continue_prompt(self.model.vlm):
            sample = prompt.sample if isinstance(prompt, PromptRead) else prompt
            return self.greedy(self.collator([sample.continued(c) for c in continuations]).to(self.device), constraint,
                               max_new_tokens)
        recorder = _ChosenLogProb(constraint)
        new = greedy_continuations(self.model.vlm, self.collator, prompt, continuations, recorder,
                                   self.tokenizer.convert_tokens_to_ids(TURN_END), max_new_tokens)
        return new, recorder.logprobs(new.shape[0])

    @one_pass_at_a_time
    def sample(self, batch: Batch, constraint: LogitsProcessor | None, max_new_tokens: int, temperature: float = 1.0,
               top_p: float = 1.0) -> torch.Tensor:
        """Sampled decoding of a collated batch (GRPO's rollouts), under the grammar when `constraint`: new ids `[B, T]`.

        The constraint masks the logits before temperature and top-p, so every sample stays inside the grammar.
        """
        return self._generate(batch, [constraint] if constraint else [], max_new_tokens, do_sample=True,
                              temperature=temperature, top_p=top_p, top_k=0)

    def _generate(self, batch: Batch, processors: list[LogitsProcessor], max_new_tokens: int, **decoding: Any) -> torch.Tensor:
        out = self.model.vlm.generate(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=batch.pixel_values,
            image_grid_thw=batch.image_grid_thw, mm_token_type_ids=batch.mm_token_type_ids,
            max_new_tokens=max_new_tokens, logits_processor=LogitsProcessorList(processors),
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.convert_tokens_to_ids(TURN_END),
            # One row per photo whatever the checkpoint's generation_config.json (a base's num_beams 3 failed every
            # photo: 'constrained decoding was set up for 1 rows, got 3').
            num_beams=1, num_return_sequences=1, **decoding,
        )
        return out[:, batch.input_ids.shape[1]:].cpu()

    @property
    def stop_ids(self) -> set[int]:
        """Token ids that end an answer (padding, the turn's end)."""
        return {self.tokenizer.pad_token_id, self.tokenizer.convert_tokens_to_ids(TURN_END)}

    def answer_end(self, row: torch.Tensor) -> int:
        """Where the answer in one generated row `[T]` ends: the index of its first token that ends an answer (T when
        none does, the budget's end)."""
        stops, ids = self.stop_ids, row.tolist()
        return next((i for i, t in enumerate(ids) if t in stops), len(ids))

    def written(self, row: torch.Tensor) -> int:
        """Tokens the model wrote in one generated row `[T]`: through the first that ends the answer, not the padding."""
        # a row that ended early is padded while the batch's other rows write on: those pads are no tokens of its own
        return min(self.answer_end(row) + 1, row.shape[-1])

    def prompt_tokens(self, p: Prepared) -> int:
        """Tokens of the photo's prompt without teachers (text and vision tokens), as `student_sample` encodes it."""
        if p.sample is not None:
            return int(p.sample.input_ids.numel())
        return self.encoder.prompt_length(self.contract.vision_tokens(p.size))

    # --- predicting --------------------------------------------------------------------------

    def options(self, mode: str | None = None, **given: Any) -> PredictOptions:
        """The checkpoint's inference defaults for photos predicted in `mode` (its verdict thresholds those chosen in
        that mode, else the run config's; None: any mode's) with `given` over them; ValueError for a misspelt option
        or a bad value."""
        options = PredictOptions.of(with_chosen(self.cfg.inference, *self.chosen_for_faults(), mode), **given)
        spelt = {name: category_spellings(value, self.prompt.labels) for name in ("zoom_containers", "tile_refine")
                 if (value := getattr(options, name))}
        options = options.model_copy(update=spelt) if spelt else options
        head = self.model.detection_head
        for name in ("queries", "tile_queries"):
            wanted = getattr(options, name)
            if wanted is not None and head is not None and not head.runs_queries(wanted):
                raise ValueError(f"prediction option '{name}': this checkpoint's head runs at most its "
                                 f"{head.num_queries} queries, and fewer only when two-stage, got {wanted}")
        return options

    def check_mode(self, mode: str) -> None:
        """Raise ValueError, before any photo, when this checkpoint cannot predict in `mode` (predict and serve ask this)."""
        spec = PREDICT_MODES.get(mode)
        if spec is None:
            raise ValueError(f"mode must be one of {', '.join(PREDICT_MODES)}, got '{mode}'")
        if spec.needs_head and self.model.detection_head is None:
            if self.model.head_left_out is not None:  # an older bbu-vl's head (model/checkpoint.py: load_model)
                raise ValueError(f"mode '{mode}' needs the checkpoint's detection head: {self.model.head_left_out}; "
                                 "mode 'generate' reads none")
            raise ValueError(f"mode '{mode}' needs a checkpoint with a detection head; this one has none "
                             "(detection.enabled was false): use mode 'generate'")
        if spec.needs_labels and not self.prompt.labels:
            raise ValueError(f"mode '{mode}' needs the checkpoint's label vocabulary (prompt.json lists no labels)")
        if spec.needs_teachers and not self.teachers:
            raise ValueError(f"mode '{mode}' needs teacher photos: call set_teachers(TEACHERS.jsonl) / pass --teachers")

    def predict(self, images: Sequence[str | Path | Image.Image], mode: str = "generate", **options: Any) -> list[ImageResult]:
        """Full results (objects, raw text, sizes) for a list of images, one each ([] for none; a bad image raises);
        `options` as `PredictOptions` names them. TypeError for one image given alone: pass a list."""
        images = photo_list(images, "Predictor.predict")
        opts = self.options(mode, **options)
        results = self._run([self.prepare(im, keep_stored=opts.plan() is not None) for im in images], mode, opts)
        if failed := next((r for r in results if isinstance(r, Exception)), None):
            raise failed
        return [r for r in results if isinstance(r, ImageResult)]

    def predict_detection(self, images: Sequence[str | Path | Image.Image], mode: str = "generate",
                          **options: Any) -> list[list[Detection]]:
        """`[[Detection(bbox_2d, label, score), ...] per image]` in each stored image's pixels."""
        return [r.objects for r in self.predict(photo_list(images, "Predictor.predict_detection"), mode, **options)]

    def predict_each(self, prepared: Sequence[Prepared], mode: str = "generate",
                     options: PredictOptions | None = None) -> list[ImageResult | Exception]:
        """One result per photo already through `prepare` (and perhaps `encode`), from one batch; when a batch of
        several fails (out of memory too), each photo is retried alone, so one bad sample cannot take its batch down:
        its error is its result.

        The one retry policy of `predict_lines` and the server (serve/engine.py).
        """
        opts = options or self.options(mode)
        try:
            return list(self._run(list(prepared), mode, opts))
        # A MemoryError too: a batch that does not fit may fit photo by photo, and the one that never fits is that
        # photo's error, not the end of the run
        except (RuntimeError, ValueError, MemoryError) as e:
            if len(prepared) == 1 and not gone(prepared[0].awaited):
                return [e]  # alone already: retried, it failed again after as long (a tiled photo: every pass again)
            logger.warning("a batch of %d failed (%s: %s); retrying its photos one by one", len(prepared), type(e).__name__, e)
        results: list[ImageResult | Exception] = []
        for p in prepared:
            if gone(p.awaited):  # no one awaits its answer any more: not computed alone either (infer/dropped_rows.py)
                results.append(ImageResult(width=p.size[0], height=p.size[1], error=GIVEN_UP))
                continue
            try:
                results.append(self._run([p], mode, opts)[0])
            except (RuntimeError, ValueError, MemoryError) as e:
                results.append(e)
        return results

    def predict_lines(self, paths: Sequence[str], mode: str = "generate", **options: Any) -> list[dict[str, Any]]:
        """One predictions.jsonl line per path; a corrupt image or a failing sample gets an `error`, never an exception.

        A mode this checkpoint cannot run, or a misspelt option, raises ValueError: that is no photo's fault.
        """
        paths = photo_list(paths, "Predictor.predict_lines")
        opts = self.options(mode, **options)
        self.check_mode(mode)
        # Tiles and zoom keep each photo's stored pixels (432 MB of a 12000x9000 photo) and predict its regions photo by
        # photo anyway: each photo is read when its turn comes, so a chunk holds one photo's pixels, not all of them.
        groups = [[p] for p in paths] if opts.plan() is not None else [list(paths)]
        results = [r for group in groups for r in self._results(group, mode, opts)]
        return [{"image": str(p), "width": r.width, "height": r.height, "objects": [d.to_dict() for d in r.objects],
                 "raw": r.raw, "error": r.error, **({"parse_ok": r.parse_ok} if r.parse_ok is not None else {}),
                 **({"cut": True} if r.cut else {}), **({"tiled": True} if r.tiled else {}),
                 "verdict": self.verdict(r, opts).to_dict()}
                for p, r in zip(paths, results)]

    def _results(self, paths: Sequence[str], mode: str, opts: PredictOptions) -> list[ImageResult]:
        """One result per path, from one batch (`predict_each`); a photo that cannot be read or predicted, or that this
        process has no memory for, gets its error."""
        results: dict[int, ImageResult] = {}
        prepared: dict[int, Prepared] = {}
        for i, p in enumerate(paths):
            try:
                prepared[i] = self.prepare(p, keep_stored=opts.plan() is not None)
            except (OSError, ValueError) as e:
                results[i] = ImageResult(error=str(e))
            except MemoryError:
                results[i] = ImageResult(error=out_of_memory(p, "decoding", photo_size(p)))
        idx = list(prepared)
        for i, r in zip(idx, self.predict_each([prepared[i] for i in idx], mode, opts) if idx else []):
            size = prepared[i].size
            results[i] = r if isinstance(r, ImageResult) else ImageResult(width=size[0], height=size[1], error=(
                out_of_memory(paths[i], "predicting", size) if ran_out_of_memory(r) else f"{type(r).__name__}: {r}"))
        return [results[i] for i in range(len(paths))]

    def verdict(self, result: ImageResult, options: PredictOptions | None = None) -> Verdict:
        """The photo verdict of one result (infer/verdict.py): an error, an unreadable answer or one the token budget
        cut is sent to review."""
        failed = bool(result.error) or (result.parse_ok is False) or (
            result.raw is not None and result.parse_ok is None and not parse_detections(result.raw).ok)
        return judge([(d.bbox_2d, d.label, d.score) for d in result.objects], self.faults,
                     self._judged_by(result, options), failed, result.cut)

    def flagged(self, result: ImageResult, options: PredictOptions | None = None) -> list[bool]:
        """Per object of one result, whether it is among the faults of its `verdict` (infer/verdict.py `at_review`,
        by the same thresholds)."""
        thresholds = self._judged_by(result, options)
        return [at_review(d.label, d.score, self.faults, thresholds) for d in result.objects]

    def unjudged(self, result: ImageResult, options: PredictOptions | None = None) -> list[bool]:
        """Per object of one result, whether its label, one the hierarchy cannot judge, sends the photo to review
        (infer/verdict.py `unjudged_at_review`, by the thresholds of its `verdict`)."""
        thresholds = self._judged_by(result, options)
        return [unjudged_at_review(d.label, d.score, self.faults, thresholds) for d in result.objects]

    def _judged_by(self, result: ImageResult, options: PredictOptions | None) -> VerdictThresholds:
        """The thresholds that judge one result: its framing's (one pass, or tiles and zoom) of `options`."""
        return (options or self.options()).thresholds(result.tiled)

    @one_pass_at_a_time
    def _run(self, prepared: list[Prepared], mode: str, options: PredictOptions) -> list[ImageResult | Exception]:
        """One result per photo of one batch, or the error of a photo the mode failed on alone (modes/__init__.py)."""
        self.check_mode(mode)
        if not prepared:  # no batch to collate: a mode's batch of none failed in the collator ('max() arg is empty')
            return []
        plan = options.plan(self.train_scale, self.part_sides, self.long_sides, self.tile_refine)
        results: list[ImageResult | Exception]
        if plan:
            results = [self._tiled(p, mode, options, plan) for p in prepared]
        else:
            results = runner(mode)(self, prepared, options)
            for r, p in zip(results, prepared):
                if isinstance(r, ImageResult):
                    r.vision_tokens = self.contract.vision_tokens(p.size)
        for r in results:
            if isinstance(r, ImageResult):
                # At the digits a line writes a score with, as the verdict judges it: a fault scoring 0.000386, written
                # 0.00039, was dropped at --score-threshold 0.00039 and its photo passed where it failed at fail 0.00039
                r.objects = [d for d in r.objects if round(d.score, SCORE_DIGITS) >= options.score_threshold]
        return results

    def _tiled(self, p: Prepared, mode: str, options: PredictOptions, plan: TilePlan) -> ImageResult:
        """One photo through tiles and zoom (infer/tiles.py): each region is a photo of one batch in `mode`."""
        if p.stored is None:
            raise ValueError("tiles and zoom cut regions from the stored photo: prepare it with keep_stored=True")
        cut, read, wrote = False, 0, 0

        def regions(crops: list[Image.Image], tiles: bool) -> list[tuple[list[tuple[list[float], str, float]], str | None]]:
            nonlocal cut, read, wrote
            one_pass, n = options.one_pass(tiles), max(self.region_batch, 1)
            found: list[ImageResult] = []
            for start in range(0, len(crops), n):
                # A photo given up on (a server's request gone) sees none of its regions left: they cost its batch
                # the most of any mode, photo after photo (infer/dropped_rows.py)
                if gone(p.awaited):
                    found += [ImageResult() for _ in range(start, len(crops))]  # not cut for nothing
                    break
                for r in runner(mode)(self, [self.prepare(c) for c in crops[start:start + n]], one_pass):
                    if isinstance(r, Exception):  # a region the model failed on fails its photo, as a batch's error did
                        raise r
                    found.append(r)
            cut = cut or any(r.cut for r in found)
            read += sum(r.prompt_tokens for r in found)
            wrote += sum(r.completion_tokens for r in found)
            return [([(d.bbox_2d, d.label, d.score) for d in r.objects], r.raw) for r in found]

        tiled = predict_tiled(regions, p.stored, plan, self.contract, p.size)
        parsed = [raw is None or parse_detections(raw).ok for raw in tiled.raws]
        return ImageResult(objects=[Detection(d.bbox_2d, d.label, d.score) for d in tiled.objects],
                           raw=tiled.raw if any(raw is not None for raw in tiled.raws) else None,
                           width=p.size[0], height=p.size[1], error=GIVEN_UP if p.awaited and p.awaited.dropped else None,
                           parse_ok=all(parsed), vision_tokens=tiled.vision_tokens,
                           cut=cut, tiled=any(r != (0, 0, *p.size) for r in tiled.regions),
                           prompt_tokens=read, completion_tokens=wrote)
