"""The caption refit: a last phase of training in which only the head's caption decoder learns, on frozen features.

During training the caption decoder learns from the queries the Hungarian matcher pairs with objects while the
boxes, the queries and the VLM under them are all still moving, a few objects per step beside every other loss.
Once they have settled, the finished model's query vectors are fixed inputs: every training photo is passed
through the frozen model once, each object is paired with the query whose box covers it best (the query that
names it at inference), and the caption layers alone are fitted to those pairs. It is the classifier
re-training of "Decoupling Representation and Classifier" (Kang et al., ICLR 2020) applied to the head's
captions; docs/tiles.md ("A caption refit") has what it measured.

Under DDP every process passes its share of the photos and the pairs are gathered, so every process fits the
same pairs in the same order and ends with the same weights.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import TrainerCallback

from bbuvl.config import CaptionRefitConfig
from bbuvl.data.coords import CoordinateContract
from bbuvl.data.images import ImageError
from bbuvl.data.schema import require_photos, resolve_image
from bbuvl.encode.chat import SPAN_STUDENT, ChatEncoder, Turn, image_for_model
from bbuvl.encode.collate import PaddedCollator
from bbuvl.model.box_ops import box_iou, to_xyxy
from bbuvl.model.detection_loss import NOTHING_IOU, NOTHING_OBJECTNESS
from bbuvl.model.vlm import BBUVLModel
from bbuvl.train.all_ranks import every_rank
from bbuvl.train.data_files import DataFiles
from bbuvl.train.dataset import ConversationDataset, read_training_data

log = logging.getLogger(__name__)

# The head's modules that turn a query vector into caption tokens; the token embedding they share with the
# language model stays frozen. A head with a pixel level refits it too: it adds what lies inside the query's box to
# the caption's query alone (docs/tiles.md, "The state").
CAPTION_MODULES = ("caption_in", "caption_in_norm", "caption_pos", "caption_decoder", "caption_out")
PIXEL_MODULES = ("pixel_roi", "pixel_context_roi")


def refit_modules(head: torch.nn.Module) -> tuple[str, ...]:
    """The names of the head's modules a refit trains: the caption layers, and the pixel levels where there are any."""
    return CAPTION_MODULES + tuple(name for name in PIXEL_MODULES if getattr(head, name, None) is not None)


@dataclass(frozen=True)
class Photo:
    """A training photo as the refit reads it: the file, its stored size, and its objects' boxes and labels."""

    path: str
    size: tuple[int, int]
    boxes: list[list[float]]  # stored pixels, xyxy
    labels: list[str]


def training_photos(dataset: ConversationDataset) -> list[Photo]:
    """The student photos of a training dataset, as the refit reads them (teachers and crops play no part)."""
    return [Photo(s.student.image_path, s.student.record.size, [o.bbox_2d for o in s.student.record.objects],
                  [o.desc for o in s.student.record.objects]) for s in dataset.sources]


def jsonl_photos(path: str | Path, files: DataFiles | None = None) -> list[Photo]:
    """The student photos of a JSONL as the refit reads them; a bad line, a box `bbuvl data check` calls an error, or
    no photo at all is refused naming the file (and line). Read through `files` when given (train/data_files.py)."""
    samples = require_photos(read_training_data(path, files=files), path)
    return [Photo(str(resolve_image(path, s.student.image)), s.student.size, [o.bbox_2d for o in s.student.objects],
                  [o.desc for o in s.student.objects]) for s in samples]


@dataclass
class RefitResult:
    """What a refit did: pairs found, objects no query covered, its loss at the first and last steps, and the queries
    covering nothing it could teach the empty caption (0 without `background`)."""

    pairs: int
    uncovered: int
    first_loss: float
    last_loss: float
    seconds: float
    background: int = 0


