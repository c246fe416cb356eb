"""A head giving NaN boxes, sent real requests over HTTP: the photo it gave them for is answered 500
`inference_failed` with the reason, never NaN nor a bare 500; and a photo batched with it is answered from the same
pass, as it would be alone."""

from __future__ import annotations

import io
import threading

import pytest
import torch
from PIL import Image

from tests.nan_head import nan_for_portraits
from tests.serve.conftest import running


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    """One plain photo's PNG bytes."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture()
def own_engine(trained_checkpoint):
    """The trained tiny checkpoint in head mode, loaded for this test alone (its head is changed in memory)."""
    from bbuvl.serve.engine import Engine

    return Engine.load(trained_checkpoint, mode="head", device="cpu")


def serve_with(engine, keys, **settings):
    """A running server of `engine` (a context manager yielding its client)."""
    from bbuvl.serve.app import ServeSettings, create_app

    return running(create_app(engine, keys, ServeSettings(**settings)))


def test_a_head_with_nan_weights_is_answered_500_inference_failed_naming_it(own_engine, keys):
    with torch.no_grad():  # the load refuses a file of NaN weights: a model diverged in memory
        own_engine.predictor.model.detection_head.box_head.layers[-1].bias.fill_(float("nan"))
    with serve_with(own_engine, keys, max_batch=1, max_wait_ms=0) as client:
        reply = client.detect_json(png((224, 168), (200, 30, 30)))
        health = client.request("GET", "/healthz", key=False)
    assert reply.status == 500, reply.body
    error = reply.json()["error"]
    assert error["kind"] == "inference_failed"
    assert error["message"].startswith("ValueError: the detection head gave non-finite boxes"), error
    assert b"NaN" not in reply.body.replace(b"(NaN or infinity)", b"")
    assert health.status == 200  # the server goes on


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_batched_with_one_given_nan_boxes_gets_its_answer(own_engine, keys):
    hook, passes = nan_for_portraits(own_engine.predictor.model.detection_head)
    good, bad = png((224, 168), (30, 200, 30)), png((168, 224), (20, 30, 200))
    replies: dict[str, object] = {}
    try:
        with serve_with(own_engine, keys, max_batch=2, max_wait_ms=5000) as client:
            # both wait in the queue for one batch of two (the window: 5 s, or the batch full)
            threads = [threading.Thread(target=lambda k=k, d=d: replies.__setitem__(k, client.detect_json(d)))
                       for k, d in (("good", good), ("bad", bad))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            batched = list(passes)
        with serve_with(own_engine, keys, max_batch=1, max_wait_ms=0) as client:
            alone = client.detect_json(good)
    finally:
        hook.remove()
    assert batched == [2], batched  # one pass for both: the NaN photo failed the batch, each was retried alone
    assert replies["bad"].status == 500 and replies["bad"].json()["error"]["kind"] == "inference_failed"
    assert "non-finite boxes" in replies["bad"].json()["error"]["message"]
    assert replies["good"].status == 200, replies["good"].body
    assert replies["good"].json()["objects"] == alone.json()["objects"] and alone.json()["objects"]
