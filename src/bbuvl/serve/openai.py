"""The OpenAI chat-completions shape for generate mode: one photo in as a `data:` URI, the answer out as JSON text.

Only what a detector needs of that API is accepted: one image per request in a user message, no streaming, one
choice, no tools; sampling parameters are checked, then have no effect (decoding is greedy). An image
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

from bbuvl.data.jsonfile import is_json_number
from bbuvl.infer.parse import FINISH_LENGTH, FINISH_STOP
from bbuvl.serve.errors import ApiError, cut
from bbuvl.serve.images import decode_base64


ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Accepted and checked, then of no effect: decoding is greedy with the checkpoint's answer budget (docs/serving.md).
IGNORED = {"model", "user", "seed", "stop", "presence_penalty", "frequency_penalty", "temperature", "top_p", "max_tokens",
           "max_completion_tokens", "store", "metadata"}
# What would change the answer's shape, which this server cannot give: refused rather than dropped.
UNSUPPORTED = {"tools", "tool_choice", "functions", "function_call", "response_format", "logprobs", "top_logprobs",
               "stream_options", "audio", "modalities", "parallel_tool_calls", "logit_bias", "prediction"}
RANGES = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0), "presence_penalty": (-2.0, 2.0), "frequency_penalty": (-2.0, 2.0)}


def image_from_chat(body: Any) -> bytes:
    """The bytes of the one image in a chat-completions request; ApiError 400 naming what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise ApiError(400, "missing_messages", "the body must be a JSON object with a non-empty 'messages' list")
    _check_parameters(body)
    urls = []
    for i, m in enumerate(body["messages"]):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ApiError(400, "bad_message", f"messages[{i}] must be an object with a 'role' of {', '.join(ROLES)}")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise ApiError(400, "bad_message", f"messages[{i}].content must be a string or a list of parts")
        for j, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "image_url"):
                # a part whose type is a list or a number was "got dict" before: the part's own type, not its 'type'
                got = (type(part).__name__ if not isinstance(part, dict) else cut(json.dumps(kind)) if "type" in part
                       else "a part with no 'type'")
                raise ApiError(400, "bad_message", f"messages[{i}].content[{j}] must be a part of type 'text' or "
                               f"'image_url', got {got}")
            if kind == "image_url":
                if m["role"] != "user":  # a photo said to come from the assistant or the system is no photo to inspect
                    raise ApiError(400, "bad_message", f"messages[{i}] has the role '{m['role']}'; the image goes in "
                                   "a message of the role 'user'")
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                if not isinstance(url, str):  # "the server never fetches a URL" named none of what was wrong
                    raise ApiError(400, "bad_message", f"messages[{i}].content[{j}].image_url must be a data: URI, or "
                                   "an object whose 'url' is one (data:image/jpeg;base64,...), got "
                                   + ("no 'url'" if isinstance(ref, dict) and "url" not in ref else type(url).__name__))
                urls.append((f"messages[{i}].content[{j}].image_url", url))
            elif not isinstance(part.get("text"), str):  # a text part of no text was taken as nothing said
                raise ApiError(400, "bad_message", f"messages[{i}].content[{j}] is a 'text' part whose 'text' must be a "
                               f"string, got {'none' if 'text' not in part else type(part['text']).__name__}")
    if len(urls) != 1:
        raise ApiError(400, "missing_image" if not urls else "too_many_images",
                       f"send exactly one image_url part with a data: URI; found {len(urls)}")
    where, url = urls[0]
    # A URI's scheme is case-insensitive (RFC 3986): 'DATA:image/jpeg;base64,...', which /v1/detect takes, was
    # refused here as a URL the server would have to fetch.
    if not isinstance(url, str) or not url.lstrip()[:5].lower() == "data:":
        raise ApiError(400, "url_not_allowed", f"{where}: only data: URIs are accepted (data:image/jpeg;base64,...); "
                       "the server never fetches a URL")
    return decode_base64(url, where)


def _check_parameters(body: dict[str, Any]) -> None:
    """ApiError 400 for a parameter this server cannot honour, of the wrong type or out of OpenAI's range."""
    unknown = [k for k in body if k not in IGNORED | UNSUPPORTED | {"messages", "stream", "n"}]
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown parameter(s) {', '.join(cut(repr(k)) for k in unknown[:5])}; "
                       "docs/serving.md lists what /v1/chat/completions takes")
    given = [k for k in UNSUPPORTED if body.get(k)]  # false, null, 0 or empty: asks for nothing
    if given:
        raise ApiError(400, "unsupported", f"{', '.join(map(repr, sorted(given)))} is not supported: the answer is the "
                       "detector's JSON list of boxes, in one message")
    if body.get("stream") not in (None, False):
        raise ApiError(400, "unsupported", "'stream' must be false or absent: the answer comes in one response")
    if body.get("n") not in (None, 1) or isinstance(body.get("n"), bool):
        raise ApiError(400, "unsupported", f"'n' must be 1 (one answer per photo), got {cut(json.dumps(body['n']))}")
    for name, (low, high) in RANGES.items():
        v = body.get(name)
        if v is not None and (not is_json_number(v) or not low <= v <= high):
            raise ApiError(400, "invalid_parameter", f"'{name}' must be a number in [{low:g}, {high:g}], got {cut(json.dumps(v))}")
    for name in ("model", "user"):
        v = body.get(name)
        if v is not None and not isinstance(v, str):
            raise ApiError(400, "invalid_parameter", f"'{name}' must be a string, got {cut(json.dumps(v))}")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop)):
        raise ApiError(400, "invalid_parameter", f"'stop' must be a string or a list of at most 4 strings, got "
                       f"{cut(json.dumps(stop))}")
    # OpenAI's own: whether it keeps the answer, and tags for its dashboard; `store: false` from a client that keeps
    # nothing was an unknown_field 400
    if body.get("store") is not None and not isinstance(body["store"], bool):
        raise ApiError(400, "invalid_parameter", f"'store' must be true or false, got {cut(json.dumps(body['store']))}")
    metadata = body.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict) and len(metadata) <= 16 and all(
            isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in metadata.items())):
        raise ApiError(400, "invalid_parameter", "'metadata' must be an object of at most 16 string values (keys of at "
                       f"most 64 characters, values of at most 512), got {cut(json.dumps(metadata))}")
    for name in ("max_tokens", "max_completion_tokens", "seed"):
        v = body.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or (v < 1 and name != "seed")):
            raise ApiError(400, "invalid_parameter", f"'{name}' must be a{' positive' if name != 'seed' else 'n'} "
                           f"integer, got {cut(json.dumps(v))}")


def chat_response(objects: list[dict[str, Any]], raw: str | None, model: str, extra: dict[str, Any],
                  usage: dict[str, int], cut: bool = False) -> dict[str, Any]:
    """A `chat.completion` of the objects as JSON text; `cut`: the token budget ended it (`finish_reason` "length")."""
    content = json.dumps([{"bbox_2d": o["bbox_2d"], "label": o["label"]} for o in objects], ensure_ascii=False)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": FINISH_LENGTH if cut else FINISH_STOP}],
        "usage": usage,
        "bbuvl": {"raw": raw, "objects": objects, **extra},
    }
