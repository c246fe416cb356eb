"""Conversations as token ids: system prompt, teacher turns, the student turn, and their loss spans.

A sample is tokenised turn by turn (not through the chat template) so that every token's role is
known exactly: only assistant answers and their `<|im_end|>` are supervised, each labelled with the span
it belongs to (teacher or student). The result is identical to the chat template's rendering (tested).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch
from PIL import Image

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import IMAGE_TOKEN, TURN_END, TURN_START, VISION_END_TOKEN, VISION_START_TOKEN  # IMAGE_TOKEN: one per merged vision patch
from bbuvl.data.schema import ImageRecord, sort_objects
from bbuvl.encode.prompts import USER_TEXT

IGNORE_INDEX = -100
SPAN_NONE, SPAN_TEACHER, SPAN_STUDENT = 0, 1, 2
NO_COORDINATE = -1  # `coord_marks` of a token that is no box coordinate
# A box as format_answer writes it; its four groups are x1, y1, x2, y2.
BOX_PATTERN = re.compile(r'"bbox_2d":\s*\[(\d+),\s*(\d+),\s*(\d+),\s*(\d+)\]')


def answer_objects(record: ImageRecord, contract: CoordinateContract) -> list[dict[str, Any]]:
    """The objects of a photo's answer, in the order they are written: model-frame boxes, (y1, x1) order."""
    size = record.size
    objs = [{"bbox_2d": contract.to_model(o.bbox_2d, size), "label": o.desc} for o in sort_objects(record.objects)]
    objs.sort(key=lambda o: (o["bbox_2d"][1], o["bbox_2d"][0]))  # rounding in the model frame can swap near-ties
    return objs


def format_answer(record: ImageRecord, contract: CoordinateContract) -> str:
    """The assistant's answer for a photo: a JSON list of model-frame boxes and labels in (y1, x1) order."""
    return json.dumps(answer_objects(record, contract), ensure_ascii=False)


def objects_within(objects: list[dict[str, Any]], chars: int) -> int:
    """How many of an answer's objects are written out whole in its first `chars` characters."""
    end = 1  # after "["; json.dumps joins the items with ", "
    for k, o in enumerate(objects):
        end += len(json.dumps(o, ensure_ascii=False)) + (2 if k else 0)
        if end > chars:
            return k
    return len(objects)


def answer_boxes(answer: str) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Every box an answer writes: its four numbers and each number's (start, end) characters in the answer."""
    return [([int(m.group(k)) for k in range(1, 5)], [m.span(k) for k in range(1, 5)])
            for m in BOX_PATTERN.finditer(answer)]


def coordinate_marks(answer: str, offsets: Sequence[tuple[int, int]],
                     extent: tuple[float, float]) -> tuple[list[int], torch.Tensor]:
    """Which box coordinate each answer token writes, and the boxes normalised to the answer's extent.

    offsets: each token's (start, end) characters in `answer`; extent: the (x, y) an answer writes at the photo's
    right and bottom edge (`CoordinateContract.answer_extent`). Returns one mark per token, `4 * box + coordinate`
    (x1, y1, x2, y2 = 0..3) for a token holding a digit of that number and NO_COORDINATE otherwise, and the boxes
    `[N, 4]` in [0, 1], in the answer's order.
    """
    boxes = answer_boxes(answer)
    marks = [NO_COORDINATE] * len(offsets)
    # Tokens and numbers both come in order, so one walk over the two (linear: an answer may hold thousands of boxes).
    # A token holds a number when their character ranges overlap.
    spans = [(start, end, 4 * b + k) for b, (_, chars) in enumerate(boxes) for k, (start, end) in enumerate(chars)]
    n = 0
    for i, (start, end) in enumerate(offsets):
        while n < len(spans) and spans[n][1] <= start:  # numbers that end before this token
            n += 1
        if n < len(spans) and spans[n][0] < end:
            marks[i] = spans[n][2]
    scale = torch.tensor([extent[0], extent[1], extent[0], extent[1]], dtype=torch.float32)
    values = torch.tensor([v for v, _ in boxes], dtype=torch.float32).reshape(-1, 4)
    return marks, values / scale


@dataclass
class Turn:
    """One user image and, when supervised, the assistant's answer.

    `extent`: the (x, y) the answer writes at the photo's right and bottom edge; given for a student turn in training,
    the encoder marks its coordinate tokens (`EncodedSample.coord_marks`) for the coordinate losses.
    """

    image: Image.Image  # already at its model-frame size
    answer: str | None
    span: int  # SPAN_TEACHER or SPAN_STUDENT
    extent: tuple[float, float] | None = None


