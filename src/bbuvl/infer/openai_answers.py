"""Answers a stock server gave (vLLM, SGLang, transformers) back into boxes in each photo's pixels.

An exported folder (`bbuvl model export`) answers in its family's convention: absolute pixels of the photo's
smart_resize frame (Qwen2.5-VL) or 0-1000 of each side (Qwen3-VL, Qwen3.5). `read_answers` reads a JSONL file of
such answers, one photo a line, and writes what `bbuvl predict` writes (`bbuvl eval` reads it): objects in the
stored photo's pixels, EXIF rotation applied, and the raw answer. A line is

    {"image": "photos/0001.jpg", "response": {...an OpenAI chat.completion...}}

with `response` the server's reply as it came (`choices[0].message.content` and `choices[0].finish_reason` are read;
a batch-API line's `{"response": {"body": {...}}}` too), or `{"image": ..., "text": "...", "finish_reason": "length"}`
with the answer alone (`finish_reason` optional). An answer the server ended before its own end (`finish_reason`
"length", its token budget, or another reason a server documents for an answer it ended: `SERVER_ENDED`) is written
`"cut": true`, as predict writes an answer its budget cut, and one that ended itself ("stop", TGI's "eos_token" and
"stop_sequence": `ANSWER_ENDED`) is not; one kept without a finish reason, or with a reason of neither kind, is cut when
its JSON list never closes (infer/parse.py `answer_cut`). Each line
carries the verdict `bbuvl predict -c FOLDER` would give it (`Judging`): a cut answer goes to review. A relative
`image` is relative to the answers file's folder (and written relative to the predictions file's, where eval and viz
read it). The frame is read from the exported folder itself (`folder_frame`): its `config.json` names the family, and
`bbuvl_frame.json` the frame its checkpoint trained in, the one `bbuvl predict -c FOLDER` frames photos in (a folder
without one: its image processor's min/max pixels; docs/serving.md, "vLLM").

Answers are read in the upright photo's pixels: a photo shown to the server as its file stores it, without its EXIF
turn, or in another frame, is answered in other coordinates than these. `server_photo` gives each photo as the server
is to be shown it (upright, at its frame, and the processor bounds that leave it so); the recipes in docs/serving.md
send it.

A stock server returns no per-object score: every object scores 1.0, so COCO AP ranks a photo's objects in the
order they were written.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image

from bbuvl.data.coords import CoordinateContract, export_frame, smart_resize
from bbuvl.data.families import family_of
from bbuvl.data.faults import Faults
from bbuvl.data.images import load_image
from bbuvl.data.jsonfile import jsonl_lines, read_json
from bbuvl.infer.parse import FINISH_LENGTH, FINISH_STOP, UNREADABLE_ANSWER, answer_cut, parse_detections
from bbuvl.infer.verdict import VerdictThresholds, checkpoint_verdict, default_thresholds, judge
from bbuvl.paths import real_path

UNSCORED = 1.0


def folder_frame(folder: str | Path) -> CoordinateContract:
    """The frame a folder's answers are read in, the one `bbuvl predict -c FOLDER` frames photos in: an export's
    `bbuvl_frame.json` (the frame its checkpoint trained in, vision-token budget included, which its image processor
    holds only in part: model/export.py `frame_gap`), else the folder's image processor's bounds (`processor_frame`).
    Read through the processor's bounds alone, a photo the export's card says to frame otherwise (the shapes demo's
    224x168) was read in a frame the server was never shown, its boxes up to a fifth short (ValueError naming the
    file of a frame that is none of the folder's family)."""
    return export_frame(folder) or processor_frame(folder)


def processor_frame(folder: str | Path) -> CoordinateContract:
    """The frame an exported (or any stock Qwen VL) folder's image processor resizes photos to: its family and its
    min/max pixels, read from `config.json` and `preprocessor_config.json` / `processor_config.json` (ValueError
    naming the file and key of a value of the wrong kind)."""
    folder = Path(folder)
    family = family_of(folder).model_type
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        bounds = _pixel_bounds(path, read_json(path, "processor config"))
        if bounds is not None:
            try:
                return CoordinateContract(*bounds, family=family)
            except ValueError as e:  # min above max
                raise ValueError(f"{path}: {e}") from None
    raise ValueError(f"{folder}: no image processor config with min/max pixels (preprocessor_config.json or "
                     "processor_config.json); point at the exported folder")


def _pixel_bounds(path: Path, data: Any) -> tuple[int, int] | None:
    """(min, max) pixels of a processor config's content: `size.shortest_edge` / `size.longest_edge` (transformers 5),
    else `min_pixels` / `max_pixels`, under `image_processor` when the file nests it; None when it names neither."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {_kind(data)}")
    where = "image_processor." if "image_processor" in data else ""
    image = data.get("image_processor", data)
    if not isinstance(image, dict):
        raise ValueError(f"{path}: image_processor must be an object, got {_kind(image)}")
    size = image.get("size")
    if size is not None and not isinstance(size, dict):
        raise ValueError(f"{path}: {where}size must be an object with shortest_edge and longest_edge (pixels), got "
                         f"{_kind(size)}")
    size = size or {}
    found = []
    for edge, flat in (("shortest_edge", "min_pixels"), ("longest_edge", "max_pixels")):
        key, value = (f"{where}size.{edge}", size[edge]) if edge in size else (f"{where}{flat}", image.get(flat))
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{path}: {key} must be a positive whole number of pixels, got {_kind(value)}")
        found.append(value)
    return (found[0], found[1]) if None not in found else None


def _kind(value: Any) -> str:
    """A JSON value as an error names it: its kind, and the value itself when short."""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")
    shown = json.dumps(value, ensure_ascii=False)
    return f"{kind} ({shown})" if value is not None and len(shown) <= 40 else kind


@dataclass(frozen=True)
class ServerPhoto:
    """A photo as a stock server is to be shown it for `read_answers` to read its answer: upright (the turn its EXIF
    orientation asks for made, which a server decoding the file may not make), RGB, resized to its frame with
    Pillow's bicubic as bbu-vl resizes it, and the image processor bounds under which the server's resize leaves it as
    it is (`mm_processor_kwargs` in vLLM)."""

    image: Image.Image
    processor_kwargs: dict[str, int]

    def data_url(self) -> str:
        """`image` as a PNG data URL for an OpenAI-style request: lossless, and without an EXIF block that would have
        the server turn it again."""
        buffer = io.BytesIO()
        self.image.save(buffer, "PNG", exif=Image.Exif())  # never the file's block, which Pillow may carry over
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def server_photo(photo: str | Path, folder: str | Path) -> ServerPhoto:
    """`photo` as a stock server running `folder` is to be shown it (`ServerPhoto`), framed as `read_answers` reads
    the answer (ValueError naming the photo when no frame holds it)."""
    processor = processor_frame(folder)
    frame = export_frame(folder) or processor  # `folder_frame`, the processor's bounds read once for both
    loaded = load_image(photo)
    try:
        size = frame.model_size(loaded.size)  # from the stored photo's size, also when a JPEG decoded smaller
    except ValueError as e:  # a strip past Qwen's aspect limit
        raise ValueError(f"{photo}: {e}: no model frame holds it; crop it first") from None
    image = loaded.image if loaded.image.size == size else loaded.image.resize(size, Image.BICUBIC)
    return ServerPhoto(image, _keeping_bounds(size, processor))


def _keeping_bounds(size: tuple[int, int], processor: CoordinateContract) -> dict[str, int]:
    """Image processor bounds under which a `size` image (a frame's: sides whole cells) is resized to itself: the
    folder's own where they do, else its area as both (a photo the export's card says training framed otherwise)."""
    w, h = size
    if smart_resize(h, w, processor.factor, processor.min_pixels, processor.max_pixels) == (h, w):
        return {"min_pixels": processor.min_pixels, "max_pixels": processor.max_pixels}
    return {"min_pixels": w * h, "max_pixels": w * h}


# A server's `finish_reason`, by what it says of the answer. Ended by the server with more to write: its token budget
# ("length"), and as OpenAI, vLLM and SGLang document the others: OpenAI's content filter, vLLM's and SGLang's "abort",
# vLLM's "error" and "repetition" (a loop it stopped). Ended by the answer itself: "stop", and TGI's "eos_token" and
# "stop_sequence", which its chat route returned for every natural end before 2.2.1: read as cut, every complete answer
# of such a server went to review.
SERVER_ENDED = frozenset({FINISH_LENGTH, "content_filter", "abort", "error", "repetition"})
ANSWER_ENDED = frozenset({FINISH_STOP, "eos_token", "stop_sequence"})


def server_ended(finish_reason: str | None) -> bool | None:
    """Whether a server's `finish_reason` says the server ended the answer (True) or the answer ended itself (False);
    None where it says neither (none kept, or a reason of another host's): then the answer tells (`answer_cut`)."""
    if finish_reason in SERVER_ENDED:
        return True
    return False if finish_reason in ANSWER_ENDED else None


class ServerAnswer(NamedTuple):
    """One line's answer: its text, and why the server stopped writing it (`finish_reason`; None: not kept)."""

    text: str
    finish_reason: str | None = None

    @property
    def cut(self) -> bool:
        """Whether the answer stopped with more to write (infer/parse.py `answer_cut`, predict's rule): its server
        ended it ("length": the budget; a content filter, an abort: `server_ended`) rather than its own end ("stop",
        "eos_token"), or, where the line keeps no finish reason or one of neither kind, its JSON list never closes."""
        return answer_cut(self.text, server_ended(self.finish_reason))


def server_answer(line: dict[str, Any]) -> ServerAnswer:
    """The answer of one line and its finish reason: `text` (and `finish_reason` beside it), or an OpenAI
    chat.completion's first choice (`response`, or `response.body`). The finish reason was dropped: an answer the
    server's budget cut passed where `bbuvl predict` and `bbuvl serve` send it to review."""
    if isinstance(line.get("text"), str):
        return ServerAnswer(line["text"], _finish_reason(line.get("finish_reason"), "finish_reason"))
    response = line.get("response")
    if isinstance(response, dict) and isinstance(response.get("body"), dict):
        response = response["body"]
    try:
        choice = response["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError("neither `text` nor an OpenAI chat.completion `response` with choices[0].message.content") from None
    if isinstance(content, list):  # content parts
        texts = [part.get("text", "") for part in content if isinstance(part, dict)]
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("choices[0].message.content has a part whose text is not text")
        content = "".join(texts)
    if not isinstance(content, str):
        raise ValueError("choices[0].message.content is not text")
    return ServerAnswer(content, _finish_reason(choice.get("finish_reason"), "choices[0].finish_reason"))


def _finish_reason(value: Any, key: str) -> str | None:
    """A line's finish reason at `key`: text, or None when absent or null (ValueError for anything else)."""
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be text (\"stop\", \"length\") or null, got {_kind(value)}")
    return value


@dataclass(frozen=True)
class Judging:
    """What judges a folder's answers, as `bbuvl predict -c FOLDER` judges them in generate mode: the faults its
    hierarchy marks and its thresholds for photos predicted in one pass (infer/verdict.py `checkpoint_verdict`)."""

    faults: Faults
    thresholds: VerdictThresholds

    @classmethod
    def of(cls, folder: str | Path, hierarchy: str | Path | None = None) -> "Judging":
        """The judging of `folder`'s generate-mode answers: its chosen thresholds, else its run config's, else the
        config's defaults; faults from `hierarchy`, else its run config's, else the shipped hierarchy."""
        framed, own, _ = checkpoint_verdict(folder, "generate", hierarchy)
        return cls(Faults.load(hierarchy or own), framed.whole)


def prediction_line(image: str, photo: Path, answer: str | ServerAnswer, frame: CoordinateContract,
                    judging: Judging | None = None) -> dict[str, Any]:
    """One predictions.jsonl line, as `bbuvl predict` writes it, for a photo and its answer in `frame`'s convention:
    `"cut": true` when the answer stopped with more to write, and its verdict by `judging` (None: the config's
    defaults and the shipped hierarchy, as a plain folder's)."""
    answer = answer if isinstance(answer, ServerAnswer) else ServerAnswer(answer)
    size = load_image(photo).size  # the stored photo's, also when a JPEG past Pillow's limit decodes smaller
    parsed = parse_detections(answer.text)
    objects = [{"bbox_2d": [round(v, 1) for v in frame.to_stored(o["bbox_2d"], size)], "label": o["label"],
                "score": UNSCORED} for o in parsed.objects]
    judging = judging or Judging(Faults.load(), default_thresholds())
    # judged by predict's call (`Predictor.verdict`): no usable answer, or one cut short, goes to review
    verdict = judge([(o["bbox_2d"], o["label"], o["score"]) for o in objects], judging.faults, judging.thresholds,
                    failed=not parsed.ok, cut=answer.cut)
    return {"image": image, "width": size[0], "height": size[1], "objects": objects, "raw": answer.text,
            "error": None if parsed.ok else UNREADABLE_ANSWER, **({"cut": True} if answer.cut else {}),
            "verdict": verdict.to_dict()}


def read_answers(answers: str | Path, folder: str | Path, root: str | Path | None = None,
                 hierarchy: str | Path | None = None) -> list[dict[str, Any]]:
    """Every line of an answers JSONL file as a predictions.jsonl line in the photos' pixels (ValueError naming the
    file and line of a line that cannot be read, or a photo that cannot be opened); a relative photo name is made
    relative to `root` (by default the answers file's folder, where it is read from). Each line's verdict is judged as
    `bbuvl predict -c FOLDER` judges it (`Judging.of`), its faults those of `hierarchy` when given."""
    answers = Path(answers)
    base = real_path(answers).parent
    root = base if root is None else real_path(Path(root))
    frame = folder_frame(folder)
    judging = Judging.of(folder, hierarchy)
    lines = []
    try:
        text = answers.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{answers}: not UTF-8 text ({e.reason} at byte {e.start}); is this a JSONL file?") from None
    except OSError as e:
        raise OSError(e.errno, f"{answers}: cannot read the answers file ({e.strerror or e})") from None
    for no, raw in enumerate(jsonl_lines(text), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            if not isinstance(line, dict) or not isinstance(line.get("image"), str):
                raise ValueError("expected an object with an `image` path")
            photo = Path(line["image"])
            name = line["image"] if photo.is_absolute() else Path(os.path.relpath(base / photo, root)).as_posix()
            photo = photo if photo.is_absolute() else base / photo
            lines.append(prediction_line(name, photo, server_answer(line), frame, judging))
        except (ValueError, OSError) as e:
            raise ValueError(f"{answers}:{no}: {e}") from None
    return lines


def write_answers(answers: str | Path, folder: str | Path, out: str | Path, overwrite: bool = False,
                  hierarchy: str | Path | None = None) -> int:
    """`read_answers` written to `out` as predictions.jsonl (atomically; an existing `out` only with `overwrite`), its
    photos named from `out`'s folder, as eval and viz read a predictions file without a manifest: named from the
    answers file's, eval found none of them, or another dataset's photo of the same name; returns the number of
    lines. `hierarchy`: the faults each line's verdict judges (else the folder's run config's, else the shipped)."""
    from bbuvl.atomic import write_text_atomic

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: exists; choose another file or pass overwrite=True")
    lines = read_answers(answers, folder, root=out.absolute().parent, hierarchy=hierarchy)
    write_text_atomic(out, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return len(lines)
