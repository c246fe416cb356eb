"""The caption refit on a finished checkpoint: refit its head's caption layers (train/caption_refit.py) on a training
set's photos and write the result as a new checkpoint, without training again.

A refit's settings (its steps, its balanced draws) can then be compared on one trained model: what differs between
two such checkpoints is the refit alone (docs/faults_learning.md, "Balanced refit"). The new folder is the source's
model with the refitted caption layers, its run config recording the refit that made them; the source's verdict
thresholds are not carried over, since they were chosen for the old captions' scores.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from bbuvl.atomic import atomic_folder, write_text_atomic
from bbuvl.config import CaptionRefitConfig
from bbuvl.data.families import IMAGE_TOKEN, get_family
from bbuvl.data.scale import TrainingScale
from bbuvl.encode.chat import ChatEncoder
from bbuvl.encode.collate import PaddedCollator
from bbuvl.model.checkpoint import load_model, save_checkpoint
from bbuvl.outputs import check_not_inputs
from bbuvl.paths import real_path
from bbuvl.train.caption_refit import RefitResult, jsonl_photos, refit_captions

RECORD_FILE = "caption_refit.json"  # what the refit that wrote the folder did: source, photos, settings, losses


def refit_checkpoint(checkpoint: str | Path, train_jsonl: str | Path, out: str | Path, cfg: CaptionRefitConfig,
                     seed: int = 0, overwrite: bool = False, pixel_context: float = 0.0) -> RefitResult:
    """Refit `checkpoint`'s caption layers on `train_jsonl`'s photos (and `cfg.photos`' after them) with `cfg` and write
    the new checkpoint to `out` (complete or not at all, `atomic_folder`). FileExistsError when `out` exists and not
    `overwrite`; OutputConflict when `out` is the checkpoint, holds it or the photos, or lies inside the checkpoint.

    `pixel_context` above 1 first gives a head that has a pixel level and no context its context level
    (`DetectionHead.add_pixel_context`, drawn as a run's is), which the refit then fits with the captions."""
    out = Path(out)
    # `overwrite` replaces the whole folder: never the source checkpoint, a folder holding it or the photos' file.
    more = None if cfg.photos is None else Path(cfg.photos)
    check_not_inputs({"checkpoint": Path(checkpoint), "photos": Path(train_jsonl), "caption_refit.photos": more},
                     folders=[out])
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: choose another folder, or overwrite it")
    if cfg.steps <= 0:
        raise ValueError("caption refit: steps must be at least 1 to refit a checkpoint")
    photos = jsonl_photos(train_jsonl) + (jsonl_photos(more) if more is not None else [])
    model, processor, run, contract, prompt = load_model(checkpoint, device="cpu")
    if model.detection_head is None:
        raise ValueError(f"{checkpoint}: this checkpoint has no detection head, so no captions to refit")
    run = run.model_copy(deep=True)
    # Where the photos really are: as typed, a relative path named other files to whatever read the record elsewhere.
    run.detection.caption_refit = cfg.model_copy(update={"photos": None if more is None else str(real_path(more))})
    if pixel_context:
        model.detection_head.add_pixel_context(pixel_context)
        run.detection.pixel_context = pixel_context
    tok = processor.tokenizer
    encoder = ChatEncoder(processor, prompt.system, prompt.lang, get_family(contract.family).assistant_prefix)
    collator = PaddedCollator(tok.pad_token_id, tok.convert_tokens_to_ids(IMAGE_TOKEN), padding_side="right")
    result = refit_captions(model, encoder, collator, contract, photos, cfg, seed)
    record = {"source": str(real_path(checkpoint)), "photos": str(real_path(train_jsonl)), "seed": seed,
              "config": run.detection.caption_refit.model_dump(),
              "pixel_context": pixel_context, **asdict(result)}
    with atomic_folder(out) as tmp:  # the whole folder, or the previous one kept (bbuvl/atomic.py)
        save_checkpoint(model, processor, run, contract, prompt, tmp, scale=TrainingScale.load(checkpoint))
        write_text_atomic(tmp / RECORD_FILE, json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    return result
