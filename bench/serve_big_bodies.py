"""What one large upload costs `bbuvl serve`: peak resident memory of the server process and time to its answer.

    .venv/bin/python bench/serve_big_bodies.py [--sizes 20 40 80] [--kinds multipart raw json] [--parallel 4]
                                               [--checkpoint CKPT] [-- EXTRA SERVE OPTIONS]

Builds a tiny one-step checkpoint (unless --checkpoint is given) and starts `bbuvl serve` as a child process
with the extra options given. For each size, a real 16320x12240 JPEG (a phone's 200 MP
mode) of that many MB (tests/serve/big_jpeg.py) is posted alone to a fresh server, once per kind of body (multipart as the page and
curl -F send it, a raw image/jpeg body, JSON base64), then --parallel at once as multipart. Before each post the
server's peak resident memory (VmHWM) is reset to what it holds (/proc/PID/clear_refs); printed: the peak above that,
the seconds from the first byte sent to the last, from the last byte sent to the answer's first byte, and the status.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # the repository root: tests/serve/big_jpeg.py
from tiny_checkpoint import tiny_checkpoint  # noqa: E402

from tests.serve.big_jpeg import big_jpeg  # noqa: E402

KEY = "bench-" + uuid.uuid4().hex


def status_kib(pid: int, field: str) -> int:
    """A /proc/PID/status field in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def request(port: int, kind: str, photo: bytes) -> bytes:
    """The bytes of one POST /v1/detect carrying `photo` as a `kind` body."""
    if kind == "multipart":
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"phone.jpg\"\r\n"
                "Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
        ctype = f"multipart/form-data; boundary={boundary}"
    elif kind == "raw":
        body, ctype = photo, "image/jpeg"
    else:
        body, ctype = json.dumps({"image": base64.b64encode(photo).decode()}).encode(), "application/json"
    head = (f"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return head + body


def send(port: int, data: bytes, out: dict) -> None:
    """Send `data`, read the answer; `out` gets the upload's seconds, the seconds to the first answer byte after it,
    the status and the answer's error kind (if any)."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):  # answered (413) before the body was all sent
            pass
        t1 = time.perf_counter()
        answer, first = b"", None
        try:
            while chunk := s.recv(65536):
                first = first or time.perf_counter()
                answer += chunk
        except ConnectionResetError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1.1 (\d+)", head)
    kind = ""
    try:
        kind = json.loads(body).get("error", {}).get("kind", "")
    except ValueError:
        pass
    out.update(upload_s=t1 - t0, ttfb_s=(first or t1) - t1, status=int(m.group(1)) if m else 0, kind=kind)


def measure(pid: int, port: int, requests: list[bytes]) -> tuple[float, list[dict]]:
    """Post `requests` at once; the server's peak resident memory above what it held before (MiB) and each result."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = status_kib(pid, "VmRSS")
    results: list[dict] = [{} for _ in requests]
    threads = [threading.Thread(target=send, args=(port, r, out)) for r, out in zip(requests, results)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (status_kib(pid, "VmHWM") - before) / 1024, results


def start(ckpt: Path, extra: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    """`bbuvl serve` on a free port once it listens, warmed up by one small photo (the model's first pass, its threads)."""
    env = {**os.environ, "BBUVL_API_KEYS": KEY, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bbuvl.cli", "serve", "-c", str(ckpt), "--port", "0",
                                 "--device", "cpu", "--mode", "head", "--log-level", "warning", *extra],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    port = None
    while port is None:
        if proc.poll() is not None:
            raise SystemExit(f"the server did not start:\n{log.read_text()}")
        m = re.search(r"on http://127\.0\.0\.1:(\d+)/", log.read_text())
        port = int(m.group(1)) if m else None
        time.sleep(0.2)
    measure(proc.pid, port, [request(port, "raw", big_jpeg((1600, 1200)))])
    return proc, port


def main() -> None:
    """A fresh server for each row (memory a previous request freed would be reused unseen), a table of the rows."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[20, 40, 80], help="JPEG sizes in MB (10^6 bytes)")
    ap.add_argument("--kinds", nargs="+", default=["multipart", "raw", "json"], choices=["multipart", "raw", "json"])
    ap.add_argument("--parallel", type=int, default=4, help="multipart uploads at once after the single ones (0: none)")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("serve_args", nargs="*", help="extra `bbuvl serve` options, after --")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ckpt = args.checkpoint or tiny_checkpoint(tmp)[0]
        print(f"bbuvl serve {' '.join(args.serve_args)}")
        print("| JPEG | body | at once | idle RSS | peak RSS above idle | upload | to first byte | status |")
        print("|---|---|---|---|---|---|---|---|")
        for size in args.sizes:
            photo = big_jpeg(nbytes=int(size * 1e6))
            runs = [(kind, 1) for kind in args.kinds] + ([("multipart", args.parallel)] if args.parallel else [])
            for kind, n in runs:
                proc, port = start(ckpt, args.serve_args, tmp / "serve.log")
                try:
                    idle = status_kib(proc.pid, "VmRSS") / 1024
                    data = request(port, kind, photo)
                    body_mb = (len(data) - data.index(b"\r\n\r\n") - 4) / 1e6
                    peak, results = measure(proc.pid, port, [data] * n)
                finally:
                    proc.terminate()
                    proc.wait(60)
                slowest = max(results, key=lambda r: r["ttfb_s"])
                statuses = ",".join(sorted({f"{r['status']}{' ' + r['kind'] if r['kind'] else ''}" for r in results}))
                print(f"| {len(photo) / 1e6:.0f} MB | {kind} {body_mb:.0f} MB | {n} | {idle:.0f} MiB | {peak:.0f} MiB | "
                      f"{slowest['upload_s']:.2f} s | {slowest['ttfb_s']:.2f} s | {statuses} |", flush=True)


if __name__ == "__main__":
    main()
