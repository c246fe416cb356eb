"""`bbuvl serve` over real HTTP: routes, answers equal to `bbuvl predict` (the key on every route: test_auth.py)."""

from __future__ import annotations

import base64
import json
import threading

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app as cli
from tests.serve.client import multipart


def chat_body(url: str) -> bytes:
    return json.dumps({"model": "bbuvl", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "find every part"}, {"type": "image_url", "image_url": {"url": url}}]}]}).encode()


@pytest.mark.parametrize("mode", ["head", "generate", "name"])
def test_detect_answers_in_the_uploaded_images_pixels_equal_to_bbuvl_predict(engine, keys, photos, trained_checkpoint,
                                                                             tmp_path, mode):
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from tests.serve.conftest import running

    photo = photos[-1]
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / "pred.jsonl"
    r = CliRunner().invoke(cli, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out), "--mode", mode,
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    expected = json.loads(out.read_text(encoding="utf-8").splitlines()[0])

    with running(create_app(Engine(engine.predictor, mode, engine.checkpoint), keys)) as client:
        answers = [client.detect_file(photo), client.detect_json(photo.read_bytes()),
                   client.request("POST", "/v1/detect", photo.read_bytes(), {"Content-Type": "image/png"})]
    for reply in answers:
        assert reply.status == 200, reply.body
        got = reply.json()
        assert (got["width"], got["height"]) == (expected["width"], expected["height"]) == (224, 168)
        assert [{k: o[k] for k in ("bbox_2d", "label", "score")} for o in got["objects"]] == expected["objects"]
        assert got["verdict"] == expected["verdict"]  # the photo's verdict, as predict writes it (docs/faults.md)
        assert [o["fault"] for o in got["objects"]] == [engine.predictor.faults.is_fault(o["label"]) for o in got["objects"]]
        assert not any(o["unknown"] for o in got["objects"])
        assert got["model"]["mode"] == mode and got["model"]["contract"]["max_pixels"] == 50176
        assert {"decode", "queue", "inference", "total"} <= set(got["timing_ms"])
    if mode != "generate":  # objectness threshold 0 in this checkpoint: the head always finds something
        assert got["objects"]