@dataclass
class Pairs:
    """Covered objects: the query vector that names each (without the pixel level's share), what the pixel level
    read for it (None without one), its label; and how many objects no query covered."""

    vectors: torch.Tensor  # [N, D]
    pixels: torch.Tensor | None  # [N, C * P * P]
    labels: list[str]
    uncovered: int
    nothing: "Pairs | None" = None  # the queries that cover nothing, each labelled "" (only when asked for)


@torch.no_grad()
def covered_pairs(model: BBUVLModel, encoder: ChatEncoder, collator: PaddedCollator, contract: CoordinateContract,
                  photos: Sequence[Photo], min_iou: float, batch_size: int = 4, background: bool = False) -> Pairs:
    """Each object with the query whose box covers it best at IoU >= `min_iou`, from one inference pass of the
    frozen model over `photos` (prompt only, as `predict` encodes it); with `background`, also every query whose box
    covers nothing (`NOTHING_IOU`, `NOTHING_OBJECTNESS`)."""
    head = model.detection_head
    device = next(model.parameters()).device
    vectors, pixels, labels, uncovered = [], [], [], 0
    empty, empty_pixels = [], []
    for start in range(0, len(photos), batch_size):
        part, samples = [], []
        for p in photos[start:start + batch_size]:
            try:
                image = image_for_model(p.path, p.size, contract)
            except ImageError as e:  # as training does: one bad file does not lose the finished run's refit
                log.warning("caption refit: %s; the refit goes on without this photo", e)
                continue
            part.append(p)
            samples.append(encoder.encode([Turn(image, None, SPAN_STUDENT)], add_generation_prompt=True))
        if not samples:
            continue
        det = model.detect(collator(samples).to(device))
        boxes = to_xyxy(det.boxes.float(), head.box_format).clamp(0, 1)  # [S, Q, 4], relative
        base = det.query_hidden
        if det.pixel_samples is not None:
            base = base - head.pixel_level(det.pixel_samples)
        objectness = det.objectness_logits.float().sigmoid()  # [S, Q]
        for s, p in enumerate(part):
            W, H = p.size
            truth = torch.tensor(p.boxes, dtype=torch.float32, device=boxes.device).reshape(-1, 4) / torch.tensor(
                [W, H, W, H], dtype=torch.float32, device=boxes.device)
            iou = box_iou(truth, boxes[s])  # [objects, Q]
            if background:
                covers = iou.max(dim=0).values if p.boxes else torch.zeros_like(objectness[s])  # [Q]
                for q in torch.nonzero((covers < NOTHING_IOU) & (objectness[s] >= NOTHING_OBJECTNESS)).flatten():
                    empty.append(base[s, int(q)].float().cpu())
                    if det.pixel_samples is not None:
                        empty_pixels.append(det.pixel_samples[s, int(q)].float().cpu())
            if not p.boxes:
                continue
            best, query = iou.max(dim=1)
            for k, label in enumerate(p.labels):
                if float(best[k]) >= min_iou:
                    vectors.append(base[s, int(query[k])].float().cpu())
                    if det.pixel_samples is not None:
                        pixels.append(det.pixel_samples[s, int(query[k])].float().cpu())
                    labels.append(label)
                else:
                    uncovered += 1
    def stack(rows: list[torch.Tensor], pixel_rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        read = None
        if head.pixel_roi is not None:
            read = torch.stack(pixel_rows) if pixel_rows else torch.zeros(0, head.pixel_width)
        return (torch.stack(rows) if rows else torch.zeros(0, head.d_model)), read

    nothing = Pairs(*stack(empty, empty_pixels), [""] * len(empty), 0) if background else None
    return Pairs(*stack(vectors, pixels), labels, uncovered, nothing)


def caption_queries(head: torch.nn.Module, pairs: Pairs, index: list[int] | None = None) -> torch.Tensor:
    """`[M, D]` what the head's captions read for the pairs at `index` (all by default): the query vector, plus the
    pixel level's share as the head's pixel level now computes it."""
    param = next(head.parameters())
    pick = slice(None) if index is None else index
    hidden = pairs.vectors[pick].to(device=param.device, dtype=param.dtype)
    if pairs.pixels is not None:
        hidden = hidden + head.pixel_level(pairs.pixels[pick].to(device=param.device, dtype=param.dtype))
    return hidden


def _gather(pairs: Pairs) -> Pairs:
    """Every process's pairs, in rank order (identical on every process); unchanged without DDP."""
    parts = every_rank(pairs)
    return pairs if len(parts) == 1 else _concat(parts)


def _concat(parts: list[Pairs]) -> Pairs:
    """Pairs one after another, in order (their queries that cover nothing too)."""
    first = parts[0]
    return Pairs(torch.cat([p.vectors for p in parts]),
                 torch.cat([p.pixels for p in parts]) if first.pixels is not None else None,
                 [x for p in parts for x in p.labels], sum(p.uncovered for p in parts),
                 _concat([p.nothing for p in parts]) if first.nothing is not None else None)


def draw_weights(labels: Sequence[str], balance: float) -> torch.Tensor | None:
    """`[N]` weights drawing each pair with weight (pairs of its label)^-`balance`; None for 0 (uniform draws)."""
    if balance == 0:
        return None
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return torch.tensor([counts[label] ** -balance for label in labels], dtype=torch.float64)


@contextmanager
def seeded_random_state(seed: int, device: torch.device) -> Iterator[None]:
    """The global random state (the CPU's, and `device`'s when it is a GPU) seeded with `seed` inside the block and
    put back as it was after it."""
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked, device_type=device.type):
        torch.random.default_generator.manual_seed(seed)
        if forked:
            torch.cuda.manual_seed(seed)  # the current device's alone: the only one forked
        yield


