"""The model card (`README.md`) of an exported folder: everything a stock loader needs to answer as bbu-vl does.

The prompt is written out verbatim, because a model fine-tuned on one system prompt answers worse under another;
the frame (min/max pixels), because a photo resized otherwise is read, and answered, in another frame; and the
box convention with the arithmetic that turns an answer into the photo's pixels, because that is where deployed
boxes go wrong (docs/families.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from bbuvl.config import Config
from bbuvl.data.coords import MAX_ASPECT, RELATIVE_SCALE, CoordinateContract
from bbuvl.data.families import get_family
from bbuvl.data.text import name_as_text
from bbuvl.encode.prompts import USER_TEXT
from bbuvl.model.checkpoint import ModelFolder, Prompt
from bbuvl.model.export import chat_messages, stock_overshoot
from bbuvl.paths import real_path

if TYPE_CHECKING:
    from bbuvl.model.export import ExportResult


# A photo as bbu-vl shows it to the model (data/images.py `oriented`, `convert_to_rgb`), in Pillow and numpy alone.
# Its EXIF turn is read as `exif_orientation` reads it: ImageOps.exif_transpose, which the card used, fails on EXIF blocks
# buggy cameras write (no TIFF header, a tag of the wrong type; tests/exif_photos.py) that bbu-vl reads.
# Pillow's convert('RGB') clips a 16-bit photo's values at 255 (it turns nearly white) and shows what lies under
# transparent pixels (mostly black), where bbu-vl scales the one and puts the other on white; the card's code had
# `.convert('RGB')`, and answered such photos otherwise than `bbuvl predict`. 32-bit and float photos (rare TIFFs) are
# left to Pillow here; the card says so.
UPRIGHT_RGB = (
    "TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,",
    "         5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,",
    "         8: Image.Transpose.ROTATE_90}  # by EXIF orientation",
    "",
    "",
    "def upright_rgb(path):",
    '    """The photo as bbu-vl shows it to the model: upright, in 8-bit RGB."""',
    "    image = Image.open(path)",
    "    image.load()  # decoded first: Pillow turns a TIFF itself as it decodes it, and drops its tag",
    "    try:  # an EXIF block a camera wrote damaged turns nothing (ImageOps.exif_transpose fails on some)",
    "        turn = TURNS.get(int(image.getexif().get(0x0112) or 1))",
    "    except Exception:",
    "        turn = None",
    "    if turn is not None:",
    "        image = image.transpose(turn)",
    "    if image.mode.startswith('I;16'):  # 16-bit grey, scaled to 8 bits (convert('RGB') clips it: nearly white)",
    "        image = Image.fromarray(np.rint(np.asarray(image) / 257).astype(np.uint8))",
    "    if image.mode in ('RGBA', 'LA', 'PA') or (image.mode == 'P' and 'transparency' in image.info):",
    "        rgba, image = image.convert('RGBA'), Image.new('RGB', image.size, (255, 255, 255))",
    "        image.paste(rgba, mask=rgba.getchannel('A'))  # transparent pixels on white, as in training",
    "    return image.convert('RGB')",
)


def _longest_backticks(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def _fence(text: str, lang: str = "") -> str:
    """`text` as a fenced block, verbatim: the fence is longer than any run of backticks in it (a fixed ```` fence
    was closed early by a prompt holding four, and the rest of the prompt rendered as Markdown)."""
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _code(text: str) -> str:
    """`text` as inline code, verbatim: a label holding `*`, `_`, `<b>` or `#` was rendered as Markdown or HTML in the
    list of labels a deployer copies from."""
    ticks = "`" * (_longest_backticks(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _path_code(path: str | Path) -> str:
    """`path`, with its links followed, as inline code; bytes of it that are not UTF-8 (a folder named in GBK) spelt
    `\\xbb`: the card is UTF-8 text, and writing it failed once --val had been measured."""
    return _code(name_as_text(str(real_path(path))))


def _conversion(contract: CoordinateContract, gap: bool) -> str:
    if contract.box_format == "relative":
        return (f"Boxes are relative: each coordinate is an integer from 0 to {RELATIVE_SCALE} of the photo's side "
                f"({RELATIVE_SCALE} = the right or bottom edge). In the photo's pixels (`W` x `H`, EXIF rotation "
                f"applied): `x_photo = x / {RELATIVE_SCALE} * W`, `y_photo = y / {RELATIVE_SCALE} * H`.")
    return ("Boxes are absolute pixels of the resized photo (the frame). The frame of a `W` x `H` photo (EXIF rotation "
            f"applied) is `h, w = smart_resize(H, W, factor={contract.factor}, min_pixels={contract.min_pixels}, "
            f"max_pixels={contract.max_pixels})` (transformers' `Qwen2-VL` rule"
            + (", with the bounds the Frame section names for the photos it says training framed otherwise"
               if gap else "")
            + "); in the photo's pixels: `x_photo = x * W / w`, `y_photo = y * H / h`.")


def _strips() -> str:
    """The card's word on a strip whose rounded frame passes MAX_ASPECT:1, which training cut to it (data/coords.py)."""
    return (f"Where `smart_resize`'s rounding carries a strip near {MAX_ASPECT}:1 past it (its short side rounded down to "
            f"one cell), bbu-vl cut the frame's long side to {MAX_ASPECT} times its short one, since no image processor "
            f"takes a frame past {MAX_ASPECT}:1 back: resize such a photo to that frame first.")


