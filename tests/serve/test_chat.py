"""/v1/chat/completions against bodies no OpenAI client should send, and parameters this server cannot honour:
each a 400 naming what is wrong, where the server answered 200 with something else before."""

from __future__ import annotations

import base64
import json

import pytest

JSON = {"Content-Type": "application/json"}
URI = "data:image/png;base64," + base64.b64encode(b"not looked at: every case is refused before the image").decode()


def user(*parts: dict) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": "find every part"}, *parts]}


IMAGE = {"type": "image_url", "image_url": {"url": URI}}
BAD = {
    # 200 with one choice before: the client asked for two
    "n_of_2": ({"n": 2, "messages": [user(IMAGE)]}, "unsupported", "'n' must be 1"),
    "stream_as_a_string": ({"stream": "false", "messages": [user(IMAGE)]}, "unsupported", "'stream'"),
    "tools": ({"tools": [{"type": "function", "function": {"name": "f"}}], "messages": [user(IMAGE)]}, "unsupported", "'tools'"),
    "json_schema_answer": ({"response_format": {"type": "json_schema"}, "messages": [user(IMAGE)]}, "unsupported",
                           "'response_format'"),
    "unknown_parameter": ({"temprature": 0.2, "messages": [user(IMAGE)]}, "unknown_field", "'temprature'"),
    # 200 before: range and type unchecked
    "temperature_below_0": ({"temperature": -5, "messages": [user(IMAGE)]}, "invalid_parameter", "'temperature'"),
    "temperature_as_a_string": ({"temperature": "0.2", "messages": [user(IMAGE)]}, "invalid_parameter", "'temperature'"),
    "top_p_over_1": ({"top_p": 3, "messages": [user(IMAGE)]}, "invalid_parameter", "'top_p'"),
    "max_tokens_0": ({"max_tokens": 0, "messages": [user(IMAGE)]}, "invalid_parameter", "'max_tokens'"),
    "max_tokens_a_float": ({"max_tokens": 1.5, "messages": [user(IMAGE)]}, "invalid_parameter", "'max_tokens'"),
    # 200 before: documented as checked for type, taken as anything
    "model_a_number": ({"model": 5, "messages": [user(IMAGE)]}, "invalid_parameter", "'model' must be a string"),
    "user_an_object": ({"user": {"id": 7}, "messages": [user(IMAGE)]}, "invalid_parameter", "'user' must be a string"),
    "stop_of_numbers": ({"stop": [1, 2], "messages": [user(IMAGE)]}, "invalid_parameter", "'stop'"),
    "stop_of_five_strings": ({"stop": ["a", "b", "c", "d", "e"], "messages": [user(IMAGE)]}, "invalid_parameter", "'stop'"),
    "store_as_a_string": ({"store": "no", "messages": [user(IMAGE)]}, "invalid_parameter", "'store' must be true or false"),
    "metadata_of_a_number": ({"metadata": {"site": 3}, "messages": [user(IMAGE)]}, "invalid_parameter", "'metadata'"),
    # 200 before: any role, or none, was taken
    "unknown_role": ({"messages": [{"role": "hacker", "content": [IMAGE]}]}, "bad_message", "messages[0]"),
    "no_role": ({"messages": [{"content": [IMAGE]}]}, "bad_message", "messages[0]"),
    "image_in_a_system_message": ({"messages": [{"role": "system", "content": [IMAGE]}]}, "bad_message",
                                  "a message of the role 'user'"),
    "image_in_an_assistant_message": ({"messages": [user(), {"role": "assistant", "content": [IMAGE]}]}, "bad_message",
                                      "messages[1] has the role 'assistant'; the image goes in a message of the role 'user'"),
    # 400 "found 0 images" before, naming nothing
    "message_not_an_object": ({"messages": [5]}, "bad_message", "messages[0]"),
    "content_an_object": ({"messages": [{"role": "user", "content": IMAGE}]}, "bad_message", "messages[0].content"),
    "image_part_of_another_api": ({"messages": [user({"type": "input_image", "image_url": URI})]}, "bad_message",
                                  'got "input_image"'),
    "part_not_an_object": ({"messages": [{"role": "user", "content": ["hello"]}]}, "bad_message", "content[0]"),
    # "got dict" before, of a part that is an object: its 'type' is what is wrong
    "part_whose_type_is_a_list": ({"messages": [user({"type": ["image_url"], "image_url": {"url": URI}})]},
                                  'bad_message', 'got ["image_url"]'),
    "part_without_a_type": ({"messages": [user({"image_url": {"url": URI}})]}, "bad_message", "got a part with no 'type'"),
    # "url_not_allowed: the server never fetches a URL" before, of a part that named no URL at all
    "image_url_without_a_url": ({"messages": [user({"type": "image_url", "image_url": {}})]}, "bad_message",
                                "image_url must be a data: URI, or an object whose 'url' is one (data:image/jpeg;base64"
                                ",...), got no 'url'"),
    # 200 before: a text part of no text, or of a number, taken as nothing said
    "text_part_without_text": ({"messages": [user(IMAGE, {"type": "text"})]}, "bad_message",
                               "content[2] is a 'text' part whose 'text' must be a string, got none"),
    "text_part_of_a_number": ({"messages": [user(IMAGE, {"type": "text", "text": 5})]}, "bad_message", "got int"),
    # 400 bad_message after building and walking every message on the event loop before
    "twenty_thousand_messages": ({"messages": [user(IMAGE)] + [{}] * 20_000}, "json_too_many_values", "more than 10000"),
}


