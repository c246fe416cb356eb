"""Answers a stock server gave (vLLM, SGLang, transformers) back into boxes in each photo's pixels.

An exported folder (`bbuvl model export`) answers in its family's convention: absolute pixels of the photo's
smart_resize frame (Qwen2.5-VL) or 0-1000 of each side (Qwen3-VL, Qwen3.5). `read_answers` reads a JSONL file of
such answers, one photo a line, and writes what `bbuvl predict` writes (`bbuvl eval` reads it): objects in the
stored photo's pixels, EXIF rotation applied, and the raw answer. A line is

    {"image": "photos/0001.jpg", "response": {...an OpenAI chat.completion...}}

with `response` the server's reply as it came (`choices[0].message.content` is read; a batch-API line's
`{"response": {"body": {...}}}` too), or `{"image": ..., "text": "..."}` with the answer alone. A relative
`image` is relative to the answers file's folder. The frame is read from the exported folder itself: its
`config.json` names the family and its image processor the min/max pixels (docs/serving.md, "vLLM").

A stock server returns no per-object score: every object scores 1.0, so COCO AP ranks a photo's objects in the
order they were written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import family_of
from bbuvl.data.images import load_image
from bbuvl.data.jsonfile import read_json
from bbuvl.infer.parse import parse_detections

UNSCORED = 1.0


def folder_frame(folder: str | Path) -> CoordinateContract:
    """The frame an exported (or any stock Qwen VL) folder resizes photos to: its family and its image processor's
    min/max pixels, read from `config.json` and `preprocessor_config.json` / `processor_config.json`."""
    folder = Path(folder)
    family = family_of(folder).model_type
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        data = read_json(path, "processor config")
        image = data.get("image_processor", data) if isinstance(data, dict) else {}
        size = image.get("size") or {}
        low, high = size.get("shortest_edge", image.get("min_pixels")), size.get("longest_edge", image.get("max_pixels"))
        if isinstance(low, int) and isinstance(high, int):
            return CoordinateContract(low, high, family=family)
    raise ValueError(f"{folder}: no image processor config with min/max pixels (preprocessor_config.json or "
                     "processor_config.json); point at the exported folder")


def answer_text(line: dict[str, Any]) -> str:
    """The answer of one line: `text`, or an OpenAI chat.completion's first choice (`response`, or `response.body`)."""
    if isinstance(line.get("text"), str):
        return line["text"]
    response = line.get("response")
    if isinstance(response, dict) and isinstance(response.get("body"), dict):
        response = response["body"]
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError("neither `text` nor an OpenAI chat.completion `response` with choices[0].message.content") from None
    if isinstance(content, list):  # content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        raise ValueError("choices[0].message.content is not text")
    return content


def prediction_line(image: str, photo: Path, text: str, frame: CoordinateContract) -> dict[str, Any]:
    """One predictions.jsonl line, as `bbuvl predict` writes it, for a photo and its answer in `frame`'s convention."""
    size = load_image(photo).image.size
    parsed = parse_detections(text)
    objects = [{"bbox_2d": [round(v, 1) for v in frame.to_stored(o["bbox_2d"], size)], "label": o["label"],
                "score": UNSCORED} for o in parsed.objects]
    return {"image": image, "width": size[0], "height": size[1], "objects": objects, "raw": text,
            "error": None if parsed.ok else "unparseable output"}


def read_answers(answers: str | Path, folder: str | Path) -> list[dict[str, Any]]:
    """Every line of an answers JSONL file as a predictions.jsonl line in the photos' pixels (ValueError naming the
    file and line of a line that cannot be read, or a photo that cannot be opened)."""
    answers = Path(answers)
    frame = folder_frame(folder)
    lines = []
    for no, raw in enumerate(answers.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            if not isinstance(line, dict) or not isinstance(line.get("image"), str):
                raise ValueError("expected an object with an `image` path")
            photo = Path(line["image"])
            photo = photo if photo.is_absolute() else answers.resolve().parent / photo
            lines.append(prediction_line(line["image"], photo, answer_text(line), frame))
        except (ValueError, OSError) as e:
            raise ValueError(f"{answers}:{no}: {e}") from None
    return lines


def write_answers(answers: str | Path, folder: str | Path, out: str | Path, overwrite: bool = False) -> int:
    """`read_answers` written to `out` as predictions.jsonl (atomically; an existing `out` only with `overwrite`);
    returns the number of lines."""
    from bbuvl.atomic import write_text_atomic

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: exists; choose another file or pass overwrite=True")
    lines = read_answers(answers, folder)
    write_text_atomic(out, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return len(lines)
