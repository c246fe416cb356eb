"""Every class of bad input gets a 4xx with a JSON error naming it, and the next good request still succeeds."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import pytest
from PIL import Image

from tests.exif_photos import (UNPARSABLE_EXIF, jpeg_turned_with_a_make_tag_of_the_wrong_type,
                               photo_with_an_unparsable_exif_block)
from tests.forged_jpegs import flooded, rescanned
from tests.forged_pngs import chunk_flooded
from tests.data.test_images_frames import pictures
from tests.serve.client import multipart


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares `width` x `height` pixels (a decompression bomb's header; no need for the data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (200, 150), (120, 40, 200)).save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 40, 200)).save(buf, "PNG")
    return buf.getvalue()


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 40, 200)).save(buf, "GIF")
    return buf.getvalue()


def tiff_with_a_fraction_for_its_strip_offsets() -> bytes:
    """A 40x30 TIFF whose StripOffsets tag, where its pixels start, is a fraction (type RATIONAL) rather than a number."""
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (120, 40, 200)).save(buf, "TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 0x0111:  # StripOffsets: type 5 (RATIONAL), one, at byte 8
            struct.pack_into("<HII", data, entry + 2, 5, 1, 8)
    return bytes(data)


def as_file(data: bytes) -> tuple[bytes, dict[str, str]]:
    body, ctype = multipart("image", "upload.jpg", data)
    return body, {"Content-Type": ctype}


JSON = {"Content-Type": "application/json"}
BAD = {
    "not_an_image": (*as_file(b"this is a text file, not a photo"), 400, "not_an_image"),
    "truncated_image": (*as_file(truncated_jpeg()), 400, "corrupt_image"),
    # a JSON 500 internal_error before: Pillow's TIFF reader raised TypeError on it
    "tiff_with_a_tag_of_the_wrong_type": (*as_file(tiff_with_a_fraction_for_its_strip_offsets()), 400, "corrupt_image"),
    "gif_named_jpg": (*as_file(gif()), 415, "unsupported_image_format"),
    # 200 before, answered for the first frame alone, where a GIF was refused (data/images.py frames_problem)
    "animated_png": (*as_file(pictures("PNG", 3)), 415, "unsupported_image_format", "an animated PNG of 3 frames"),
    "animated_webp": (*as_file(pictures("WEBP", 3)), 415, "unsupported_image_format", "an animated WebP of 3 frames"),
    "multi_page_tiff": (*as_file(pictures("TIFF", 2)), 415, "unsupported_image_format", "a multi-page TIFF of 2 pages"),
    "empty_file": (*as_file(b""), 400, "empty_image"),
    # Pillow's own words before, naming its limit (178956970) and not the server's (5017600 here): a 192 MP PNG shrunk
    # to 170 MP as they told was refused again
    "decompression_bomb": (*as_file(png_header_only(30000, 30000)), 413, "image_too_large", "900000000 pixels",
                           "at most 5017600 "),
    "past_pillows_own_limit": (*as_file(png_header_only(16000, 12000)), 413, "image_too_large", "192000000 pixels",
                               "at most 5017600 "),
    "over_the_contracts_pixel_limit": (*as_file(png_header_only(3000, 2000)), 413, "image_too_large"),
    # a 200 before, once a decoding thread had passed over the whole photo once a scan: two uploads of 150 KB (3,010
    # scans of 2236x2236) held both threads of a 2-core server for 18 s, every other photo waiting behind them
    # empty segments, each a step of Pillow's opener and of the marker walk: 10 MB of them held a decoding thread 22 s
    "a_jpeg_of_200000_markers": (*as_file(flooded(200_000)), 400, "corrupt_image", "more than 1000 markers"),
    # a 200 before, once Pillow's reader had stepped through every chunk in Python: 12 MB of empty IDATs held a
    # decoding thread 2.8 s
    "a_png_of_50000_empty_chunks": (*as_file(chunk_flooded(50_000)), 400, "corrupt_image",
                                     "more than 10000 chunks"),
    "a_jpeg_of_a_thousand_scans": (*as_file(rescanned((1000, 800), 1000)), 413, "image_too_large",
                                   "more than 100 scans"),
    # A 500 `inference_failed` before: smart_resize refuses it, which is the photo's fault, not the model's.
    "longer_than_any_frame_holds": (*as_file(png(3, 900)), 400, "bad_aspect_ratio"),
    "body_over_the_limit": (*as_file(b"\xff\xd8" + b"0" * (1536 * 1024)), 413, "body_too_large"),
    "wrong_content_type": (b"hello", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    "no_content_type": (b"hello", {}, 415, "unsupported_media_type"),
    # each of these four said only "the JSON body has no 'image' field" before: what it held instead is named
    # "not_an_image" before: the part's base64 text was read as the photo
    "multipart_part_in_base64": (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                                 b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(png(8, 8)) + b"\r\n--b--\r\n",
                                 {"Content-Type": "multipart/form-data; boundary=b"}, 400, "bad_multipart",
                                 "part 1 ('image') says Content-Transfer-Encoding: base64"),
    "json_without_an_image": (json.dumps({"picture": "x"}).encode(), JSON, 400, "missing_image", "it holds 'picture'"),
    "json_naming_the_photo_image_url": (json.dumps({"image_url": "data:image/png;base64,AAAA", "Image": "x"}).encode(),
                                        JSON, 400, "missing_image", "it holds 'image_url', 'Image'"),
    "chat_body_sent_to_detect": (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), JSON, 400,
                                 "missing_image", "a chat request, which goes to /v1/chat/completions"),
    "json_array_of_base64": (json.dumps(["AAAA"]).encode(), JSON, 400, "missing_image", "it is an array",
                             '{"image": "data:image/jpeg;base64,..."}'),
    "json_that_is_not_json": (b"{not json", JSON, 400, "invalid_json"),
    "json_with_bad_base64": (json.dumps({"image": "@@@not base64@@@"}).encode(), JSON, 400, "bad_base64"),
    "json_with_a_url": (json.dumps({"image": "https://example.com/a.jpg"}).encode(), JSON, 400, "url_not_allowed"),
    # 200 before: the declared type was never looked at
    "json_with_a_text_data_uri": (json.dumps({"image": "data:text/plain;base64," + base64.b64encode(png(64, 48)).decode()}).encode(),
                                  JSON, 415, "unsupported_media_type"),
    "json_with_base64_text": (json.dumps({"image": base64.b64encode(b"plain words").decode()}).encode(), JSON, 400, "not_an_image"),
    # A bare 500 (a RecursionError inside the JSON parser) before: too deep is the client's error, named.
    "json_nested_100000_deep": (b"[" * 100_000 + b"]" * 100_000, JSON, 400, "json_too_deep"),
    "json_nested_100000_deep_unclosed": (b'{"a":' * 100_000, JSON, 400, "json_too_deep"),
    # 400 missing_image after a second of parsing and walking 400,000 values on the event loop before (20 MB of them
    # held every other client for 16 s): refused from a count of its commas and brackets, before any is built
    "json_with_400000_values": (b'{"image": [' + b"0," * 400_000 + b"0]}", JSON, 400, "json_too_many_values"),
    "json_with_100000_objects": (b'{"x": [' + b"[{}]," * 100_000 + b"0]}", JSON, 400, "json_too_many_values"),
    # Ignored before, so a client believed its own threshold applied
    "json_with_a_setting_beside_the_image": (json.dumps({"image": base64.b64encode(png(64, 48)).decode(),
                                                         "score_threshold": 0.5}).encode(), JSON, 400, "unknown_field"),
    "multipart_with_a_setting_beside_the_image": (
        b"--b\r\nContent-Disposition: form-data; name=\"tiles\"\r\n\r\n2x2\r\n--b\r\nContent-Disposition: form-data; "
        b"name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n" + png(64, 48) + b"\r\n--b--\r\n",
        {"Content-Type": "multipart/form-data; boundary=b"}, 400, "unknown_field"),
    # The last value taken before, silently: here the photo was dropped for the one after it
    "json_with_the_image_key_twice": (b'{"image": "' + base64.b64encode(png(64, 48)) + b'", "image": "AAAA"}', JSON, 400,
                                      "duplicate_key"),
    # A bare text 500 before: Python's int refuses to read more than 4,300 digits
    "json_with_a_number_of_5000_digits": (b'{"image": ' + b"9" * 5000 + b"}", JSON, 400, "missing_image"),
    # 400 bad_multipart "Too many files" before, as if the body were broken
    "multipart_with_two_photos": (
        b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
        + png(64, 48) + b"\r\n--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"b.png\"\r\n"
        b"Content-Type: image/png\r\n\r\n" + png(64, 48) + b"\r\n--b--\r\n",
        {"Content-Type": "multipart/form-data; boundary=b"}, 400, "too_many_images"),
    # 400 missing_image "no file part named 'image'" before, for a body that holds one, cut off
    "multipart_cut_before_its_closing_boundary": (
        b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
        + png(64, 48)[:100], {"Content-Type": "multipart/form-data; boundary=b"}, 400, "bad_multipart"),
    # "Expected boundary character 98, got 120 at index 2" before: the parser's words, naming no boundary
    "multipart_under_another_boundary_than_its_header_names": (
        b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
        + png(64, 48) + b"\r\n--x--\r\n", {"Content-Type": "multipart/form-data; boundary=b"}, 400, "bad_multipart",
        "does not begin with the boundary its Content-Type names, '--b'"),
    "multipart_without_a_file": (b"--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--b--\r\n",
                                 {"Content-Type": "multipart/form-data; boundary=b"}, 400, "missing_image"),
}


@pytest.fixture(scope="module")
def bad_server(engine, keys):
    from bbuvl.serve.app import ServeSettings, create_app
    from tests.serve.conftest import running

    with running(create_app(engine, keys, ServeSettings(max_body_mb=1.0))) as client:
        yield client


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_a_4xx_naming_it_and_the_next_good_request_succeeds(bad_server, photos, case):
    body, headers, status, kind, *named = BAD[case]
    r = bad_server.request("POST", "/v1/detect", body, headers)
    assert r.status == status, r.body
    error = r.json()["error"]
    assert error["kind"] == kind and error["message"]
    assert all(n in error["message"] for n in named), error
    good = bad_server.detect_file(photos[0])
    assert good.status == 200 and good.json()["objects"]


def test_a_chat_body_nested_deeper_than_any_request_is_a_400_naming_it(bad_server, photos):
    body = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = bad_server.request("POST", "/v1/chat/completions", body, JSON)
    assert r.status == 400 and r.json()["error"]["kind"] == "json_too_deep", r.body
    assert "deeper than" in r.json()["error"]["message"]
    assert bad_server.detect_file(photos[0]).status == 200


def test_a_body_over_the_limit_without_a_declared_length_is_refused_as_it_arrives(bad_server):
    import http.client

    conn = http.client.HTTPConnection(bad_server.host, bad_server.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/detect")
        conn.putheader("Authorization", f"Bearer {bad_server.key}")
        conn.putheader("Content-Type", "image/png")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"0" * 65536
        try:
            for _ in range(24):  # 1.5 MiB against a 1 MiB limit
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before everything is sent
        r = conn.getresponse()
        assert r.status == 413 and json.loads(r.read())["error"]["kind"] == "body_too_large"
    finally:
        conn.close()


def test_a_photo_at_the_aspect_limit_is_answered(bad_server):
    body, headers = as_file(png(20, 4000))
    r = bad_server.request("POST", "/v1/detect", body, headers)
    assert r.status == 200 and (r.json()["width"], r.json()["height"]) == (20, 4000), r.body


def test_base64_in_the_url_safe_alphabet_unpadded_or_wrapped_gives_the_same_answer(bad_server):
    data = png(61, 44)  # 61x44: its PNG's base64 has '-'/'_' in the URL-safe alphabet and needs padding
    plain = base64.b64encode(data).decode()
    url_safe = base64.urlsafe_b64encode(data).decode()
    assert url_safe != plain and plain.endswith("=")
    spellings = {"url_safe_unpadded": url_safe.rstrip("="), "unpadded": plain.rstrip("="),
                 "wrapped_at_76": "\n".join(plain[i:i + 76] for i in range(0, len(plain), 76)),
                 "data_uri_without_a_type": "data:;base64," + url_safe, "octet_stream": "data:application/octet-stream;base64," + plain}
    want = bad_server.request("POST", "/v1/detect", json.dumps({"image": plain}).encode(), JSON)
    assert want.status == 200
    for name, text in spellings.items():  # the URL-safe ones were 400 bad_base64 before
        r = bad_server.request("POST", "/v1/detect", json.dumps({"image": text}).encode(), JSON)
        assert r.status == 200, (name, r.body)
        assert r.json()["objects"] == want.json()["objects"], name


def test_a_chat_parameter_of_5000_digits_is_a_400_naming_it(bad_server):
    body = b'{"seed": ' + b"9" * 5000 + b', "messages": [{"role": "user", "content": "find"}]}'
    r = bad_server.request("POST", "/v1/chat/completions", body, JSON)
    assert r.status == 400, r.body  # a bare text 500 with a traceback in the log before
    assert r.json()["error"]["kind"] == "invalid_parameter" and "'seed'" in r.json()["error"]["message"]


def test_an_unexpected_failure_is_a_json_500_and_the_server_goes_on(engine, keys, photos):
    from bbuvl.serve.app import ServeSettings, create_app
    from tests.serve.conftest import running

    app = create_app(engine, keys, ServeSettings())

    @app.get("/v1/fails")
    async def fails() -> None:  # a route with a bug, as any handler could have one
        raise KeyError("a bug")

    with running(app) as client:
        r = client.request("GET", "/v1/fails")
        assert r.status == 500 and r.headers["content-type"] == "application/json", r.body  # text "Internal Server Error" before
        assert r.json()["error"] == {"kind": "internal_error",
                                     "message": "the server failed on this request (KeyError); its log holds the traceback"}
        assert client.detect_file(photos[0]).status == 200


def test_a_setting_in_the_query_is_refused_naming_it(bad_server, photos):
    body, headers = as_file(photos[0].read_bytes())
    r = bad_server.request("POST", "/v1/detect?score_threshold=0.9&mode=head&mode=name", body, headers)
    assert r.status == 400, r.body  # 200 before, answered with the server's own threshold and mode
    error = r.json()["error"]
    assert error["kind"] == "unknown_field" and "'?score_threshold', '?mode' beside the image" in error["message"], error
    assert bad_server.request("POST", "/v1/detect?", body, headers).status == 200  # an empty query asks for nothing


def test_a_long_value_is_named_by_its_start_not_echoed_whole(bad_server):
    image = base64.b64encode(png(64, 48)).decode()
    long = "k" * 100_000
    cases = [
        ("/v1/detect", json.dumps({"image": image, long: 1}).encode(), JSON, "unknown_field"),
        ("/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "x"}], long: 1}).encode(), JSON,
         "unknown_field"),
        ("/v1/chat/completions", json.dumps({"n": long, "messages": [{"role": "user", "content": "x"}]}).encode(), JSON,
         "unsupported"),
        ("/v1/chat/completions", json.dumps({"seed": [1] * 3_000, "messages": [{"role": "user", "content": "x"}]}).encode(),
         JSON, "invalid_parameter"),
        ("/v1/detect", b"x", {"Content-Type": "text/" + "x" * 5000}, "unsupported_media_type"),
        ("/v1/detect", b"x", {"Content-Type": "image/png", "Content-Encoding": "x" * 5000}, "unsupported_content_encoding"),
    ]
    for path, body, headers, kind in cases:
        r = bad_server.request("POST", path, body, headers)
        error = r.json()["error"]
        assert error["kind"] == kind, error
        # the whole 100 KB value in the message before
        assert len(error["message"]) < 600 and "characters)" in error["message"], (kind, error["message"][:300])


def test_a_multipart_image_field_sent_as_text_says_to_send_the_file(bad_server, photos):
    body = b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nphoto.jpg\r\n--b--\r\n"
    r = bad_server.request("POST", "/v1/detect", body, {"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status == 400 and r.json()["error"]["kind"] == "missing_image", r.body
    # "no file part named 'image'" before, while the request did name one
    assert "'image' is text, not a file" in r.json()["error"]["message"] and "image=@" in r.json()["error"]["message"]
    cut = b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n" + photos[0].read_bytes()[:500]
    r = bad_server.request("POST", "/v1/detect", cut, {"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status == 400 and "ends before its closing boundary '--b--'" in r.json()["error"]["message"], r.body
    # the extended form some clients write for a file named 照片.png: "its part has no filename" before
    extended = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename*=utf-8''%E7%85%A7%E7%89%87.png\r\n"
                b"Content-Type: image/png\r\n\r\n" + photos[0].read_bytes() + b"\r\n--b--\r\n")
    r = bad_server.request("POST", "/v1/detect", extended, {"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status == 400 and "filename*=" in r.json()["error"]["message"], r.body
    named = extended.replace(b"filename*=utf-8''%E7%85%A7%E7%89%87.png", 'filename="照片.png"'.encode())
    assert bad_server.request("POST", "/v1/detect", named, {"Content-Type": "multipart/form-data; boundary=b"}).status == 200
    quoted, ctype = as_file(photos[0].read_bytes())
    ctype["Content-Type"] = ctype["Content-Type"].replace("boundary=", 'boundary="') + '"'
    assert bad_server.request("POST", "/v1/detect", quoted, ctype).status == 200


def test_a_multipart_epilogue_is_ignored_within_the_body_limit_and_a_body_without_its_closing_boundary_is_refused(
        bad_server, photos):
    body, headers = as_file(photos[0].read_bytes())
    closing = b"--" + headers["Content-Type"].split("boundary=")[1].encode() + b"--"
    for epilogue in (b"\r\n" * 300, b"an epilogue, which RFC 2046 says to ignore\r\n" * 100):
        r = bad_server.request("POST", "/v1/detect", body + epilogue, headers)
        # 400 bad_multipart "ends before its closing boundary" before, for any epilogue over 256 bytes
        assert r.status == 200 and r.json()["objects"], r.body
    r = bad_server.request("POST", "/v1/detect", body + b"\r\n" * 2**19, headers)  # 1 MiB of it: past --max-body-mb 1
    assert r.status == 413 and r.json()["error"]["kind"] == "body_too_large", r.body
    opened = body[:body.rindex(b"\r\n" + closing)]
    # the closing boundary's text with no line end before it is part of the photo's bytes: 200 before, the photo
    # with that text after it decoded as if the body were whole
    for cut in (opened, opened + b"\r\n" * 300, opened + b"\r\nx" + closing + b"\r\n"):
        r = bad_server.request("POST", "/v1/detect", cut, headers)
        assert r.status == 400 and "ends before its closing boundary" in r.json()["error"]["message"], r.body


def test_a_photo_whose_exif_holds_a_tag_of_the_wrong_type_is_answered_upright(bad_server):
    body, headers = as_file(jpeg_turned_with_a_make_tag_of_the_wrong_type())
    r = bad_server.request("POST", "/v1/detect", body, headers)
    # a 500 internal_error before: Pillow's exif_transpose writes the EXIF block anew and fails on the tag it cannot
    # write (AttributeError here; struct.error and TypeError for other tags), while the pixels and the turn are sound
    assert r.status == 200, r.body
    assert (r.json()["width"], r.json()["height"]) == (48, 64)


@pytest.mark.parametrize("block", sorted(UNPARSABLE_EXIF))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_photo_whose_exif_block_cannot_be_parsed_is_answered_as_stored(bad_server, photos, fmt, block):
    source = Image.open(photos[0]).convert("RGB")
    clean = photo_with_an_unparsable_exif_block(source, fmt, b"")
    damaged = photo_with_an_unparsable_exif_block(source, fmt, UNPARSABLE_EXIF[block])
    answers = [bad_server.request("POST", "/v1/detect", *as_file(data)) for data in (clean, damaged)]
    # a JPEG's was a 500 internal_error (SyntaxError, struct.error): Pillow's JPEG opener takes such a block for no
    # EXIF, and the server's copy of the pixels parsed it again; a PNG's and a WebP's a 400 corrupt_image, their pixels
    # sound. `bbuvl predict` reads the JPEG as stored (and stopped at its first tile): the server answers it the same
    assert [r.status for r in answers] == [200, 200], answers[1].body
    assert answers[1].json()["objects"] == answers[0].json()["objects"]
    assert answers[1].json()["orientation"] == 1


def test_a_body_over_the_limit_that_waits_for_100_continue_is_refused_before_it_is_sent(bad_server, photos):
    import socket

    head = (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bad_server.key}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {(1 << 20) + 1024}\r\nExpect: 100-continue\r\n\r\n").encode()
    with socket.create_connection((bad_server.host, bad_server.port), timeout=10) as s:
        s.sendall(head)  # and nothing more: curl sends the body once the server says "100 Continue", or after a second
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(65536)
    # "HTTP/1.1 100 Continue" before: the server asked for a megabyte it then read away to answer 413
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert bad_server.detect_file(photos[0]).status == 200
