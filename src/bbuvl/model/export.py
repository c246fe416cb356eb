"""`bbuvl model export`: a bbu-vl checkpoint as a stock Hugging Face folder that transformers and vLLM load alone.

What goes in: the VLM's weights with LoRA merged, the processor under its stock class name (model/processor.py),
the family's chat template, a greedy generation config, `labels.json` (what `bbuvl predict --labels` reads) and a
model card (`README.md`, model/model_card.py) saying how to prompt it and how to read its boxes. For `bbuvl predict`
on the folder, which stock loaders ignore: the scale the model trained at (`tiles: auto`'s grid) and the choices made
later for its generate-mode answers (`chosen_files`).

What no stock loader runs is decided part by part (docs/serving.md, "Export"):
- the detection head (and so the head and name modes) stays bbu-vl's: left out, and the card says so; generate
  mode never reads it;
- the coordinate read-out is a training-only loss module: left out, it changes no answer;
- vision positions change every answer. No family has a place that takes them exactly (Qwen3-VL's learned
  position embedding is added before the vision blocks, interpolated over the photo's fraction; ours are added
  after the merger, per absolute cell), so export refuses them by name unless the caller drops them with their
  measured cost (`PartCost`, measured by eval/part_cost.py), which the card then states;
- the run's `inference.*` settings: a plain folder holds none of them but the answer budget (generation_config.json),
  so each other than its default is named, with what `bbuvl predict` on the export runs instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.torch import load_file

from bbuvl.atomic import atomic_folder, write_text_atomic
from bbuvl.data.coords import MAX_ASPECT, CoordinateContract
from bbuvl.data.faults import TILED_THRESHOLDS_FILE
from bbuvl.data.families import TURN_END
from bbuvl.data.jsonfile import parse_json, read_json
from bbuvl.data.scale import SCALE_FILE, TILE_SCALE_FILE, TrainingScale
from bbuvl.model.checkpoint import (EXPORT_FRAME_FILE, HEAD_FILE, POSITIONS_FILE, READOUT_FILE, ModelFolder, Prompt,
                                    is_peft, is_plain_model_folder, load_model, read_model_folder)
from bbuvl.model.checkpoint_files import TEMPLATE_FILE
from bbuvl.model.identity import CHOSEN_LATER, taken_choices, write_taken
from bbuvl.model.processor import save_processor, set_pixel_range

if TYPE_CHECKING:
    from transformers import GenerationConfig

LABELS_FILE = "labels.json"
GENERATION_FILE = "generation_config.json"
CARD_FILE = "README.md"


class ExportRefused(ValueError):
    """The checkpoint carries a part that changes its answers and that no stock loader runs."""


@dataclass(frozen=True)
class Scores:
    """Generate-mode COCO scores of one arm on the validation photos (eval's METRICS.json keys)."""

    AP: float
    AP50: float
    AP50_agnostic: float


@dataclass(frozen=True)
class PartCost:
    """What leaving a part out costs, measured on validation photos: the checkpoint with it and without it."""

    part: str  # the checkpoint file no stock loader reads
    val: str  # the validation JSONL it was measured on
    photos: int
    with_part: Scores  # bbu-vl's answers (greedy, unconstrained)
    without_part: Scores  # the export's answers (greedy, unconstrained)
    changed: int  # photos whose answer differs without the part


@dataclass(frozen=True)
class LeftOut:
    """A part of the checkpoint the export does not carry, and why it may be left."""

    part: str
    why: str


@dataclass
class ExportResult:
    """What `export_checkpoint` wrote."""

    out: Path
    family: str
    merged_lora: bool
    left_out: list[LeftOut] = field(default_factory=list)
    costs: list[PartCost] = field(default_factory=list)
    frame_gap: str | None = None  # the photos a stock processor frames otherwise than training (`frame_gap`)

    @property
    def card(self) -> Path:
        """The model card's path."""
        return self.out / CARD_FILE


def portability_problem(folder: ModelFolder) -> str | None:
    """Why a checkpoint cannot be exported as it is (a part that changes its answers), or None."""
    if folder.cfg.model.vision_positions and (folder.path / POSITIONS_FILE).exists() and _positions_learned(folder.path):
        return (f"{folder.path / POSITIONS_FILE}: vision positions (model.vision_positions) change every answer and no "
                "stock loader (transformers, vLLM, SGLang) runs them; export with --drop-vision-positions --val VAL.jsonl "
                "to leave them out and write their measured AP cost into the model card, or train with "
                "model.vision_positions=false for a portable checkpoint")
    return None


def _positions_learned(directory: Path) -> bool:
    """Whether the saved vision positions add anything (they start at zero: untrained, dropping them is exact)."""
    return any(bool(t.abs().max() > 0) for t in load_file(directory / POSITIONS_FILE).values())


def stock_frame(contract: CoordinateContract) -> CoordinateContract:
    """The frame as a stock image processor can hold it: `max_pixels` no larger than the vision-token budget allows.

    A `min_pixels` past the budget makes every photo the run's bounds frame at `min_pixels` or more too big, and
    `CoordinateContract.model_size` frames those at one cell to the budget instead: the bounds a stock processor takes
    are then those (min > max, which it would be held to otherwise, is no frame any image processor takes).
    """
    if contract.max_vision_tokens is None:
        return contract
    cap = contract.max_vision_tokens * contract.factor ** 2
    if contract.min_pixels > cap:
        return replace(contract, min_pixels=contract.factor ** 2, max_pixels=cap)
    return replace(contract, max_pixels=min(contract.max_pixels, cap))


def stock_overshoot(contract: CoordinateContract) -> int | None:
    """The most vision tokens a stock image processor at `stock_frame`'s bounds gives a photo, when that passes the
    contract's budget (None: it never does).

    `stock_frame` holds `max_pixels` to the budget, but a photo under `min_pixels` is scaled up with each side rounded up
    to whole cells, which can pass it (min = max = 64 cells: a 250x170 photo becomes 10x7 = 70); bbu-vl frames such a
    photo within the budget instead (`CoordinateContract.model_size`). In that branch a photo of aspect r = h / w
    becomes ceil(sqrt(min r) / f) x ceil(sqrt(min / r) / f) cells, constant between the aspects where one side is a
    whole number of cells: just either side of those is every count it takes.
    """
    if contract.max_vision_tokens is None:
        return None
    f, low = contract.factor, contract.min_pixels
    aspects = {1.0}
    for cells in range(1, math.isqrt(low * MAX_ASPECT) // f + 2):
        for r in ((cells * f) ** 2 / low, low / (cells * f) ** 2):
            if 1 / MAX_ASPECT <= r <= MAX_ASPECT:
                aspects |= {r * (1 - 1e-9), r * (1 + 1e-9)}
    most = max(math.ceil(math.sqrt(low * r) / f) * math.ceil(math.sqrt(low / r) / f) for r in aspects)
    return most if most > contract.max_vision_tokens else None


def frame_gap(contract: CoordinateContract) -> str | None:
    """Which photos a stock image processor at `stock_frame`'s bounds frames otherwise than bbu-vl did in training, and
    how bbu-vl framed them, in words (`bbuvl model export` prints it; the card says it too); None: none.

    A processor resizes by one pair of bounds; bbu-vl by the run's, then, for a photo those give more than the budget's
    tokens, by one cell to the budget (`CoordinateContract.model_size`). One pair holds both where `min_pixels` is
    under the budget, except for photos `stock_overshoot` finds; past it, except for photos the run's bounds shrink to
    the budget or fewer, which needs sides far apart (a strip). A strip that rounding carries past 200:1 is framed
    otherwise under any bounds (`data.coords.within_aspect`): every card says so, whatever this returns.
    """
    if contract.max_vision_tokens is None:
        return None
    cell, cap = contract.factor ** 2, contract.max_vision_tokens
    stock = stock_frame(contract)
    if contract.min_pixels > cap * cell:
        return (f"the image processor (min_pixels {stock.min_pixels}, max_pixels {stock.max_pixels}) frames every photo "
                f"as training did but a narrow strip that the run's min_pixels {contract.min_pixels} and max_pixels "
                f"{contract.max_pixels} shrink to {cap} vision tokens or fewer, which training framed at those bounds")
    if (most := stock_overshoot(stock)) is not None:
        return (f"the image processor (min_pixels {stock.min_pixels}, max_pixels {stock.max_pixels}) scales a photo "
                f"under min_pixels up past the {cap} vision tokens training held each photo to (up to {most}); training "
                f"framed such a photo at min_pixels {cell} and max_pixels {cap * cell}")
    return None


def left_out_parts(folder: ModelFolder, costs: list[PartCost], taken: dict[str, bytes] | None = None) -> list[LeftOut]:
    """The checkpoint's parts the export leaves out, each with its reason."""
    parts = []
    if (folder.path / HEAD_FILE).exists():
        parts.append(LeftOut(HEAD_FILE, "the detection head (`bbuvl predict --mode head|name`) is bbu-vl's; generate "
                                        "mode, what this folder answers, never reads it"))
    if (folder.path / READOUT_FILE).exists():
        parts.append(LeftOut(READOUT_FILE, "the coordinate read-out is a training loss only; no answer reads it"))
    if (folder.path / POSITIONS_FILE).exists():
        if any(c.part == POSITIONS_FILE for c in costs):
            parts.append(LeftOut(POSITIONS_FILE, "vision positions: no stock loader runs them; their measured cost is below"))
        elif folder.cfg.model.vision_positions:
            parts.append(LeftOut(POSITIONS_FILE, "vision positions still at their zero start: leaving them out changes "
                                                 "no answer"))
    return (parts + [LeftOut(name, why) for name, why in chosen_files(folder, costs, taken)[1].items()]
            + verdict_settings(folder) + inference_settings(folder))


VERDICT_KEYS = ("verdict_review", "verdict_fail", "verdict_review_tiled", "verdict_fail_tiled")


def verdict_settings(folder: ModelFolder) -> list[LeftOut]:
    """The run config's settings that judge photos' verdicts which a plain folder has no place for: its hierarchy (which
    labels are faults) and verdict thresholds other than the defaults. `bbuvl predict` on the export judges by the
    shipped hierarchy and the defaults unless given them, where on the checkpoint it judged by the run's."""
    from bbuvl.config import InferenceConfig
    from bbuvl.paths import real_path

    left = []
    if (hierarchy := folder.cfg.data.hierarchy) is not None:
        left.append(LeftOut("data.hierarchy", f"the run's hierarchy, {real_path(hierarchy)}, says which labels are "
                                              "faults; `bbuvl predict` on this folder judges by the shipped one unless "
                                              "given it with `--hierarchy`"))
    default = InferenceConfig()
    changed = [f"{k} {getattr(folder.cfg.inference, k)}" for k in VERDICT_KEYS
               if getattr(folder.cfg.inference, k) != getattr(default, k)]
    if changed:
        left.append(LeftOut("inference.verdict_*", f"the run's verdict thresholds ({', '.join(changed)}); `bbuvl "
                                                   "predict` on this folder takes the defaults unless given "
                                                   "`--verdict-review` and `--verdict-fail`"))
    return left


# The one inference setting an export carries: `bbuvl predict` on a plain folder reads its answer budget from
# generation_config.json. The verdict's thresholds are named together (`verdict_settings`).
CARRIED_KEYS = ("max_new_tokens",)
# Read by the modes a plain folder cannot run (head, name, teachers): they went with the detection head.
TRAINED_MODE_KEYS = ("objectness_threshold", "nms_iou", "labels_per_box", "part_nms", "tile_queries", "num_teachers")
# `bbuvl predict`'s option for each setting it takes on the command line; no option sets the others on a plain folder.
PREDICT_OPTIONS = {"batch_size": "--batch-size", "constrained": "--constrained/--no-constrained",
                   "score_threshold": "--score-threshold", "tiles": "--tiles", "tile_zoom": "--tile-zoom",
                   "tile_stride": "--tile-stride", "tile_whole": "--tile-whole/--tiles-only",
                   "zoom_containers": "--zoom-into", "tile_refine": "--tile-refine"}


def inference_settings(folder: ModelFolder) -> list[LeftOut]:
    """Each of the run config's `inference.*` settings other than its default that the export cannot hold, with what
    `bbuvl predict` on the export runs instead: a plain folder has no run config, so it takes the defaults."""
    from bbuvl.config import InferenceConfig

    run, default, left = folder.cfg.inference, InferenceConfig(), []
    for key in InferenceConfig.model_fields:
        ours, theirs = getattr(run, key), getattr(default, key)
        if key in CARRIED_KEYS or key in VERDICT_KEYS or ours == theirs:
            continue
        if key == "mode":
            instead = "this folder answers in generate mode only"
        elif key in TRAINED_MODE_KEYS:
            instead = "only modes this folder cannot run read it (it answers in generate mode only)"
        else:
            option = PREDICT_OPTIONS.get(key)
            instead = (f"`bbuvl predict` on this folder takes {_setting(theirs)}"
                       + (f" unless given `{_given(option, ours)}`" if option else "; none of its options sets it"))
        left.append(LeftOut(f"inference.{key}", f"the run's {_setting(ours)}; {instead}"))
    return left


def _setting(value: object) -> str:
    """A setting's value as the run config writes it: `null`, `false`, `[a, b]`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(map(str, value))}]"
    return str(value)


def _given(option: str, value: object) -> str:
    """The `bbuvl predict` option that sets `value`: `--no-constrained`, `--tiles 2x2`, `--zoom-into none`."""
    if "/" in option:
        on, off = option.split("/")
        return on if value else off
    if isinstance(value, (list, tuple)):
        return f"{option} {','.join(value) or 'none'}"
    return f"{option} {value}"


def chosen_files(folder: ModelFolder, costs: list[PartCost],
                 taken: dict[str, bytes] | None = None) -> tuple[list[str], dict[str, str]]:
    """The files chosen for the checkpoint's answers later (`CHOSEN_LATER`: verdict thresholds, the tile scale) that
    the export carries, and those it leaves out with the reason; `taken` (`taken_choices`): their bytes as read once,
    else the files there now.

    `bbuvl predict -c EXPORT --labels ...` reads them as it reads them in the checkpoint (generate mode, the only one
    an export runs): carried, its verdicts and `tiles: auto` grid are the checkpoint's. Chosen on another mode's
    scores, or on answers a left-out part changes, they would judge answers they were not chosen on.
    """
    carried, left, pairs = [], {}, {}
    for name in CHOSEN_LATER:
        path = folder.path / name
        if taken is not None and name not in taken or taken is None and not path.is_file():
            continue
        # Damaged: refused naming it, as `bbuvl predict` on the checkpoint does
        saved = read_json(path, "chosen file") if taken is None else _parsed(path, taken[name])
        mode = saved.get("mode") if isinstance(saved, dict) else None
        pairs[name] = saved.get("pair") if isinstance(saved, dict) else None
        if costs:
            left[name] = (f"chosen on answers with {', '.join(c.part for c in costs)}, which this export leaves out "
                          "and so answers otherwise")
        elif mode != "generate":
            left[name] = (f"chosen on {mode or 'an unrecorded'} mode's predictions; this folder answers in generate "
                          "mode only")
        else:
            carried.append(name)
    if TILED_THRESHOLDS_FILE in carried and pairs[TILED_THRESHOLDS_FILE] is not None \
            and pairs[TILED_THRESHOLDS_FILE] != (pairs.get(TILE_SCALE_FILE) if TILE_SCALE_FILE in carried else None):
        # Chosen with a scale the export does not carry: predict there leaves such a pair out (infer/verdict.py
        # `unpaired`), and would say a choose-tiles run had stopped between its files
        carried.remove(TILED_THRESHOLDS_FILE)
        left[TILED_THRESHOLDS_FILE] = (f"chosen with the {TILE_SCALE_FILE} beside it, which this export leaves out: it "
                                       "judges photos cut at that scale" if TILE_SCALE_FILE in left else
                                       f"written with another {TILE_SCALE_FILE} than the checkpoint's (a `choose-tiles "
                                       "--choose-thresholds` stopped between its two files)")
    return carried, left


def _parsed(path: Path, raw: bytes) -> object:
    """The JSON in `raw`, read from `path`; ValueError naming `path` when it is none."""
    try:
        return parse_json(raw)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path}: not a chosen file ({e})") from None


def legacy_rope_keys(config_text: str) -> str:
    """config.json's text with the mRoPE sections also under the names readers before transformers 5 take them from.

    transformers 5 writes them as `text_config.rope_parameters` only; a stack on transformers 4 (as vLLM releases
    pinned to it) reads `rope_scaling` and `rope_theta`, and without `mrope_section` there runs plain 1-D positions on
    the photo's tokens, answering without an error. transformers 5 reads the copies back as the same parameters.
    """
    config = json.loads(config_text)
    text = config.get("text_config")
    rope = text.get("rope_parameters") if isinstance(text, dict) else None
    if isinstance(rope, dict) and "mrope_section" in rope:
        text.setdefault("rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"})
        if "rope_theta" in rope:
            text.setdefault("rope_theta", rope["rope_theta"])
    if "dtype" in config:
        config.setdefault("torch_dtype", config["dtype"])  # its name before transformers 4.56
    return json.dumps(config, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def legacy_frame_keys(config_text: str) -> str:
    """An image processor's saved settings with the frame's bounds also as `min_pixels`/`max_pixels`, the keys readers
    before transformers 4.50's `size` read them from (as vLLM releases pinned to those): without them such a reader
    resizes to Qwen's defaults, another frame, and every box moves without an error."""
    config = json.loads(config_text)
    for settings in (config, config.get("image_processor")):
        size = settings.get("size") if isinstance(settings, dict) else None
        if isinstance(size, dict) and {"shortest_edge", "longest_edge"} <= size.keys():
            settings.setdefault("min_pixels", size["shortest_edge"])
            settings.setdefault("max_pixels", size["longest_edge"])
    return json.dumps(config, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


# What transformers' GenerationConfig.validate names as unused beside greedy decoding (`do_sample` false, one beam).
# Read from generation_config.json, each prints "generation flags are not valid" at every load, and save_pretrained
# refuses the config outright. A base's own file carries some (Qwen's: temperature, top_p, top_k). No temperature,
# not even vLLM's greedy 0: no other field vLLM reads says greedy (top_k 1 samples among tied top logits, where greedy
# takes the first), so the card gives vLLM its temperature on the command line (docs/serving.md, "Greedy in vLLM").
SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff")
BEAM_ONLY = ("early_stopping", "length_penalty")


def greedy_only(generation: GenerationConfig) -> None:
    """Set `generation` to one greedy answer a prompt, as `bbuvl predict` decodes, with no flag that this ignores."""
    generation.do_sample = False
    # Unset, not 1: transformers' default is one beam and one answer. A base's num_beams (3) made the export's default
    # a beam search, where its card says greedy.
    for name in ("num_beams", "num_return_sequences") + SAMPLING_ONLY + BEAM_ONLY:
        if getattr(generation, name, None) is not None:
            setattr(generation, name, None)


def as_predict_decodes(generation: GenerationConfig, tokenizer: Any, max_new_tokens: int) -> None:
    """Set `generation` to decode as `bbuvl predict` does: greedy, stopping where it stops (the turn's end, or
    padding), with its answer budget `max_new_tokens`: what an export and a training checkpoint save for stock
    loaders (docs/serving.md, "Stock transformers on a training checkpoint")."""
    generation.eos_token_id = [tokenizer.convert_tokens_to_ids(TURN_END), tokenizer.pad_token_id]
    generation.pad_token_id = tokenizer.pad_token_id
    # A base's max_length too was a second limit that max_new_tokens overrides, and transformers said so at every call.
    generation.max_new_tokens, generation.max_length = max_new_tokens, None
    greedy_only(generation)


def chat_messages(prompt: Prompt) -> list[dict]:
    """The chat messages a stock loader asks the model with (the card shows them): the system prompt, then the photo
    and the user text."""
    from bbuvl.encode.prompts import USER_TEXT

    return [{"role": "system", "content": prompt.system},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": USER_TEXT[prompt.lang]}]}]


def template_drift(processor: Any, prompt: Prompt, contract: CoordinateContract) -> str | None:
    """Where the processor's chat template, rendered as the card says (its messages, the generation prompt), gives
    other token ids than bbu-vl's encoder asks the model with, in words; None when they are the same.

    bbu-vl writes each family's markup itself (encode/chat.py); a stock loader renders the folder's template. A
    template of another family (Qwen3.5's think block beside a Qwen2.5-VL) was exported without a word, and stock
    transformers answered from another prompt (log-probabilities 0.016 off on the tiny model).
    """
    from PIL import Image

    from bbuvl.data.families import get_family
    from bbuvl.encode.chat import IMAGE_TOKEN, SPAN_STUDENT, ChatEncoder, Turn

    family = get_family(contract.family)
    encoder = ChatEncoder(processor, prompt.system, prompt.lang, family.assistant_prefix)
    picture = Image.new("RGB", (2 * contract.factor, 2 * contract.factor))  # a frame of one merged token
    ours = encoder.encode([Turn(picture, None, SPAN_STUDENT)], add_generation_prompt=True)
    kwargs = {"enable_thinking": False} if family.assistant_prefix else {}
    try:
        text = processor.apply_chat_template(chat_messages(prompt), add_generation_prompt=True, tokenize=False, **kwargs)
    except Exception as e:  # a template that cannot render these messages: what a stock loader would meet
        return f"does not render the card's chat messages ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
    text = text.replace(IMAGE_TOKEN, IMAGE_TOKEN * ours.num_vision_tokens)
    theirs = processor.tokenizer.encode(text, add_special_tokens=False)
    mine = ours.input_ids.tolist()
    if theirs == mine:
        return None
    first = next((i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b), min(len(theirs), len(mine)))
    def shown(ids: list[int]) -> str:
        return repr(processor.tokenizer.decode(ids[first:first + 8])) if first < len(ids) else "its end"

    return f"renders another prompt than bbu-vl's from token {first} (the template: {shown(theirs)}, bbu-vl: {shown(mine)})"


def export_checkpoint(checkpoint: str | Path, out: str | Path, costs: list[PartCost] | None = None,
                      accept_base: bool = False) -> ExportResult:
    """Write `checkpoint` (a folder `bbuvl train` wrote) to `out` as a stock Hugging Face folder with a model card.

    ExportRefused names a part that changes the answers and that no stock loader runs, unless `costs` holds its
    measured cost (then it is left out and the card states the cost). `accept_base`: a LoRA checkpoint's adapters are
    merged into the base its model.path holds now, even when it is not the one they trained on.
    """
    from bbuvl.model.model_card import model_card

    costs = list(costs or [])
    if is_plain_model_folder(checkpoint):
        raise ValueError(f"{checkpoint}: a plain model folder already (no bbuvl.yaml); stock loaders read it as it is")
    folder = read_model_folder(checkpoint)
    problem = portability_problem(folder)
    if problem and not any(c.part == POSITIONS_FILE for c in costs):
        raise ExportRefused(problem)
    taken = taken_choices(folder.path)  # decided on, said and written as read here, whatever is chosen meanwhile
    TrainingScale.load(folder.path, taken)  # before minutes of loading: a damaged one is refused naming it, never copied
    carried = [SCALE_FILE, *chosen_files(folder, costs, taken)[0]]
    model, processor, cfg, contract, prompt = load_model(folder, device="cpu", accept_base=accept_base)
    if not getattr(processor, "chat_template", None):
        # The export would load, then fail at the first apply_chat_template, with a card saying the template is there.
        raise ValueError(f"{folder.path / TEMPLATE_FILE}: missing, so the processor has no chat template, which stock "
                         "loaders build the prompt with; re-copy the checkpoint with it")
    if (drift := template_drift(processor, prompt, contract)) is not None:
        raise ExportRefused(f"{folder.path / TEMPLATE_FILE}: {drift}: stock loaders, which build the prompt with it, "
                            "would ask the model otherwise than bbu-vl trained and predicts it (`bbuvl doctor model` "
                            "compares the two); restore the checkpoint's own chat template")
    gap, trained = frame_gap(contract), contract
    contract = stock_frame(contract)
    set_pixel_range(processor, contract)  # the stock resize then shrinks a photo over the token budget as training did
    vlm = model.vlm
    merged = is_peft(vlm)
    if merged:
        vlm = vlm.merge_and_unload()
    out = Path(out)
    tokenizer = processor.tokenizer
    generation = vlm.generation_config
    as_predict_decodes(generation, tokenizer, cfg.inference.max_new_tokens)
    try:  # save_pretrained refused it too, but naming no file
        generation.validate(strict=True)
    except ValueError as e:
        source = folder.path if (folder.path / GENERATION_FILE).is_file() else Path(cfg.model.path)
        said = " ".join(str(e).split())
        raise ValueError(f"{source / GENERATION_FILE}: {said} Fix it there and export again.") from None
    result = ExportResult(out, contract.family, merged, left_out_parts(folder, costs, taken), costs, gap)
    with atomic_folder(out) as tmp:  # the whole folder, or the previous one kept (bbuvl/atomic.py)
        vlm.save_pretrained(tmp, safe_serialization=True)
        write_text_atomic(tmp / "config.json", legacy_rope_keys((tmp / "config.json").read_text(encoding="utf-8")))
        save_processor(processor, tmp)  # with the frame's min/max pixels (set above)
        for name in ("preprocessor_config.json", "processor_config.json"):
            if (tmp / name).is_file():
                write_text_atomic(tmp / name, legacy_frame_keys((tmp / name).read_text(encoding="utf-8")))
        # An object, as every JSON file of a model folder must be; `--labels` reads it (data/layout.py read_vocabulary).
        # The system prompt verbatim: rebuilt from the labels and the shipped hierarchy, a run's own hierarchy (its
        # cues, its categories) asked the model with another prompt than it was trained with.
        labels = {"labels": prompt.labels, "lang": prompt.lang, "system": prompt.system}
        write_text_atomic(tmp / LABELS_FILE, json.dumps(labels, ensure_ascii=False, indent=2) + "\n")
        write_text_atomic(tmp / result.card.relative_to(out), model_card(folder, contract, prompt, cfg, result))
        # `bbuvl predict` on the export frames each photo by it, as on the checkpoint; stock loaders never read it.
        write_text_atomic(tmp / EXPORT_FRAME_FILE, json.dumps(trained.to_dict(), indent=2) + "\n")
        # Not read by stock loaders; `bbuvl predict -c OUT --tiles auto` reads them as in the checkpoint, where without
        # them it tiled at scale 1 and said it was 'the scale the checkpoint trained at'.
        write_taken(taken, tmp, carried)
    return result


