"""A decode whose request is past its deadline stops at its next token: the worker is free for the next request at
once, where it decoded on to the answer's end for nobody, and the requests behind it waited past their own deadlines."""

from __future__ import annotations

import base64
import json
import time

JSON = {"Content-Type": "application/json"}
TIMEOUT_S = 3.0  # a ninth of the decode here, so that a machine several times faster still times out; the head pass after
# it gets the same deadline, and on 2 cores shared with other work (load 4-5) it took over 1 s
TOKENS = 12000  # unconstrained, the tiny model writes to the budget: 4,000 took 8.7 s on one CPU thread (measured)


def test_a_decode_past_its_deadline_stops_and_the_next_request_is_answered_at_once(engine, keys, photos):
    from bbuvl.serve.app import ServeSettings, create_app
    from bbuvl.serve.engine import Engine
    from tests.serve.conftest import running

    long = Engine(engine.predictor, "head", engine.checkpoint, overrides={"constrained": False, "max_new_tokens": TOKENS})
    uri = "data:image/png;base64," + base64.b64encode(photos[0].read_bytes()).decode()
    body = json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}}]}]})
    with running(create_app(long, keys, ServeSettings(timeout_s=TIMEOUT_S))) as client:
        t0 = time.perf_counter()
        r = client.request("POST", "/v1/chat/completions", body.encode(), JSON)
        late = time.perf_counter() - t0
        assert r.status == 504 and r.json()["error"]["kind"] == "timeout", r.body
        t1 = time.perf_counter()
        r = client.detect_file(photos[1])  # the head's one pass, on the same worker
        waited = time.perf_counter() - t1
        assert r.status == 200, r.body
        queue_ms = r.json()["timing_ms"]["queue"]
    print(f"chat 504 after {late:.2f} s; next request answered in {waited * 1000:.0f} ms, {queue_ms:.0f} ms of it queued")
    assert late < TIMEOUT_S + 1.0
    # Its batch began within the batcher's gathering window (25 ms) and a token's time or so, not seconds later.
    assert queue_ms < 500, queue_ms
