"""Batches for looking inside a trained model: photos of a dataset (with targets, for losses) or bare images.

Both go through the checkpoint's own coordinate contract, prompt and conversation encoder, so what
the doctor sees is what training and inference feed the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from bbuvl.data.families import IMAGE_TOKEN
from bbuvl.data.check import check_size, probe_image
from bbuvl.data.schema import ImageRecord, Sample, iter_dataset, resolve_image
from bbuvl.encode.collate import Batch, PaddedCollator
from bbuvl.infer.predictor import Predictor, Prepared
from bbuvl.model.detection_head import DetectionOutput
from bbuvl.train.dataset import ConversationDataset, sources_from


def collator_for(predictor: Predictor) -> PaddedCollator:
    """A right-padded training collator with the checkpoint's token ids."""
    tok = predictor.tokenizer
    return PaddedCollator(tok.pad_token_id, tok.convert_tokens_to_ids(IMAGE_TOKEN))


@dataclass
class DatasetProbe:
    """The photos of a dataset a doctor command looks through, as training batches, and those it had to leave out."""

    batches: list[Batch]
    photos: int  # samples in the batches, each a photo of its own
    skipped: list[str] = field(default_factory=list)  # `file:line: image ...: why` of each photo that cannot be read


@dataclass
class ProbeRows:
    """The samples of a dataset a doctor command will look through, with their lines, and those it had to leave out:
    chosen before the checkpoint loads, so a malformed line or unreadable photos are named first (a real model takes
    minutes to load)."""

    dataset: Path
    rows: list[tuple[int, Sample]]
    skipped: list[str] = field(default_factory=list)  # `file:line: image ...: why` of each photo that cannot be read


def probe_rows(dataset: str | Path, max_samples: int) -> ProbeRows:
    """The first `max_samples` samples of a dataset JSONL whose photos can be read; each one that cannot (missing, no
    image, another size than its record, cut short) is left out and named. Training's dataset shows the next sample in
    the place of one it cannot read: here that photo would be probed twice, and rows repeated across the probe's folds
    read as a model that knows its boxes. DatasetError at the first malformed line read; ValueError when none is left."""
    rows, skipped = [], []
    for row in iter_dataset(dataset):
        if len(rows) == max_samples:
            break
        if row.error is not None:
            raise row.error
        records = [*row.sample.teachers, row.sample.student]
        if (problem := next((p for r in records if (p := _photo_problem(dataset, r)) is not None), None)) is not None:
            skipped.append(f"{dataset}:{row.line}: {problem}")
            continue
        rows.append((row.line, row.sample))
    if not rows:
        if not skipped:
            raise ValueError(f"{dataset}: no samples")
        raise ValueError(f"{dataset}: none of its {len(skipped)} photos can be read, the first {skipped[0]}")
    return ProbeRows(Path(dataset), rows, skipped)


def encode_rows(predictor: Predictor, chosen: ProbeRows, batch_size: int) -> DatasetProbe:
    """`chosen` as training batches (answers and head targets, no teachers) in the checkpoint's frame and prompt."""
    encoded = [ConversationDataset(sources_from([sample], chosen.dataset, [line]), predictor.encoder, predictor.contract,
                                   oversize="resize")[0] for line, sample in chosen.rows]
    collate = collator_for(predictor)
    batches = [collate(encoded[s:s + batch_size]) for s in range(0, len(encoded), batch_size)]
    return DatasetProbe(batches, len(encoded), chosen.skipped)


def dataset_batches(predictor: Predictor, dataset: str | Path, max_samples: int, batch_size: int) -> DatasetProbe:
    """The first `max_samples` photos of a dataset JSONL that can be read (`probe_rows`), as training batches."""
    return encode_rows(predictor, probe_rows(dataset, max_samples), batch_size)


def _photo_problem(dataset: str | Path, record: ImageRecord) -> str | None:
    """Why a record's photo cannot be probed (missing, no image, cut short, another size than the record), or None.
    Decoded whole, not only its header as training's start does: a doctor reads a handful of photos, and one cut
    short past its header would stop it half-way."""
    info = probe_image(resolve_image(dataset, record.image))
    if isinstance(info, str):
        return f"image {record.image}: {info}"
    return check_size(record, record.image, info)


def prepare_named(predictor: Predictor, image: str | Path | Image.Image) -> Prepared:
    """`image` in the checkpoint's model frame; a photo no frame holds (e.g. 20000x20) is an error naming its file."""
    try:
        return predictor.prepare(image)
    except ValueError as e:
        named = isinstance(image, (str, Path)) and not str(e).startswith(str(image))
        raise ValueError(f"{image}: {e}: no model frame holds it; crop it first" if named else str(e)) from None


def image_batch(predictor: Predictor, images: Sequence[str | Path | Image.Image]) -> tuple[Batch, list[Image.Image]]:
    """A prompt-only batch (no answer) for images, and the model-frame pictures the model sees."""
    prepared = [prepare_named(predictor, im) for im in images]
    samples = [predictor.encode(p).sample for p in prepared]
    return collator_for(predictor)(samples), [p.image for p in prepared]


def detection_outputs(model: Any, batch: Batch) -> DetectionOutput:
    """The head's boxes, objectness and query vectors for a collated batch (one VLM pass, as in training).

    boxes `[S, Q, 4]`, objectness_logits `[S, Q]`, query_hidden `[S, Q, D]` for the batch's S samples.
    """
    return model.detect(batch.to(next(model.parameters()).device))


def batch_loss(model: Any, batches: list[Batch]) -> float:
    """Mean total training loss of `model` over the photos of `batches` (no gradients): each batch's loss weighs as
    many photos as it holds, as HF's evaluation weighs eval_loss. A plain mean of the batches' losses counted the lone
    photo of a last short batch (4 photos 3 at a time) three times: 25.10 where the 4 photos one at a time gave 23.16."""
    device = next(model.parameters()).device
    with torch.no_grad():
        weighed = [(float(model(b.to(device)).loss), int(b.input_ids.shape[0])) for b in batches]
    return sum(loss * n for loss, n in weighed) / sum(n for _, n in weighed)
