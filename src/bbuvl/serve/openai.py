"""The OpenAI chat-completions shape for generate mode: one photo in as a `data:` URI, the answer out as JSON text.

Only what a detector needs of that API is accepted: one image per request, no streaming, no tools. An image
given as an http(s) URL is refused: the server never fetches anything. The prompt is always the checkpoint's
own (the one the model was trained on); user text is ignored. The reply's content is the answer as a JSON
list of `{bbox_2d, label}` with boxes in the uploaded image's pixels, the model's own text (in its frame)
beside it under `bbuvl.raw`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from bbuvl.serve.errors import ApiError
from bbuvl.serve.images import decode_base64


def image_from_chat(body: Any) -> bytes:
    """The bytes of the one image in a chat-completions request; ApiError 400 naming what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise ApiError(400, "missing_messages", "the body must be a JSON object with a non-empty 'messages' list")
    if body.get("stream"):
        raise ApiError(400, "unsupported", "'stream': true is not supported; the answer comes in one response")
    urls = []
    for i, m in enumerate(body["messages"]):
        content = m.get("content") if isinstance(m, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == "image_url":
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                urls.append((f"messages[{i}].content[{j}].image_url", url))
    if len(urls) != 1:
        raise ApiError(400, "missing_image" if not urls else "too_many_images",
                       f"send exactly one image_url part with a data: URI; found {len(urls)}")
    where, url = urls[0]
    if not isinstance(url, str) or not url.startswith("data:"):
        raise ApiError(400, "url_not_allowed", f"{where}: only data: URIs are accepted (data:image/jpeg;base64,...); "
                       "the server never fetches a URL")
    return decode_base64(url, where)


def chat_response(objects: list[dict[str, Any]], raw: str | None, model: str, extra: dict[str, Any],
                  cut: bool = False) -> dict[str, Any]:
    """A `chat.completion` object whose message content is the objects as JSON text; `cut`: the answer reached the
    token budget with more to write (OpenAI's `finish_reason` "length")."""
    content = json.dumps([{"bbox_2d": o["bbox_2d"], "label": o["label"]} for o in objects], ensure_ascii=False)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "length" if cut else "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "bbuvl": {"raw": raw, "objects": objects, **extra},
    }