class NothingCovered(ValueError):
    """The refit found no training object a query's box covers: there is nothing to fit the captions on."""


def refit_captions(model: BBUVLModel, encoder: ChatEncoder, collator: PaddedCollator, contract: CoordinateContract,
                   photos: Sequence[Photo], cfg: CaptionRefitConfig, seed: int) -> RefitResult:
    """Fit the head's caption layers to the frozen model's covered objects for `cfg.steps` steps; every other
    parameter, and every module's train/eval mode, is left as it was."""
    start = time.perf_counter()
    head = model.detection_head
    was_training = model.training
    model.eval()
    try:
        if dist.is_available() and dist.is_initialized():
            photos = photos[dist.get_rank()::dist.get_world_size()]
        pairs = _gather(covered_pairs(model, encoder, collator, contract, photos, cfg.min_iou,
                                      background=cfg.background > 0))
    finally:
        model.train(was_training)
    labels = pairs.labels
    if not labels:
        raise NothingCovered(f"detection.caption_refit: no training object is covered by a query's box at IoU >= "
                         f"{cfg.min_iou:g} ({pairs.uncovered} objects): the head has not learned to find them yet")
    captions = [torch.tensor(encoder.tokenizer.encode(label, add_special_tokens=False) + [head.eos_token_id])
                for label in labels]
    nothing = pairs.nothing
    found = 0 if nothing is None else len(nothing.labels)
    # Each batch's share of queries that cover nothing, each taught the empty caption (its eos alone); at least one
    # covered object a batch.
    n_empty = min(round(cfg.background * cfg.batch_size), cfg.batch_size - 1) if found else 0
    empty_caption = torch.tensor([head.eos_token_id])
    # The fit runs on copies of the caption layers, swapped in for its duration and copied back after: under DDP
    # the model's own parameters carry the reducer's gradient hooks, which expect every backward to come from a
    # DDP forward. The shared token embedding is read, not trained.
    names = refit_modules(head)
    originals = {name: getattr(head, name) for name in names}
    copies = {name: copy.deepcopy(module).train() for name, module in originals.items()}
    params = [p for module in copies.values() for p in module.parameters()]
    for p in params:
        p.requires_grad_(True)
    embedding = head.token_embedding.weight
    embedding_trains = embedding.requires_grad
    embedding.requires_grad_(False)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps) if cfg.schedule == "cosine"
                else None)
    generator = torch.Generator().manual_seed(seed)
    device = params[0].device
    weights = draw_weights(labels, cfg.balance)
    losses = []
    # The caption layers' dropout draws from the global generator, whose state when training ends differs in a
    # resumed run (HF restores it only when steps are left): drawn from the refit's own seed, a run killed during
    # its refit and resumed saves what one never killed saves, and the caller's random state is left as it was.
    with seeded_random_state(seed, device):
        try:
            for name, module in copies.items():
                setattr(head, name, module)
            for _ in range(cfg.steps):
                n = cfg.batch_size - n_empty
                pick = (torch.randint(0, len(labels), (n,), generator=generator) if weights is None else
                        torch.multinomial(weights, n, replacement=True, generator=generator)).tolist()
                hidden = caption_queries(head, pairs, pick)
                wanted = [captions[i] for i in pick]
                if n_empty:
                    pick_empty = torch.randint(0, found, (n_empty,), generator=generator).tolist()
                    hidden = torch.cat([hidden, caption_queries(head, nothing, pick_empty)])
                    wanted += [empty_caption] * n_empty
                targets = torch.nn.utils.rnn.pad_sequence(wanted, batch_first=True, padding_value=-100).to(device)
                logits = head.caption_logits(hidden, targets)
                loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                losses.append(float(loss.detach()))
        finally:
            for name, module in originals.items():
                setattr(head, name, module)
            embedding.requires_grad_(embedding_trains)
    if not all(math.isfinite(v) for v in losses):
        raise FloatingPointError("detection.caption_refit: the caption loss became non-finite; lower its lr")
    with torch.no_grad():
        for name in names:
            for mine, fitted in zip(originals[name].parameters(), copies[name].parameters()):
                mine.copy_(fitted)
    result = RefitResult(len(labels), pairs.uncovered, losses[0] if losses else float("nan"),
                         losses[-1] if losses else float("nan"), time.perf_counter() - start, found)
    log.info("caption refit: %d objects paired with a query (%d not covered at IoU >= %g), %d queries covering nothing"
             " (%d a batch), %d steps, loss %.4f -> %.4f, %.0f s", result.pairs, result.uncovered, cfg.min_iou,
             result.background, n_empty, cfg.steps, result.first_loss, result.last_loss, result.seconds)
    return result