def _scores_table(card: list[str], result: "ExportResult") -> None:
    for cost in result.costs:
        card += [f"Leaving out `{cost.part}` was measured on {cost.photos} validation photos ({_path_code(cost.val)}), generate "
                 "mode, greedy, unconstrained:", "",
                 "| answers | AP | AP50 | AP50 class-agnostic |", "|---|---|---|---|"]
        for name, s in (("bbu-vl, with it", cost.with_part), ("this export, without it", cost.without_part)):
            card.append(f"| {name} | {s.AP:.3f} | {s.AP50:.3f} | {s.AP50_agnostic:.3f} |")
        card.append(f"| cost (with - without) | {cost.with_part.AP - cost.without_part.AP:+.3f} | "
                    f"{cost.with_part.AP50 - cost.without_part.AP50:+.3f} | "
                    f"{cost.with_part.AP50_agnostic - cost.without_part.AP50_agnostic:+.3f} |")
        card += ["", f"Without it, {cost.changed} of the {cost.photos} answers differ from bbu-vl's.", ""]


def model_card(folder: ModelFolder, contract: CoordinateContract, prompt: Prompt, cfg: Config,
               result: "ExportResult") -> str:
    """The card's Markdown text."""
    family = get_family(contract.family)
    user = USER_TEXT[prompt.lang]
    messages = chat_messages(prompt)  # what export checks the folder's template renders as bbu-vl asks
    thinking = family.assistant_prefix != ""
    template_kwargs = ", enable_thinking=False" if thinking else ""
    budget = ""
    if contract.max_vision_tokens is not None:
        budget = (f" Training also capped each photo at {contract.max_vision_tokens} vision tokens, which `max_pixels` "
                  "already holds to.")
    if (most := stock_overshoot(contract)) is not None:
        # Said only where it happens: the frame of such a photo is no pair of bounds' alone (export.stock_overshoot).
        cell, cap = contract.factor ** 2, contract.max_vision_tokens
        budget = (f" Training also capped each photo at {cap} vision tokens, which these bounds do not always hold to: "
                  "a photo under `min_pixels` is scaled up with its sides rounded up to whole "
                  f"{contract.factor}-pixel cells, up to {most} tokens (`w * h / {cell}`). Where they give a photo more "
                  f"than {cap} tokens, bbu-vl framed it with `min_pixels` {cell} and `max_pixels` {cap * cell} instead: "
                  "pass those for it (transformers: `images_kwargs={\"size\": {\"shortest_edge\": "
                  f"{cell}, \"longest_edge\": {cap * cell}}}}}`), or it is read in another frame than training's.")
    elif (trained := folder.frame or contract).max_vision_tokens and \
            trained.min_pixels > trained.max_vision_tokens * trained.factor ** 2:
        # The run's min_pixels passed the budget (export.stock_frame): these bounds are the budget's, not the run's.
        cap, run = trained.max_vision_tokens, (trained.min_pixels, trained.max_pixels)
        budget = (f" Training capped each photo at {cap} vision tokens, fewer than its own `min_pixels` {run[0]} "
                  f"holds (`max_pixels` {run[1]}), so it framed every photo at these bounds except a narrow strip that "
                  f"{run[0]} and {run[1]} shrink to {cap} tokens or fewer: it framed such a photo at those (transformers: "
                  f"`images_kwargs={{\"size\": {{\"shortest_edge\": {run[0]}, \"longest_edge\": {run[1]}}}}}`).")
    card = [
        f"# A {family.name} model fine-tuned with bbu-vl",
        "",
        # Where the checkpoint is: `run/final` as typed named another folder to anyone reading the card elsewhere.
        f"Exported by `bbuvl model export` from {_path_code(folder.path)} (model family `{family.model_type}`"
        f"{', LoRA merged' if result.merged_lora else ''}). It loads with stock transformers "
        "(`AutoModelForImageTextToText`, `AutoProcessor`) and vLLM; nothing from bbu-vl is needed.",
        "",
        "It answers a photo with a JSON list of `{\"bbox_2d\": [x1, y1, x2, y2], \"label\": \"...\"}`.",
        "",
        "## Prompt",
        "",
        "The system prompt, verbatim (the model was trained with exactly this text):",
        "",
        _fence(prompt.system, "text"),
        "",
        f"The user turn: the photo, then the text `{user}`. As chat messages:",
        "",
        _fence(json.dumps(messages, ensure_ascii=False, indent=2), "json"),
        "",
        "The chat template in this folder renders them; add the generation prompt"
        + (" and pass `enable_thinking=False` (the answer opens with an empty think block, as in training)."
           if thinking else "."),
        "Decode greedily and stop at `<|im_end|>`: transformers' `generate` does both by `generation_config.json`. "
        "vLLM takes its default decoding from a temperature, which that file leaves out (transformers warns of one "
        "beside greedy decoding), and samples at 1.0 without one: give it `--override-generation-config "
        "'{\"temperature\": 0}'` (below), or `temperature=0` in every request. SGLang: `--preferred-sampling-params "
        "'{\"temperature\": 0}'`.",
        "",
        "## Frame",
        "",
        f"Photos are resized with `smart_resize` to sides that are multiples of {contract.factor} px and an area within "
        f"`min_pixels` {contract.min_pixels:,} and `max_pixels` {contract.max_pixels:,}; the image processor in this folder "
        f"is set to exactly these bounds. A server that resizes otherwise reads the photo in another frame: keep them "
        f"(vLLM: `--mm-processor-kwargs '{{\"min_pixels\": {contract.min_pixels}, \"max_pixels\": {contract.max_pixels}}}'`)."
        + budget + " bbu-vl resized each photo to its frame with Pillow's bicubic; an image processor that resizes "
        "with torchvision interpolates slightly differently, so for the very answers bbu-vl gives, resize the photo to "
        "its frame with Pillow first (the processor's resize is then the identity). " + _strips(),
        "",
        "## Boxes",
        "",
        _conversion(contract, result.frame_gap is not None),
        "`bbuvl.infer.openai_answers` does this for a file of OpenAI-style answers (docs/serving.md in bbu-vl).",
        "",
        "## Labels",
        "",
        f"{len(prompt.labels)} labels, also in `labels.json` with the prompt's language, {prompt.lang}, and the system "
        "prompt above (`bbuvl predict -c THIS_FOLDER` reads them and runs this folder in generate mode):",
        "",
        *[f"- {_code(label)}" for label in prompt.labels],
        "",
        "## Use it",
        "",
        _fence("\n".join([
            "import numpy as np",
            "from PIL import Image",
            "from transformers import AutoModelForImageTextToText, AutoProcessor",
            "",
            *UPRIGHT_RGB,
            "",
            "model = AutoModelForImageTextToText.from_pretrained(FOLDER)",
            "processor = AutoProcessor.from_pretrained(FOLDER)",
            "messages = ...  # the chat messages above",
            f"text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False{template_kwargs})",
            "photo = upright_rgb(PHOTO)",
            "inputs = processor(images=[photo], text=[text], return_tensors='pt')",
            "new = model.generate(**inputs)[0, inputs['input_ids'].shape[1]:]",
            "answer = processor.decode(new, skip_special_tokens=True)",
        ]), "python"),
        "",
        "`upright_rgb` shows the model each photo as bbu-vl did in training and `bbuvl predict`: a 16-bit photo scaled "
        "to 8 bits and transparent pixels on white, where Pillow's `convert('RGB')` alone turns the one nearly white "
        "and the other mostly black. A 32-bit or float photo (a rare TIFF) bbu-vl scales by its values' range "
        "(`convert_to_rgb` in its `data/images.py`); convert such a photo to 8 bits first.",
        "",
        "With vLLM, greedy and in the frame above:",
        "",
        _fence(f"vllm serve FOLDER --limit-mm-per-prompt '{{\"image\": 1}}' --override-generation-config "
               f"'{{\"temperature\": 0}}' \\\n    --mm-processor-kwargs '{{\"min_pixels\": {contract.min_pixels}, "
               f"\"max_pixels\": {contract.max_pixels}}}'", "bash"),
        "",
        # The boxes are the upright photo's (Boxes above); a phone stores a portrait photo sideways with an EXIF tag
        # saying so, which a server decoding the file as stored does not apply: the model saw it sideways, and its
        # answer was read back as the upright photo's (docs/serving.md, "vLLM").
        "Send each photo upright: turned as its EXIF orientation asks and re-encoded without the tag "
        "(`upright_rgb(PHOTO)` above, saved as PNG), never the file's own "
        "bytes or `Image.open(PHOTO)` alone: a phone stores a portrait photo sideways and tags it, a server may decode "
        "it as stored, and the boxes are read in the upright photo's pixels. "
        "`bbuvl.infer.openai_answers.server_photo` gives each photo so, at its frame, with the bounds that keep it "
        "there (`mm_processor_kwargs`, also per request).",
        "",
        "## What the export left out",
        "",
    ]
    if result.left_out:
        card += [f"- `{p.part}`: {p.why}." for p in result.left_out]
    else:
        card.append("Nothing: the checkpoint had no part that a stock loader does not run.")
    card.append("")
    _scores_table(card, result)
    card += ["The bbu-vl checkpoint itself still runs every mode it was trained for (`bbuvl predict -c CHECKPOINT --mode ...`).",
             ""]
    return "\n".join(card)
