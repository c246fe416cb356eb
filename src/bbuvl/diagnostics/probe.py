"""Batches for looking inside a trained model: photos of a dataset (with targets, for losses) or bare images.

Both go through the checkpoint's own coordinate contract, prompt and conversation encoder, so what
the doctor sees is what training and inference feed the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from bbuvl.data.families import IMAGE_TOKEN
from bbuvl.data.schema import read_dataset
from bbuvl.encode.collate import Batch, PaddedCollator
from bbuvl.infer.predictor import Predictor, Prepared
from bbuvl.model.detection_head import DetectionOutput
from bbuvl.train.dataset import ConversationDataset, sources_from


def collator_for(predictor: Predictor) -> PaddedCollator:
    """A right-padded training collator with the checkpoint's token ids."""
    tok = predictor.tokenizer
    return PaddedCollator(tok.pad_token_id, tok.convert_tokens_to_ids(IMAGE_TOKEN))


def dataset_batches(predictor: Predictor, dataset: str | Path, max_samples: int, batch_size: int) -> list[Batch]:
    """The first `max_samples` photos of a dataset JSONL as training batches (answers and head targets, no teachers)."""
    samples = read_dataset(dataset)[:max_samples]
    if not samples:
        raise ValueError(f"{dataset}: no samples")
    ds = ConversationDataset(sources_from(samples, dataset), predictor.encoder, predictor.contract, oversize="resize")
    collate = collator_for(predictor)
    return [collate([ds[i] for i in range(s, min(s + batch_size, len(ds)))]) for s in range(0, len(ds), batch_size)]


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
    """Mean total training loss of `model` over batches (no gradients)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        losses = [float(model(b.to(device)).loss) for b in batches]
    return sum(losses) / len(losses)