@dataclass
class EncodedSample:
    """One tokenised conversation and, for training, its student photo's detection targets: what a collator takes.

    input_ids / labels / span_ids / mm_token_type_ids: `[L]` (labels IGNORE_INDEX where unsupervised, span_ids
    SPAN_*, mm_token_type_ids 1 at image pads); pixel_values: `[P, C*T*p*p]`; image_grid_thw: `[num_images, 3]`
    (the student image is the last one); det_boxes: `[N, 4]` the student photo's boxes, xyxy normalised to its
    sides; det_caption_ids: N label token ids, `[T_i]` each; meta: what a dump of the sample names (image paths);
    coord_marks: `[L]`, `4 * box + coordinate` at each token of the student answer's box numbers (NO_COORDINATE
    elsewhere), None when no turn gave its extent; coord_boxes: `[N, 4]` those boxes, in the answer's order,
    normalised to the answer's extent (model/coordinate_loss.py reads both).
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    span_ids: torch.Tensor
    mm_token_type_ids: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    det_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    det_caption_ids: list[torch.Tensor] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    coord_marks: torch.Tensor | None = None
    coord_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))

    def with_targets(self, det_boxes: torch.Tensor, det_caption_ids: list[torch.Tensor],
                     meta: dict[str, Any]) -> "EncodedSample":
        """This conversation with its photo's detection targets and what names it (training)."""
        return replace(self, det_boxes=det_boxes, det_caption_ids=det_caption_ids, meta=meta)

    def continued(self, ids: list[int], supervised: bool = False) -> "EncodedSample":
        """This prompt followed by `ids`: unsupervised, an answer begun for the model to finish (inference);
        `supervised`, the student's answer as the model wrote it, token for token (GRPO's rollouts, rl/)."""
        extra = torch.tensor(ids, dtype=torch.long)
        return replace(self, input_ids=torch.cat([self.input_ids, extra]),
                       labels=torch.cat([self.labels, extra if supervised else torch.full_like(extra, IGNORE_INDEX)]),
                       span_ids=torch.cat([self.span_ids, torch.full_like(extra, SPAN_STUDENT if supervised else SPAN_NONE)]),
                       mm_token_type_ids=torch.cat([self.mm_token_type_ids, torch.zeros_like(extra)]),
                       coord_marks=None if self.coord_marks is None else
                       torch.cat([self.coord_marks, torch.full_like(extra, NO_COORDINATE)]))

    @property
    def num_vision_tokens(self) -> int:
        """`<|image_pad|>` tokens in this sample."""
        return int(self.mm_token_type_ids.sum())