def test_an_exif_rotated_upload_is_answered_in_its_upright_pixels(serve, photos, tmp_path):
    from PIL import Image

    stored = tmp_path / "rotated.jpg"
    im = Image.open(photos[0]).convert("RGB").rotate(90, expand=True)  # pixels lie on their side ...
    exif = Image.Exif()
    exif[0x0112] = 8  # ... and EXIF says: turn back upright
    im.save(stored, exif=exif)
    got = serve().detect_file(stored).json()
    assert (got["width"], got["height"]) == (224, 168)
    for o in got["objects"]:
        x1, y1, x2, y2 = o["bbox_2d"]
        assert 0 <= x1 <= x2 <= 224 and 0 <= y1 <= y2 <= 168


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_concurrent_requests_share_a_forward_pass_and_get_their_own_answers(serve, photos):
    client = serve(max_batch=4, max_wait_ms=1000)
    alone = [client.detect_file(p).json() for p in photos[:4]]
    replies: list = [None] * 4

    def send(i: int) -> None:
        replies[i] = client.detect_file(photos[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together = [r.json() for r in replies]
    assert max(t["timing_ms"]["batch_size"] for t in together) > 1
    for a, t in zip(alone, together):
        assert [o["label"] for o in a["objects"]] == [o["label"] for o in t["objects"]]
        for oa, ot in zip(a["objects"], t["objects"]):
            assert ot["bbox_2d"] == pytest.approx(oa["bbox_2d"], abs=0.2)
            assert ot["score"] == pytest.approx(oa["score"], abs=1e-3)


def test_chat_completions_takes_a_data_uri_and_never_a_url(serve, photos):
    client = serve()
    uri = "data:image/png;base64," + base64.b64encode(photos[0].read_bytes()).decode()
    r = client.request("POST", "/v1/chat/completions", chat_body(uri), {"Content-Type": "application/json"})
    assert r.status == 200, r.body
    got = r.json()
    assert got["object"] == "chat.completion" and got["choices"][0]["message"]["role"] == "assistant"
    objects = json.loads(got["choices"][0]["message"]["content"])
    assert isinstance(objects, list) and all(set(o) == {"bbox_2d", "label"} for o in objects)
    assert got["bbuvl"]["model_info"]["mode"] == "generate" and isinstance(got["bbuvl"]["raw"], str)
    for url in ("https://example.com/photo.jpg", "http://127.0.0.1/x.png", "file:///etc/passwd"):
        r = client.request("POST", "/v1/chat/completions", chat_body(url), {"Content-Type": "application/json"})
        assert r.status == 400 and r.json()["error"]["kind"] == "url_not_allowed", url
    r = client.request("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
                       {"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["error"]["kind"] == "missing_image"


def test_readyz_and_metrics_report_queue_batches_latency_and_errors(serve, photos):
    client = serve()
    ready = client.request("GET", "/readyz").json()
    assert ready["ready"] and ready["model_loaded"] and ready["queue_depth"] == 0
    client.detect_file(photos[0])
    client.request("POST", "/v1/detect", b"hello", {"Content-Type": "text/plain"})
    client.request("GET", "/readyz", key=False)
    text = client.request("GET", "/metrics").body.decode()
    for line in ('bbuvl_requests_total{route="/v1/detect",status="200"} 1.0',
                 'bbuvl_requests_total{route="/v1/detect",status="415"} 1.0',
                 'bbuvl_errors_total{kind="unsupported_media_type"} 1.0', 'bbuvl_errors_total{kind="unauthorized"} 1.0',
                 'bbuvl_batch_size_count 1.0', 'bbuvl_queue_depth 0.0'):
        assert line in text, line
    assert 'bbuvl_request_latency_seconds_bucket{le="60.0",route="/v1/detect"}' in text
    from bbuvl.versions import software

    build = next(line for line in text.splitlines() if line.startswith("bbuvl_build_info{"))
    assert all(f'{name}="{version}"' in build for name, version in software().items()), build


def test_cors_is_off_unless_an_origin_is_configured(serve):
    preflight = {"Origin": "https://inspect.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}
    off = serve().request("OPTIONS", "/v1/detect", headers=preflight, key=False)
    assert "access-control-allow-origin" not in off.headers
    on = serve(cors_origins=["https://inspect.example"]).request("OPTIONS", "/v1/detect", headers=preflight, key=False)
    # 200 with a text body "OK" before; a preflight's success carries its headers, and nothing to read
    assert on.status == 204 and on.body == b"" and on.headers["access-control-allow-origin"] == "https://inspect.example"


def test_a_request_past_its_timeout_gets_504_and_the_server_goes_on(serve, photos):
    client = serve(timeout_s=0.001)
    r = client.detect_file(photos[0])
    assert r.status == 504 and r.json()["error"]["kind"] == "timeout"
    assert client.request("GET", "/readyz").status == 200


def test_the_multipart_field_may_have_another_name_when_it_is_the_only_file(serve, photos):
    body, ctype = multipart("file", "p.png", photos[0].read_bytes())
    assert serve().request("POST", "/v1/detect", body, {"Content-Type": ctype}).status == 200


def test_a_full_queue_answers_503_with_retry_after_and_every_request_is_answered(serve, photos):
    client = serve(max_batch=1, max_wait_ms=0, queue_size=1)
    barrier = threading.Barrier(10)
    replies: list = [None] * 10

    def send(i: int) -> None:
        barrier.wait()
        replies[i] = client.detect_file(photos[i % len(photos)])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [r.status for r in replies]
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    for r in replies:
        if r.status == 503:
            assert r.headers["retry-after"] == "1" and r.json()["error"]["kind"] == "queue_full"
    assert client.detect_file(photos[0]).status == 200
    metrics = client.request("GET", "/metrics").body.decode()
    assert f'bbuvl_errors_total{{kind="queue_full"}} {statuses.count(503)}.0' in metrics


def test_the_pages_cjk_font_is_the_servers_own(serve):
    from bbuvl.eval.fonts import find_cjk_font

    r = serve().request("GET", "/font/cjk")
    font = find_cjk_font().path
    if font is None:
        assert r.status == 404 and r.json()["error"]["kind"] == "not_found"
    else:
        assert r.status == 200 and r.body == font.read_bytes()


def test_request_logs_name_path_and_status_but_never_a_key_or_image_bytes(serve, photos, caplog):
    import logging

    client = serve()
    import time

    def logged() -> str:
        return "\n".join(r.getMessage() for r in caplog.records if r.name == "bbuvl.serve")

    with caplog.at_level(logging.INFO, logger="bbuvl.serve"):
        client.detect_file(photos[0])
        client.request("GET", "/readyz", key="a-wrong-key-that-must-not-be-logged")
        # The access line is written after the answer is sent, so the client can read the answer first.
        deadline = time.monotonic() + 10
        while not ("GET /readyz 401" in logged() and "POST /v1/detect 200" in logged()) and time.monotonic() < deadline:
            time.sleep(0.05)
    text = logged()
    assert "POST /v1/detect 200" in text and "GET /readyz 401" in text
    assert client.key not in text and "a-wrong-key-that-must-not-be-logged" not in text and "PNG" not in text