class CaptionRefitCallback(TrainerCallback):
    """Runs the refit when training ends (a resumed run that had already ended refits again, the same way), so the
    final checkpoint holds the refitted captions; its numbers go into the run's history."""

    def __init__(self, cfg: CaptionRefitConfig, seed: int, encoder: ChatEncoder, collator: PaddedCollator,
                 contract: CoordinateContract, photos: Sequence[Photo]):
        self.cfg, self.seed, self.encoder, self.collator, self.contract = cfg, seed, encoder, collator, contract
        self.photos = list(photos)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        """Refit the captions of the model the trainer is about to save."""
        try:
            result = refit_captions(model, self.encoder, self.collator, self.contract, self.photos, self.cfg, self.seed)
        except NothingCovered as e:
            # Said alone, the run stopped at its end with no final/, and its resume (the refit's settings are the run's)
            # met the same head and stopped again: the way on is more training, or the checkpoint as it is
            saved = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            held = f"{saved} holds the trained model" if saved.is_dir() else "the run's newest checkpoint-N holds it"
            raise NothingCovered(f"{e}. Training itself ended at step {state.global_step}, and {held}: --resume with a "
                                 "higher training.max_steps trains the head on and refits at the new end, or `bbuvl "
                                 "predict` reads that checkpoint as it is, its captions not refitted") from None
        state.log_history.append({"caption_refit_pairs": result.pairs, "caption_refit_uncovered": result.uncovered,
                                  "caption_refit_loss_first": result.first_loss,
                                  "caption_refit_loss_last": result.last_loss,
                                  "caption_refit_seconds": round(result.seconds, 1),
                                  "caption_refit_background": result.background, "step": state.global_step})
