"""A client that leaves while its photo decodes beside another's: its row leaves the batch at the next token, the other
is answered in full, and /metrics counts the photo dropped and the rows of passes saved (infer/dropped_rows.py)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.serve.conftest import running
from tests.serve.test_waiting import detect_request, metric, wait_for

TOKENS = 600  # unconstrained, the tiny model writes to the budget: about 1.5 s for a batch of two on one thread


def counter(client, name: str) -> float:
    line = metric(client, name + " ")
    return float(line.split()[-1]) if line else 0.0


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_whose_client_left_leaves_its_batch_and_the_saved_passes_are_counted(engine, keys, photos):
    from bbuvl.serve.app import ServeSettings, create_app
    from bbuvl.serve.engine import Engine

    began = threading.Event()

    class Observed(Engine):
        def run(self, mode, photos):
            began.set()  # both photos are in this batch (max_batch 2, a wide window)
            return super().run(mode, photos)

    long = Observed(engine.predictor, "generate", engine.checkpoint,
                    overrides={"constrained": False, "max_new_tokens": TOKENS})
    # a wide gathering window: both photos share one batch however the two uploads are timed
    app = create_app(long, keys, ServeSettings(max_wait_ms=400, max_batch=2))
    with running(app) as client:
        leaving = socket.create_connection(("127.0.0.1", client.port), timeout=10)
        leaving.sendall(detect_request(photos[0]))
        answer: list = []
        staying = threading.Thread(target=lambda: answer.append(client.detect_file(photos[1])))
        staying.start()
        assert began.wait(10)
        time.sleep(0.1)  # both are decoding
        leaving.close()
        staying.join(30)
        wait_for(lambda: 'status="499"} 1.0' in metric(client, "bbuvl_requests_total"))
        dropped = counter(client, "bbuvl_batch_rows_dropped_total")
        saved = counter(client, "bbuvl_batch_row_passes_saved_total")
    r = answer[0]
    assert r.status == 200, r.body
    got = r.json()
    assert got["timing_ms"]["batch_size"] == 2 and got["usage"]["completion_tokens"] == TOKENS, got
    # The left photo's row was computed for none of the passes after it left: most of the budget
    assert dropped == 1.0, (dropped, saved)
    assert TOKENS // 4 < saved < TOKENS, saved
    print(json.dumps({"dropped": dropped, "passes_saved": saved, "answered_ms": got["timing_ms"]["inference"]}))