class ChatEncoder:
    """Turns (system prompt, turns) into token ids with per-token loss spans, using a Qwen VL processor.

    `assistant_prefix` is what the family's chat template writes before the final answer (Qwen3.5's empty
    thinking block, data/families.py); it is part of the prompt, never supervised. Earlier (teacher) answers get
    none, as the templates render past turns.
    """

    def __init__(self, processor: Any, system_prompt: str, lang: str = "zh", assistant_prefix: str = ""):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.system_prompt = system_prompt
        self.user_text = USER_TEXT[lang]
        self.assistant_prefix = assistant_prefix
        ip = processor.image_processor
        self.merge = int(getattr(ip, "merge_size", 2))
        tok = self.tokenizer
        self.image_pad_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
        self.im_end_id = tok.convert_tokens_to_ids(TURN_END)
        for name, tid in ((IMAGE_TOKEN, self.image_pad_id), (TURN_END, self.im_end_id)):
            if tid is None or tid == tok.unk_token_id:
                raise ValueError(f"tokenizer has no special token {name}: not a Qwen VL tokenizer")
        # encode's fixed pieces, tokenised once (every sample has them; the system prompt alone is ~170 tokens),
        # and their counts, so that a sample's length is known without its image.
        self._system = self._ids(f"{TURN_START}system\n{self.system_prompt}{TURN_END}\n")
        self._user_head = self._ids(f"{TURN_START}user\n{VISION_START_TOKEN}")
        self._user_tail = self._ids(f"{VISION_END_TOKEN}{self.user_text}{TURN_END}\n{TURN_START}assistant\n")
        self._system_len = len(self._system)
        self._turn_len = len(self._user_head) + len(self._user_tail)
        self._prefix_ids = self._ids(assistant_prefix) if assistant_prefix else []
        self._answer_end_len = 1 + len(self._ids("\n"))  # <|im_end|> and the newline after it

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    @property
    def system_length(self) -> int:
        """Tokens of the system turn that starts every conversation."""
        return self._system_len

    @property
    def prefix_length(self) -> int:
        """Tokens of the assistant prefix before the final answer (0 for most families)."""
        return len(self._prefix_ids)

    def turn_length(self, vision_tokens: int, answer_tokens: int) -> int:
        """Tokens `encode` spends on one answered teacher turn: its user prompt, image pads and answer."""
        return self._turn_len + vision_tokens + answer_tokens + self._answer_end_len

    def prompt_length(self, vision_tokens: int) -> int:
        """Tokens before the answer of a conversation with one photo: everything that cannot be cut."""
        return self._system_len + self._turn_len + vision_tokens + len(self._prefix_ids)

    def answer_ids(self, answers: Sequence[str]) -> list[list[int]]:
        """Token ids of several answers at once (the tokenizer batches them)."""
        if not answers:
            return []
        return self.tokenizer(list(answers), add_special_tokens=False)["input_ids"]

    def pixels(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(pixel_values, image_grid_thw)` for images already at model-frame size (no further resize)."""
        out_pv, out_grid = [], []
        for img in images:
            area = img.width * img.height
            # min = max = this image's area makes smart_resize the identity: the model frame is decided by us, once.
            enc = self.processor.image_processor(
                images=[img], size={"shortest_edge": area, "longest_edge": area}, return_tensors="pt"
            )
            out_pv.append(enc["pixel_values"])
            out_grid.append(enc["image_grid_thw"])
        return torch.cat(out_pv), torch.cat(out_grid)

    def encode(self, turns: Sequence[Turn], add_generation_prompt: bool = False,
               max_length: int | None = None) -> EncodedSample:
        """Tokenise a conversation; when `add_generation_prompt`, the last turn has no answer and the ids end at
        `<|im_start|>assistant\\n` (inference).

        With `max_length`, a longer conversation is cut inside its last answer (a prefix of a right answer is
        still right, docs/design.md); when even that answer's first token lies beyond, ValueError.
        """
        pixel_values, grid = self.pixels([t.image for t in turns])
        ids: list[int] = []
        spans: list[int] = []
        supervised: list[bool] = []
        marks: list[int] = []
        coord_boxes = torch.zeros(0, 4)
        marked = False

        def add(token_ids: list[int], span: int = SPAN_NONE, token_marks: list[int] | None = None) -> None:
            ids.extend(token_ids)
            spans.extend([span] * len(token_ids))
            supervised.extend([span != SPAN_NONE] * len(token_ids))
            marks.extend(token_marks if token_marks is not None else [NO_COORDINATE] * len(token_ids))

        add(self._system)
        answer_start = 0
        for i, turn in enumerate(turns):
            n_pad = int(grid[i].prod()) // (self.merge**2)
            add(self._user_head)
            add([self.image_pad_id] * n_pad)
            add(self._user_tail)
            if i == len(turns) - 1:
                add(self._prefix_ids)
            if turn.answer is None:
                if not (add_generation_prompt and i == len(turns) - 1):
                    raise ValueError("only the last turn may lack an answer, and only for generation")
                break
            answer_start = len(ids)
            if turn.extent is None or turn.span != SPAN_STUDENT:  # teacher boxes are of other photos
                add(self._ids(turn.answer) + [self.im_end_id], turn.span)
            else:
                # The same ids as `_ids`, with each token's characters, to find the box numbers' tokens.
                enc = self.tokenizer(turn.answer, add_special_tokens=False, return_offsets_mapping=True)
                token_marks, coord_boxes = coordinate_marks(turn.answer, enc["offset_mapping"], turn.extent)
                marked = True
                add(list(enc["input_ids"]) + [self.im_end_id], turn.span, token_marks + [NO_COORDINATE])
            add(self._ids("\n"))
        if max_length is not None and len(ids) > max_length:
            if answer_start >= max_length or add_generation_prompt:
                raise ValueError(f"the conversation needs {answer_start or len(ids)} tokens before its last answer, "
                                 f"more than max_length {max_length}")
            del ids[max_length:], spans[max_length:], supervised[max_length:], marks[max_length:]
        input_ids = torch.tensor(ids, dtype=torch.long)
        labels = torch.where(torch.tensor(supervised), input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        return EncodedSample(
            input_ids=input_ids,
            labels=labels,
            span_ids=torch.tensor(spans, dtype=torch.long),
            mm_token_type_ids=(input_ids == self.image_pad_id).long(),
            pixel_values=pixel_values,
            image_grid_thw=grid,
            coord_marks=torch.tensor(marks, dtype=torch.long) if marked else None,
            coord_boxes=coord_boxes,
        )


def image_for_model(path: str, record_size: tuple[int, int], contract: CoordinateContract,
                    region: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Load a stored photo and resize it to its model frame (a no-op when the dataset was pre-scaled); with `region`,
    that window of it, magnified to the whole photo's frame (a random crop in training)."""
    from bbuvl.data.images import ImageError, load_image

    loaded = load_image(path)
    size = loaded.size  # a JPEG past Pillow's limit decodes smaller: the frame and `region` are the stored photo's
    if size != tuple(record_size):  # the file was replaced since its record was written
        raise ImageError(f"{path}: image is {size[0]}x{size[1]} but its record says {record_size[0]}x{record_size[1]}")
    return loaded.region(region or (0, 0, *size), contract.model_size(size))
