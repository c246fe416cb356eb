"""Token usage in answers: the chat route's `usage` (and /v1/detect's) counts what the model read, as the stock processor
builds the prompt for the same photo, and what it wrote, the generated ids through the one that ended the answer;
through tiles, the sum over every region's pass. It was all 0 before."""

from __future__ import annotations

import base64
import json

from PIL import Image

from bbuvl.infer.tiles import crop_region
from tests.infer.test_predictor_usage import processor_prompt_tokens

JSON = {"Content-Type": "application/json"}


def chat(client, photo) -> dict:
    """The chat route's answer for one photo file."""
    uri = "data:image/png;base64," + base64.b64encode(photo.read_bytes()).decode()
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}}]}]}
    r = client.request("POST", "/v1/chat/completions", json.dumps(body).encode(), JSON)
    assert r.status == 200, r.body
    return r.json()


def generated_ids(predictor, images: list[Image.Image], options) -> list[list[int]]:
    """Each image's greedy answer decoded in one batch, as ids through the first that ends it."""
    prepared = [predictor.prepare(im) for im in images]
    constraint = predictor.answer_constraint(prepared, options.constrained, options.max_new_tokens)
    new, _ = predictor.greedy(predictor.batch(prepared, with_teachers=False), constraint, options.max_new_tokens)
    return [row[:next((i + 1 for i, t in enumerate(row) if t in predictor.stop_ids), len(row))] for row in new.tolist()]


def test_the_chat_route_counts_the_prompt_the_processor_builds_and_the_tokens_generated(engine, serve, photos):
    predictor = engine.predictor
    got = chat(serve(), photos[0])
    image = Image.open(photos[0]).convert("RGB")
    ids = generated_ids(predictor, [image], engine.options_for("generate"))[0]
    assert predictor.tokenizer.decode(ids, skip_special_tokens=True) == got["bbuvl"]["raw"]  # the answer served
    prompt = processor_prompt_tokens(predictor, [image], [])
    assert got["usage"] == {"prompt_tokens": prompt, "completion_tokens": len(ids), "total_tokens": prompt + len(ids)}
    assert prompt > predictor.contract.vision_tokens(image.size) > 0 and len(ids) > 0


def test_a_head_answer_counts_the_prompt_it_read_and_nothing_written(engine, serve, photos):
    r = serve().detect_file(photos[1])
    assert r.status == 200, r.body
    prompt = processor_prompt_tokens(engine.predictor, [Image.open(photos[1]).convert("RGB")], [])
    assert r.json()["usage"] == {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt}


def test_through_tiles_the_counts_are_the_sum_over_every_regions_pass(engine, keys, photos):
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from tests.serve.conftest import running

    predictor = engine.predictor
    tiled = Engine(predictor, "head", engine.checkpoint, overrides={"tiles": "2x2", "constrained": False,
                                                                     "max_new_tokens": 12})
    with running(create_app(tiled, keys)) as client:
        got = chat(client, photos[0])
    photo = Image.open(photos[0]).convert("RGB")
    regions = [tuple(r["region"]) for r in json.loads(got["bbuvl"]["raw"])]
    whole = (0, 0, *photo.size)
    assert regions[0] == whole and len(regions) == 5  # the whole photo, then its 4 tiles
    crops = [crop_region(photo, r, predictor.contract) for r in regions]
    prompt = sum(processor_prompt_tokens(predictor, [c], []) for c in crops)
    # the whole photo's pass, then the tiles' in one batch, as the predictor runs them (`region_batch`)
    options = tiled.options_for("generate")
    written = sum(map(len, generated_ids(predictor, crops[:1], options) + generated_ids(predictor, crops[1:], options)))
    assert got["usage"] == {"prompt_tokens": prompt, "completion_tokens": written, "total_tokens": prompt + written}
    one_pass = processor_prompt_tokens(predictor, [photo], [])
    assert prompt > 4 * one_pass  # every tile read a prompt as long as the whole photo's: 5 passes, each counted


def test_metrics_sum_the_answers_tokens_by_kind_and_mode(engine, serve, photos):
    client = serve()
    chatted = chat(client, photos[0])["usage"]
    detected = client.detect_file(photos[1]).json()["usage"]
    chatted_again = chat(client, photos[1])["usage"]
    text = client.request("GET", "/metrics").body.decode()
    generate = {k: chatted[k] + chatted_again[k] for k in ("prompt_tokens", "completion_tokens")}
    for line in (f'bbuvl_tokens_total{{kind="prompt",mode="generate"}} {float(generate["prompt_tokens"])}',
                 f'bbuvl_tokens_total{{kind="completion",mode="generate"}} {float(generate["completion_tokens"])}',
                 f'bbuvl_tokens_total{{kind="prompt",mode="{engine.mode}"}} {float(detected["prompt_tokens"])}'):
        assert line in text, (line, [t for t in text.splitlines() if t.startswith("bbuvl_tokens")])
    assert generate["completion_tokens"] > 0 and engine.mode != "generate"