@pytest.fixture(scope="module")
def chat_server(engine, keys):
    from bbuvl.serve.app import ServeSettings, create_app
    from tests.serve.conftest import running

    with running(create_app(engine, keys, ServeSettings())) as client:
        yield client


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_chat_request_the_server_cannot_honour_is_a_400_naming_it(chat_server, case):
    body, kind, named = BAD[case]
    r = chat_server.request("POST", "/v1/chat/completions", json.dumps(body).encode(), JSON)
    assert r.status == 400, r.body
    assert r.json()["error"]["kind"] == kind and named in r.json()["error"]["message"], r.json()


def test_openai_clients_defaults_are_taken_and_the_answer_is_one_choice(chat_server, photos):
    uri = "data:image/png;base64," + base64.b64encode(photos[0].read_bytes()).decode()
    body = {"model": "bbu", "temperature": 0, "top_p": 1, "max_tokens": 1024, "n": 1, "stream": False, "seed": 7,
            "logprobs": False, "tools": [], "user": "inspector-7", "stop": ["\n\n"],
            "messages": [{"role": "system", "content": "You inspect photos."}, user({"type": "image_url", "image_url": {"url": uri}})]}
    r = chat_server.request("POST", "/v1/chat/completions", json.dumps(body).encode(), JSON)
    assert r.status == 200, r.body
    assert len(r.json()["choices"]) == 1 and isinstance(json.loads(r.json()["choices"][0]["message"]["content"]), list)


def test_brackets_and_commas_inside_strings_count_for_nothing(chat_server, photos):
    uri = "data:image/png;base64," + base64.b64encode(photos[0].read_bytes()).decode()
    text = "[{" * 5_000 + "," * 20_000 + '\\"[' * 100  # far past both limits, were they not text
    body = {"messages": [{"role": "system", "content": text}, user({"type": "image_url", "image_url": {"url": uri}})]}
    r = chat_server.request("POST", "/v1/chat/completions", json.dumps(body).encode(), JSON)
    assert r.status == 200, r.body


def test_openais_store_and_metadata_are_taken(chat_server, photos):
    """A client that asks OpenAI to keep nothing sends `store: false`, one that tags its calls `metadata`: both were an
    unknown_field 400, though they change no answer."""
    uri = "data:image/png;base64," + base64.b64encode(photos[0].read_bytes()).decode()
    body = {"store": False, "metadata": {"site": "3", "inspector": "7"},
            "messages": [user({"type": "image_url", "image_url": {"url": uri}})]}
    r = chat_server.request("POST", "/v1/chat/completions", json.dumps(body).encode(), JSON)
    assert r.status == 200, r.body
    assert len(r.json()["choices"]) == 1


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_chat_routes_bbuvl_block_says_what_detect_says_of_the_judging(engine, keys, photos):
    # /v1/detect said "tiled": true of a photo predicted through tiles (judged by the tiled photos' thresholds) and
    # "cut": true of an answer the budget cut; the chat route's `bbuvl` block carried the verdict alone.
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from tests.serve.conftest import running

    tiled = Engine(engine.predictor, "generate", engine.checkpoint, overrides={"tiles": "2x2", "constrained": False,
                                                                                "max_new_tokens": 12})
    uri = "data:image/png;base64," + base64.b64encode(photos[0].read_bytes()).decode()
    body = json.dumps({"messages": [user({"type": "image_url", "image_url": {"url": uri}})]}).encode()
    with running(create_app(tiled, keys)) as client:
        chat = client.request("POST", "/v1/chat/completions", body, JSON)
        detect = client.detect_file(photos[0])
    assert chat.status == detect.status == 200, (chat.body, detect.body)
    said, detected = chat.json()["bbuvl"], detect.json()
    judging = ("verdict", "cut", "tiled")
    assert detected["tiled"] is True and detected.get("cut") is True  # 12 unconstrained tokens cut every region's answer
    assert {k: said.get(k) for k in judging} == {k: detected.get(k) for k in judging}
    assert chat.json()["choices"][0]["finish_reason"] == "length"
