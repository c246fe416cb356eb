"""`bbuvl doctor model`: is a checkpoint wired the way training and inference assume?

Each check is one recurring failure caught before a run (docs/design.md, "Diagnostics are part of the product"): a trainable parameter no LR group
owns, weights stored but never loaded (or parameters never stored, so randomly initialised),
special-token ids the model and tokenizer disagree on, an `<|image_pad|>` count that is not
the processor's patch count, a conversation encoder that drifts from the chat template,
a detection head that is missing, untied or fed placeholder embeddings instead of image features
(docs/design.md), a coordinate contract that differs from the processor's or the config's pixel range (the
checkpoint's own bbuvl.yaml's too), a contract or weights file changed since training saved it, a prompt that does
not list the labels the model must name (docs/design.md), a run whose loss was no longer finite when it saved, and an
LLM whose next-token logits are non-finite or all equal (a run dead of NaN keeps finite weights that answer nothing).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open

from bbuvl.config import CONFIG_FILE, Config, holds_key
from bbuvl.data.coords import CONTRACT_FILE
from bbuvl.data.families import IMAGE_TOKEN
from bbuvl.data.jsonfile import read_json
from bbuvl.data.images import load_image
from bbuvl.data.labels import Hierarchy
from bbuvl.data.layout import data_labels, read_vocabulary, recorded_prompt
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.diagnostics.probe import detection_outputs, image_batch, prepare_named
from bbuvl.encode.chat import SPAN_STUDENT, Turn
from bbuvl.infer.predictor import Predictor
from bbuvl.model.checkpoint import (EXPORT_FRAME_FILE, HEAD_FILE, POSITIONS_FILE, READOUT_FILE, ModelFolder,
                                    is_plain_model_folder, read_model_folder, start_folder_problem, unbuilt_modules)
from bbuvl.model.checkpoint_files import TEMPLATE_FILE
from bbuvl.model.processor import saved_pixel_range
from bbuvl.model.export import LABELS_FILE as EXPORT_LABELS
from bbuvl.model.identity import CHOSEN_LATER, DIGEST_FILE, changed_since_saved, recorded_digests
from bbuvl.model.loading import check_special_tokens, special_token_ids
from bbuvl.model.vlm import core_model
from bbuvl.outputs import writer_at
from bbuvl.paths import real_path
from bbuvl.train.param_groups import GROUPS, GroupSummary, freeze_zero_lr_groups, group_of, summarize_groups
from bbuvl.train.run_dir import CHECKPOINT, checkpoint_incomplete, numbered_checkpoints
from bbuvl.train.run_health import loss_record

Status = Literal["ok", "warn", "fail"]


@dataclass
class Check:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str


@dataclass
class ModelReport:
    """Every check of a checkpoint, and its parameters per LR group."""

    checkpoint: str
    checks: list[Check] = field(default_factory=list)
    groups: dict[str, GroupSummary] = field(default_factory=dict)

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if c.status == "fail"]


def sample_image(cfg: Config, image: str | Path | None = None) -> Image.Image:
    """The image checks run on: `image`, else the first training photo of the run, else a synthetic 320x240 picture."""
    if image is not None:
        return load_image(image).image
    if cfg.data.train and Path(cfg.data.train).exists():
        records = read_records(cfg.data.train)
        if records:
            return load_image(resolve_image(cfg.data.train, records[0].image)).image
    y, x = np.mgrid[0:240, 0:320]
    pixels = np.stack([x * 255 // 320, y * 255 // 240, (x + y) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels)


# --- parameters ----------------------------------------------------------------------------------


def check_groups(model: torch.nn.Module, cfg: Config) -> tuple[list[Check], dict[str, GroupSummary]]:
    """Parameters per LR group as the config would train them; a trainable parameter in no group fails, named."""
    freeze_zero_lr_groups(model, cfg.training.lr)
    summary = summarize_groups(model)
    orphans = [n for n, p in model.named_parameters() if p.requires_grad and group_of(n) is None]
    checks = []
    if orphans:
        shown = ", ".join(orphans[:10]) + (" ..." if len(orphans) > 10 else "")
        checks.append(Check("parameter groups", "fail", f"{len(orphans)} trainable parameter(s) in no LR group "
                            f"({'/'.join(GROUPS)}): {shown}; training refuses to start: freeze them or rename them to match a group"))
    else:
        trainable = sum(s.trainable for s in summary.values())
        checks.append(Check("parameter groups", "ok",
                            f"every trainable parameter ({trainable:,}) is in one of {len(GROUPS)} LR groups"))
    idle = [g for g in GROUPS if getattr(cfg.training.lr, g) > 0 and summary[g].trainable == 0]
    if idle:
        checks.append(Check("empty groups", "warn", f"group(s) {', '.join(idle)} have a learning rate but no trainable parameter"))
    return checks, summary


def stored_tensor_names(directory: Path) -> list[str]:
    """Names of the tensors in a checkpoint's `model*.safetensors` files (header only, nothing loaded)."""
    names: list[str] = []
    for file in sorted(directory.glob("model*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            names.extend(f.keys())
    return names


def _suffixes(name: str) -> list[str]:
    """`a.b.c` -> `a.b.c`, `b.c` (never the bare last component, which every weight shares)."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(max(1, len(parts) - 1))]


def check_stored_tensors(directory: Path, model: Any) -> list[Check]:
    """Stored tensors the model did not load, and model parameters no stored tensor provides.

    Checkpoints store names in transformers' saved format (e.g. `model.layers.0...` for the module
    `model.language_model.layers.0...`), so a stored name matches a parameter when one ends with the
    other, up to the first component.
    """
    if (directory / "adapter_config.json").exists():
        return [Check("stored tensors", "ok", "LoRA checkpoint: peft loads the adapters by name (not compared)")]
    stored = stored_tensor_names(directory)
    if not stored:
        return [Check("stored tensors", "fail", f"{directory}: no model*.safetensors")]
    core = core_model(model.vlm)
    model_names = [n for n, _ in core.named_parameters()]  # tied weights appear once
    model_forms = {s for n in model_names for s in _suffixes(n)}
    stored_forms = {s for k in stored for s in _suffixes(k)}
    unexpected = [k for k in stored if not (set(_suffixes(k)) & model_forms)]
    missing = [n for n in model_names if not (set(_suffixes(n)) & stored_forms)]
    checks = []
    if unexpected:
        described = [f"{k} ({'LR group ' + g if (g := group_of(k)) else 'in no LR group'})" for k in unexpected[:10]]
        checks.append(Check("stored tensors", "fail", f"{len(unexpected)} stored tensor(s) the model has no parameter for, "
                            f"so they were not loaded: {', '.join(described)}" + (" ..." if len(unexpected) > 10 else "")
                            + "; a parameter added to the model in code must exist in the class that loads it"))
    if missing:
        checks.append(Check("missing tensors", "fail", f"{len(missing)} parameter(s) not in the checkpoint, so randomly "
                            f"initialised: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else "")))
    if not checks:
        checks.append(Check("stored tensors", "ok", f"all {len(stored)} stored tensors match the model's parameters"))
    return checks


def check_module_files(directory: Path, model: Any) -> list[Check]:
    """A detection head or coordinate read-out file in the checkpoint that its config builds no module for (an edited
    bbuvl.yaml), so it is not loaded: a warning each, saying what still runs. Vision positions left so are refused when
    the checkpoint loads (model/checkpoint.py `unbuilt_positions_problem`): every mode reads them."""
    said = {HEAD_FILE: "generate mode runs without the head, and the modes that read it (head, name) are refused",
            READOUT_FILE: "it is a training loss's read-out, which no prediction reads; a run resumed from here "
                          "would train without it"}
    return [Check("module files", "warn", f"{file}: saved by training, but {directory / CONFIG_FILE} sets {key} "
                  f"{'false' if key.endswith('enabled') else 'to 0'}, so it is not loaded: {said[file.name]}; set {key} "
                  "back to what the run trained with if that was not your choice")
            for file, key in unbuilt_modules(model, directory) if file.name in said]


def check_finite(model: torch.nn.Module) -> list[Check]:
    """Every floating-point weight and buffer loaded holds finite values, the tensors that do not named."""
    bad, total = [], 0
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not tensor.is_floating_point():
            continue
        total += 1
        if not bool(torch.isfinite(tensor).all()):
            bad.append(f"{name} ({int((~torch.isfinite(tensor)).sum()):,} of {tensor.numel():,} values)")
    if not bad:
        return [Check("finite weights", "ok", f"all {total} floating-point tensors hold finite values")]
    # A head fed NaN fails its own check too, but that one names boxes, not the tensor or the file.
    return [Check("finite weights", "fail", f"{len(bad)} tensor(s) hold NaN or inf, so every answer is garbage: "
                  f"{', '.join(bad[:5])}" + (" ..." if len(bad) > 5 else "") + "; the file storing them is damaged "
                  "(see 'saved files') or the run diverged before it saved")]


def check_losses(directory: Path) -> list[Check]:
    """The losses the run logged up to this checkpoint's save (train/run_health.py): failed when the last one was not
    finite (the run was diverging when it saved), warned when earlier ones were (the guard skipped those steps);
    nothing for a folder that carries no record (an export, a base model, a final/ copied out of its run)."""
    record = loss_record(directory)
    if record is None:
        return []
    if not record.nonfinite and not record.alarms:
        said = (f"{len(record.logged)} logged loss(es) up to step {record.logged[-1]}, all finite" if record.logged
                else "no loss logged before this save, and no non-finite alarm")
        return [Check("training losses", "ok", f"{said} ({record.source})")]
    if record.diverged:
        # "all checks passed" on a run whose loss had been NaN for 4 steps when it saved: its answers were [] on
        # every photo, each judged "pass"
        return [Check("training losses", "fail", f"{record.said()}: the run had diverged when it saved this checkpoint, "
                      "so what it answers is not to be trusted (see 'language model'); train again with a lower "
                      "learning rate (training.lr), or from a checkpoint saved before the first non-finite step")]
    return [Check("training losses", "warn", f"{record.said()}: the non-finite guard skipped those steps, so the "
                  "weights are those of the finite ones; 'language model' says whether they still answer")]


def divergence_cause(checkpoint: Path) -> str:
    """Why a checkpoint's head or loss is NaN or inf, as far as its training records tell, and what to do: what the
    doctor commands that meet one say (they sent the user to `doctor model`, which passed its weights as finite)."""
    record = loss_record(checkpoint)
    if record is not None and (record.nonfinite or record.alarms):
        return (f"the run diverged before it saved: {record.said()}; train again with a lower learning rate "
                "(training.lr), or from a checkpoint saved before it diverged")
    known = ("no training record beside it says which" if record is None
             else f"{record.source} records every logged loss finite")
    return (f"its weights are damaged, or the run diverged before it saved ({known}): `bbuvl doctor model {checkpoint}` "
            "checks every tensor, the files as saved and the language model's answer")


def check_language_model(predictor: Predictor, image: Image.Image) -> list[Check]:
    """One forward pass of the LLM on the sample image: its next-token logits must be finite and must differ. A run
    gone NaN leaves finite weights of 1e8 behind whose logits are all equal (std 0.0, the demo checkpoint's 1.48):
    greedy decoding then writes the same answer for every photo, `[]`, and each photo passed."""
    model = predictor.model
    batch, _ = image_batch(predictor, [image])
    with torch.no_grad():
        _, hidden = model.vlm_pass(batch.to(next(model.parameters()).device), input_embeds=False)
        logits = model.vlm.get_output_embeddings()(hidden[:, -1])[0].float()
    where = f"the next-token logits of the LLM on the sample image ({image.width}x{image.height}, {logits.numel():,} tokens)"
    if not bool(torch.isfinite(logits).all()):
        return [Check("language model", "fail", f"{where} hold NaN or inf, so every answer is garbage: the weights are "
                      "damaged (see 'finite weights', 'saved files') or the run diverged (see 'training losses')")]
    spread, peak = float(logits.max() - logits.min()), float(logits.abs().max())
    if spread <= 1e-6 * max(1.0, peak):
        largest = max(float(t.detach().abs().max()) for t in model.parameters() if t.is_floating_point() and t.numel())
        return [Check("language model", "fail", f"{where} are all equal ({logits[0]:.4g}; its largest weight is "
                      f"{largest:.3g}): it answers the same whatever it sees, and predict finds nothing on any photo; "
                      "the run diverged before it saved (see 'training losses' and the run's health.json)")]
    first = predictor.tokenizer.decode([int(logits.argmax())])
    return [Check("language model", "ok", f"{where}: finite, spread {spread:.3g}, std {float(logits.std()):.3g}; the "
                  f"likeliest first token {first!r}")]


def answer_files(name: str) -> bool:
    """Whether a checkpoint file decides where every box lands: its coordinate contract (the frame predict reads) and
    its weights (the VLM's, the head's, the vision positions'). Changed, the checkpoint predicts otherwise than it
    trained: another run's contract copied in cost the demo's head a third of its AP50 (0.839 -> 0.522 on 8 photos)."""
    return name in (CONTRACT_FILE, HEAD_FILE, POSITIONS_FILE) or (
        name.startswith(("model", "adapter_model")) and name.endswith(".safetensors"))


def record_again(directory: Path) -> str:
    """The command that records a checkpoint's files as they are now in its content_digest.json (a deliberate edit)."""
    code = f"from bbuvl.model.identity import record_digests; record_digests({json.dumps(str(directory.absolute()))})"
    return f"python -c {shlex.quote(code)}"


def check_saved_files(directory: Path) -> list[Check]:
    """The files `bbuvl train` recorded when it saved the checkpoint (`content_digest.json`) that are gone or changed
    since, failed when one decides where boxes land (`answer_files`), else warned; nothing for a folder that
    recorded none (an export, a base model)."""
    recorded = {name: d for name, d in recorded_digests(directory).items() if name not in CHOSEN_LATER}
    if not recorded:
        return []
    changed, gone = changed_since_saved(directory)
    if not changed and not gone:
        return [Check("saved files", "ok", f"all {len(recorded)} files as training saved them ({DIGEST_FILE})")]
    said = ([f"changed since training saved them: {', '.join(changed)}"] if changed else []) + (
        [f"gone: {', '.join(gone)}"] if gone else [])
    deciding = [name for name in changed + gone if answer_files(name)]
    # A warning alone passed a checkpoint holding another run's contract ("all checks passed", exit 0).
    why = (f"{', '.join(deciding)} decide{'s' if len(deciding) == 1 else ''} where every box lands, so the checkpoint "
           "no longer predicts as it trained: copy it again" if deciding else "copy the checkpoint again")
    return [Check("saved files", "fail" if deciding else "warn",
                  f"{'; '.join(said)} ({DIGEST_FILE} records each file's SHA-256 as saved): {why}; if the change is "
                  f"an edit of your own, made on purpose, record the files as they are now: {record_again(directory)}")]


# --- tokens, template, head --------------------------------------------------------------------


def check_tokens(model: Any, processor: Any) -> list[Check]:
    """Special-token ids agree between the model config and the tokenizer."""
    ids = special_token_ids(processor)
    shown = ", ".join(f"{k.removesuffix('_token_id')}={v}" for k, v in ids.items())
    try:
        check_special_tokens(core_model(model.vlm).config, processor)
    except ValueError as e:
        return [Check("special tokens", "fail", str(e))]
    return [Check("special tokens", "ok", shown)]


def _template_kwargs(predictor: Predictor) -> dict[str, Any]:
    # A family that thinks unless told not to (Qwen3.5) renders a non-thinking answer only with enable_thinking=False;
    # the others' templates take no such variable (passing one would only log a warning).
    return {"enable_thinking": False} if predictor.encoder.assistant_prefix else {}


def check_vision_tokens(predictor: Predictor, image: Image.Image) -> list[Check]:
    """`<|image_pad|>` count = the processor's patches / merge^2 = the coordinate contract's count = our encoder's."""
    processor, contract = predictor.processor, predictor.contract
    tok = predictor.tokenizer
    merge = int(getattr(processor.image_processor, "merge_size", 2))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **_template_kwargs(predictor))
    enc = processor(text=[text], images=[image], return_tensors="pt")  # the stock path: the processor resizes
    pads = int((enc["input_ids"] == tok.convert_tokens_to_ids(IMAGE_TOKEN)).sum())
    grid = [int(v) for v in enc["image_grid_thw"][0]]
    patches = int(np.prod(grid))
    pv = enc["pixel_values"]
    expected = contract.vision_tokens(image.size)
    ours = predictor.encoder.encode([Turn(predictor.prepare(image).image, None, SPAN_STUDENT)], add_generation_prompt=True)
    numbers = (f"image {image.width}x{image.height}: contract {expected}, processor pads {pads}, patches {patches}/{merge}^2 = "
               f"{patches // merge**2}, our encoder {ours.num_vision_tokens}; pixel_values {tuple(pv.shape)}")
    problems = []
    if pv.ndim != 2 or pv.shape[0] != patches:
        problems.append(f"pixel_values should be 2-D [patches={patches}, dim], got {tuple(pv.shape)}")
    if not pads == patches // merge**2 == expected == ours.num_vision_tokens:
        problems.append("the counts differ: the processor's pixel range or merge size is not the checkpoint's contract "
                        f"(min_pixels={contract.min_pixels}, max_pixels={contract.max_pixels})")
    return [Check("image-pad tokens", "fail" if problems else "ok", "; ".join(problems + [numbers]))]


def template_checks(predictor: Predictor, image: Image.Image, directory: Path) -> list[Check]:
    """The checks that render the processor's chat template, or one failed check naming the file when it has none
    (transformers' ValueError ended the doctor, its table unprinted and no file named)."""
    if getattr(predictor.processor, "chat_template", None):
        return check_vision_tokens(predictor, image) + check_chat_template(predictor, image)
    return [Check("chat template", "fail", f"{directory / TEMPLATE_FILE}: missing, so the processor has no chat template "
                                           "(stock loaders and `bbuvl model export` need it; the image-pad count is "
                                           "checked with it); re-copy it")]


def check_chat_template(predictor: Predictor, image: Image.Image) -> list[Check]:
    """Our turn-by-turn encoding equals the processor's chat template; the tokenizer round-trips an answer."""
    processor, tok = predictor.processor, predictor.tokenizer
    label = predictor.prompt.labels[0] if predictor.prompt.labels else "标签贴纸"
    answer = json.dumps([{"bbox_2d": [10, 20, 30, 40], "label": label}], ensure_ascii=False)
    picture = predictor.prepare(image).image
    ours = predictor.encoder.encode([Turn(picture, answer, SPAN_STUDENT)])
    messages = [
        {"role": "system", "content": [{"type": "text", "text": predictor.encoder.system_prompt}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": predictor.encoder.user_text}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False, **_template_kwargs(predictor))
    # At its model-frame size, as the encoder hands it over (encode/chat.py:pixels): a frame under the processor's
    # min_pixels (model.min_pixels = max_pixels, a token budget that shrinks the frame) was resized a second time.
    area = picture.width * picture.height
    ref = processor(text=[text], images=[picture], size={"shortest_edge": area, "longest_edge": area}, return_tensors="pt")
    checks = []
    ref_ids, our_ids = ref["input_ids"][0], ours.input_ids
    if torch.equal(ref_ids, our_ids):
        checks.append(Check("chat template", "ok", f"encoder ids = chat template ids ({len(our_ids)} tokens)"))
    else:
        n = min(len(ref_ids), len(our_ids))
        first = next((i for i in range(n) if ref_ids[i] != our_ids[i]), n)
        checks.append(Check("chat template", "fail", f"encoder and chat template differ from token {first} "
                            f"(template: {tok.decode(ref_ids[first:first + 8])!r}, "
                            f"encoder: {tok.decode(our_ids[first:first + 8])!r})"))
    decoded = tok.decode(tok.encode(answer, add_special_tokens=False))
    status: Status = "ok" if decoded == answer else "fail"
    checks.append(Check("tokenizer round trip", status, f"decode(encode(answer)) {'==' if status == 'ok' else '!='} answer: {answer}"))
    return checks


def check_head(predictor: Predictor, image: Image.Image) -> list[Check]:
    """The head exists when the config enables it, shares the LLM's embeddings, reads image features, predicts finite boxes."""
    model, cfg = predictor.model, predictor.cfg
    head = model.detection_head
    if head is None and model.head_left_out is not None:  # an older bbu-vl's head: generate mode only
        return [Check("detection head", "fail", model.head_left_out)]
    if head is None:
        status: Status = "fail" if cfg.detection.enabled else "ok"
        return [Check("detection head", status, "no head, but detection.enabled is true" if cfg.detection.enabled
                      else "no head (detection.enabled=false): generate mode only")]
    core = core_model(model.vlm)
    problems = []
    if head.token_embedding is not core.get_input_embeddings():
        problems.append("the caption output projection is not tied to the LLM's input embeddings")
    seen: dict[str, torch.Tensor] = {}
    hook = head.vision_adapter.register_forward_pre_hook(lambda m, args: seen.setdefault("vision", args[0].detach()))
    batch, _ = image_batch(predictor, [image])
    try:
        with torch.no_grad():
            det = detection_outputs(model, batch)
    finally:
        hook.remove()
    expected = predictor.contract.vision_tokens(image.size)
    n_vision = int(batch.det_vision_mask.sum())
    if n_vision != expected or int(batch.det_grid_hw.prod()) != expected:
        problems.append(f"the head reads {n_vision} vision tokens (grid {batch.det_grid_hw[0].tolist()}), the image has {expected}")
    pad_embedding = core.get_input_embeddings().weight[predictor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)]
    vision = seen["vision"][0, :n_vision].float()
    if (vision - pad_embedding.float().to(vision.device)).abs().max() < 1e-6:
        problems.append("the head's vision memory is the <|image_pad|> placeholder embedding, not image features (docs/design.md)")
    boxes, logits = det.boxes.float(), det.objectness_logits.float()
    q = head.num_queries
    if tuple(boxes.shape) != (1, q, 4):
        problems.append(f"boxes of shape {tuple(boxes.shape)}, expected (1, {q}, 4)")
    if not bool(torch.isfinite(boxes).all()) or not bool(torch.isfinite(logits).all()):
        # "finite=False" named no cause, beside "finite weights: ok"
        bad_boxes, bad_scores = int((~torch.isfinite(boxes)).sum()), int((~torch.isfinite(logits)).sum())
        problems.append(f"non-finite boxes/objectness ({bad_boxes:,} of {boxes.numel():,} box values, {bad_scores:,} of "
                        f"{logits.numel():,} objectness logits NaN or inf): the run diverged before it saved (see "
                        "'training losses' and the run's health.json), or its weights are damaged (see 'finite weights')")
    ids, _ = head.generate_captions(det.query_hidden[0, :1], max_tokens=4)
    detail = (f"{q} queries, d_model {head.d_model}, {n_vision} vision tokens in memory, box format {head.box_format}, "
              f"objectness {logits.sigmoid().min():.3f}..{logits.sigmoid().max():.3f}, caption of query 0 starts "
              f"{predictor.tokenizer.decode(ids[0].tolist())!r}")
    return [Check("detection head", "fail" if problems else "ok", "; ".join(problems + [detail]))]


# --- contract and prompt -----------------------------------------------------------------------


def check_contract(directory: Path, predictor: Predictor, cfg: Config | None) -> list[Check]:
    """The coordinate contract is stored and agrees with the stored processor and with the given config."""
    c = predictor.contract
    plain = is_plain_model_folder(directory)
    # An export's frame is the one its checkpoint trained in (EXPORT_FRAME_FILE), which predict reads over the processor
    exported = plain and cfg is None and (directory / EXPORT_FRAME_FILE).is_file()
    source = (f"{EXPORT_FRAME_FILE} (the frame its checkpoint trained in), as `bbuvl predict` reads it" if exported
              else "the folder's own image processor, as `bbuvl predict` reads it" if plain and cfg is None
              else "from the config (not trained yet)" if plain else "stored")
    boxes = "absolute frame pixels" if c.box_scale is None else f"relative 0-{c.box_scale}"
    checks = [Check("coordinate contract", "ok", f"{source}: family {c.family} ({boxes} boxes), min_pixels={c.min_pixels}, "
                    f"max_pixels={c.max_pixels}, factor={c.factor}, max_vision_tokens={c.max_vision_tokens}")]
    stored = saved_pixel_range(directory)
    if exported and stored is not None and stored != (c.min_pixels, c.max_pixels):
        # Edited by hand: stock loaders follow the processor, predict the frame the model learnt its boxes in
        checks.append(Check("processor pixels", "warn", f"preprocessor_config.json has min/max pixels {stored}, what "
                            "stock transformers and vLLM read this folder at; `bbuvl predict` reads it at "
                            f"{(c.min_pixels, c.max_pixels)} ({EXPORT_FRAME_FILE}, the frame the model was trained in): "
                            "the two see every photo, and box, at another scale; put the processor's bounds back"))
    elif plain and stored is not None and stored != (c.min_pixels, c.max_pixels):
        # A fine-tuned folder (an export) learnt its boxes in its processor's frame: a run at another moves them all.
        checks.append(Check("processor pixels", "warn", f"preprocessor_config.json has min/max pixels {stored}, what "
                            "`bbuvl predict` and stock loaders read this folder at; a run on this config trains at "
                            f"{(c.min_pixels, c.max_pixels)}: a model fine-tuned in its processor's frame (a `bbuvl model "
                            "export`) would see every photo, and box, at another scale; set model.min_pixels/max_pixels "
                            "to the processor's"))
    elif stored is not None and stored != (c.min_pixels, c.max_pixels):
        checks.append(Check("processor pixels", "warn", f"preprocessor_config.json has min/max pixels {stored}, the contract "
                            f"{(c.min_pixels, c.max_pixels)}: inference uses the contract, other tools would use the processor's"))
    if not plain and (own := frame_difference(predictor.cfg, c, held_only=True)) is not None:
        # Compared only with --config: another run's contract copied in passed, and predict lost a third of its AP50.
        checks.append(Check("checkpoint config", "fail", f"{directory / CONFIG_FILE}, the config the run trained with, "
                            f"has {own[0]}, but {directory / CONTRACT_FILE}, the frame `bbuvl predict` reads, has "
                            f"{own[1]}: one of the two is not this run's (a file copied from another checkpoint?), and "
                            "every photo is predicted in another frame than the one the model trained in; copy the "
                            "checkpoint again ('saved files' names the file that changed)"))
    if cfg is not None and (given := frame_difference(cfg, c)) is not None:
        checks.append(Check("config pixels", "fail", f"the config's {given[0]} differ from the checkpoint's contract "
                            f"({given[1]}): training on with this config would move every box"))
    return checks


FRAME_KEYS = ("min_pixels", "max_pixels", "max_vision_tokens")


def frame_difference(cfg: Config, contract: Any, held_only: bool = False) -> tuple[str, str] | None:
    """(the config's, the contract's) pixel bounds and vision-token budget in words where they differ, else None.
    `held_only`: only the keys the config's YAML holds (a checkpoint an older bbu-vl wrote lacks the keys added since,
    which read as this version's defaults, not as what it trained with: config.py `absent_keys`)."""
    keys = [k for k in FRAME_KEYS if not held_only or holds_key(cfg, f"model.{k}")]
    ours, theirs = ([getattr(x, k) for k in keys] for x in (cfg.model, contract))
    if ours == theirs:
        return None
    return (", ".join(f"{k}={v}" for k, v in zip(keys, ours)), ", ".join(f"{k}={v}" for k, v in zip(keys, theirs)))


def check_prompt(predictor: Predictor, hierarchy: Hierarchy) -> list[Check]:
    """The system prompt names every label of the checkpoint's vocabulary; the labels are valid in the hierarchy."""
    prompt = predictor.prompt
    if not prompt.labels:
        return [Check("prompt labels", "warn", "prompt.json lists no labels")]
    absent = [label for label in prompt.labels if label not in prompt.system]
    checks = [Check("prompt labels", "fail" if absent else "ok",
                    f"labels not named in the system prompt: {', '.join(absent)}" if absent
                    else f"the system prompt names all {len(prompt.labels)} labels ({prompt.lang})")]
    invalid = [label for label in prompt.labels if not hierarchy.is_valid(label)]
    if invalid:
        checks.append(Check("label hierarchy", "warn",
                            f"labels outside the hierarchy (no visual cue in the prompt): {', '.join(invalid)}"))
    return checks


def _load_failure(directory: Path, why: str) -> str:
    """What a failed load says, naming the folder (a file transformers needs that is missing is named by the
    checkpoint's own check, `checkpoint_problem`, before transformers would name something else)."""
    return why if why.startswith(str(directory)) else f"{directory}: {why}"


def plain_as_predicted(directory: Path) -> ModelFolder:
    """A plain model folder as `bbuvl predict` reads it with no run config: its own frame, and the labels and the
    system prompt of its `labels.json` (what `bbuvl model export` writes, and `--labels` reads), else the built-in
    data's labels."""
    vocabulary = directory / EXPORT_LABELS
    if vocabulary.is_file():
        saved = read_json(vocabulary, "labels file")
        lang = saved.get("lang") if isinstance(saved, dict) and isinstance(saved.get("lang"), str) else None
        return read_model_folder(directory, read_vocabulary(vocabulary), lang, system=recorded_prompt(vocabulary))
    base = Config()
    hierarchy = Hierarchy.load(base.data.hierarchy)
    return read_model_folder(directory, data_labels((base.data.train, base.data.val), hierarchy) or hierarchy.labels())


def unfinished_save(directory: Path) -> str | None:
    """Why `directory`, a run's checkpoint-N, was not saved whole, naming the `bbuvl train` stopped while saving it when
    its lock file is still there, and the newest whole checkpoint beside it; None for any other folder, or a whole one.

    A running writer is refused before this (`outputs.refuse_inputs_being_written`); a killed one leaves a folder HF
    filled file by file, weights first and trainer_state.json last, which loads and passed every check of doctor
    while `--resume` skips it as unfinished (train/run_dir.py).
    """
    try:
        located = real_path(directory)
    except (OSError, ValueError):  # a link loop, a name no file can have: loading names it
        return None
    if not CHECKPOINT.match(located.name) or not located.is_dir() or (why := checkpoint_incomplete(located)) is None:
        return None
    killed = next((w for w in map(writer_at, (located, *located.parents)) if w is not None and not w.running), None)
    by = (f"`bbuvl {killed.command}` ({killed.who}) stopped while saving it, and left its lock file"
          if killed is not None else "a save stopped half-way (killed, a full disk) or a copy left files out")
    whole = next((p for p in reversed(numbered_checkpoints(located.parent)) if p != located
                  and checkpoint_incomplete(p) is None), None)
    then = f"; the newest whole checkpoint beside it is {whole}" if whole is not None else ""
    return (f"{directory}: not saved whole, {why}: {by}; `bbuvl train --resume` skips it, and what is in it may be "
            f"cut short{then}")


def diagnose_model(checkpoint: str | Path, cfg: Config | None = None, image: str | Path | None = None,
                   device: str = "cpu") -> ModelReport:
    """Run every check on a checkpoint folder; `cfg` (optional) is the config a run would continue with."""
    directory = Path(checkpoint)
    report = ModelReport(str(directory))
    if (unfinished := unfinished_save(directory)) is not None:  # it loaded, and every check passed on half a save
        report.checks.append(Check("load", "fail", unfinished))
        return report
    if is_plain_model_folder(directory) and (problem := start_folder_problem(directory)):
        report.checks.append(Check("load", "fail", f"{directory}: {problem}"))  # before transformers names a header or a video processor
        return report
    report.checks.extend(check_saved_files(directory))  # before loading: a damaged file may be why it does not load
    report.checks.extend(check_losses(directory))  # files alone: said whether or not the model loads
    try:
        if is_plain_model_folder(directory) and cfg is None:
            # Read as `bbuvl predict` reads it: its own processor's frame, generate mode, and an export's own labels.
            predictor = Predictor.load(plain_as_predicted(directory), device=device)
        elif is_plain_model_folder(directory):
            # A base model before any training: the run `cfg` would build on it, its labels, a fresh head.
            hierarchy = Hierarchy.load(cfg.data.hierarchy)
            labels = data_labels((cfg.data.train, cfg.data.val), hierarchy) or hierarchy.labels()
            predictor = Predictor.load(read_model_folder(directory, labels, cfg=cfg), device=device)
        else:
            predictor = Predictor.load(directory, device=device)
    except (OSError, ValueError, RuntimeError) as e:  # missing files, token mismatch, head weights that do not fit
        report.checks.append(Check("load", "fail", _load_failure(directory, str(e))))
        return report
    run_cfg = cfg or predictor.cfg
    picture = sample_image(predictor.cfg, image)
    if image is not None:
        prepare_named(predictor, image)  # a photo no model frame holds is the user's to fix, named, not a check's crash
    checks, report.groups = check_groups(predictor.model, run_cfg)
    hierarchy = Hierarchy.load(run_cfg.data.hierarchy)
    for part in (checks, check_stored_tensors(directory, predictor.model), check_module_files(directory, predictor.model),
                 check_finite(predictor.model), check_language_model(predictor, picture),
                 check_tokens(predictor.model, predictor.processor), template_checks(predictor, picture, directory),
                 check_head(predictor, picture), check_contract(directory, predictor, cfg), check_prompt(predictor, hierarchy)):
        report.checks.extend(part)
    return report
