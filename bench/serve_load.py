"""`bbuvl serve` under load: dynamic batching against one image per forward pass, on localhost only.

    .venv/bin/python bench/serve_load.py [--clients 8] [--seconds 20] [--max-requests 2000] [--mode head]
                                         [--checkpoint CKPT] [--max-batch 8] [--max-wait-ms 25]

Builds a tiny model and a one-step checkpoint (unless --checkpoint is given), then starts two servers as child
processes (`bbuvl serve`, so each one's memory is its own): one with `--max-batch N`, one with `--max-batch 1`.
N client threads post photos to one server at a time for a fixed time (and at most --max-requests), the two
servers alternating in rounds so that a change in the machine's other load hits both; every answer must be 200
or a deliberate 503. Prints requests/s of each and their ratio (from this one run), p50/p99 latency, lost
requests, the server's resident memory growth after warm-up, the mean batch size, and, for reference, what
batching buys the predictor alone (goal: ratio >= 1.5 with 8 clients on CPU, zero lost, growth < 50 MB).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from tiny_checkpoint import tiny_checkpoint

KEY = "bench-" + uuid.uuid4().hex


def rss_mb(pid: int) -> float:
    """Resident set size of process `pid` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def post(port: int, photo: bytes) -> int:
    """One POST /v1/detect with a raw PNG body; the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/v1/detect", photo, {"Content-Type": "image/png", "Authorization": f"Bearer {KEY}"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def mean_batch(port: int) -> float:
    """Images per forward pass over the server's life, from its /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {KEY}"})
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    value = lambda name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))  # noqa: E731
    return value("bbuvl_batch_size_sum") / max(value("bbuvl_batch_size_count"), 1.0)


def start_server(ckpt: Path, mode: str, max_batch: int, max_wait_ms: float, log: Path) -> tuple[subprocess.Popen, int]:
    """`bbuvl serve` on a free port, once it answers."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "BBUVL_API_KEYS": KEY, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "bbuvl.cli", "serve", "-c", str(ckpt), "--port", "0", "--mode", mode, "--device", "cpu",
           "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--queue-size", "64", "--log-level", "warning"]
    out = log.open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start:\n{log.read_text()}")
        m = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)/", log.read_text())
        if m:
            return proc, int(m.group(1))
        time.sleep(0.2)


class Tally:
    """Statuses, latencies and transport failures of one server over all its load rounds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.failures: list[str] = []
        self.wall = 0.0

    def summary(self) -> dict:
        """ok / 503 / lost counts, requests/s, p50 and p99 latency (ms)."""
        lat = sorted(self.latencies)
        pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
        lost = len(self.failures) + sum(n for s, n in self.statuses.items() if s not in (200, 503))
        ok = self.statuses.get(200, 0)
        return {"ok": ok, "busy": self.statuses.get(503, 0), "lost": lost, "failures": self.failures[:3],
                "rps": ok / max(self.wall, 1e-9), "p50": pick(0.5), "p99": pick(0.99)}


def load(port: int, photos: list[bytes], clients: int, seconds: float, max_requests: int, tally: Tally) -> None:
    """`clients` threads posting for `seconds` (at most `max_requests` in all), counted into `tally`."""
    sent = [0]
    stop_at = time.monotonic() + seconds

    def client(i: int) -> None:
        k = i
        while time.monotonic() < stop_at:
            with tally.lock:
                if sent[0] >= max_requests:
                    return
                sent[0] += 1
            t = time.perf_counter()
            try:
                status = post(port, photos[k % len(photos)])
            except OSError as e:
                with tally.lock:
                    tally.failures.append(f"{type(e).__name__}: {e}")
                continue
            with tally.lock:
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
                if status == 200:
                    tally.latencies.append(time.perf_counter() - t)
            k += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tally.wall += time.perf_counter() - start


def predictor_ceiling(ckpt: Path, photos: list[bytes], mode: str, batch: int, seconds: float) -> float:
    """Images/s of the predictor alone, `batch` photos per call over 1 per call: what batching can buy at most."""
    import io

    from PIL import Image

    from bbuvl.infer.predictor import Predictor

    # torch's own thread count, as the servers get it (one per core unless OMP_NUM_THREADS says otherwise).
    predictor = Predictor.load(ckpt, device="cpu")
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in photos]
    rate = {}
    for size in (batch, 1, batch, 1):  # alternated, so a change in the machine's load hits both
        chunk = [images[i % len(images)] for i in range(size)]
        predictor.predict(chunk, mode=mode)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 4:
            predictor.predict(chunk, mode=mode)
            done += size
        rate[size] = rate.get(size, 0.0) + done / (time.perf_counter() - start)
    return rate[batch] / rate[1]


def main() -> None:
    """Run both servers, their load rounds alternated, and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0, help="load time per server")
    ap.add_argument("--rounds", type=int, default=4, help="alternations of the two servers (drift in the machine's load hits both)")
    ap.add_argument("--max-requests", type=int, default=2000, help="per server")
    ap.add_argument("--mode", default="head", choices=["head", "generate", "name"])
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=25.0)
    ap.add_argument("--checkpoint", type=Path, default=None, help="serve this checkpoint (default: build a tiny one)")
    ap.add_argument("--photo", type=Path, action="append", default=None, help="photo to post (repeatable)")
    args = ap.parse_args()
    # Refused before a checkpoint is built or a server started: a division by zero, or one server compared with itself.
    for name, least in (("clients", 1), ("rounds", 1), ("max_requests", args.rounds), ("max_batch", 2)):
        if getattr(args, name) < least:
            ap.error(f"--{name.replace('_', '-')} must be at least {least}, got {getattr(args, name)}")
    if not args.seconds > 0:
        ap.error(f"--seconds must be above 0, got {args.seconds:g}")
    for photo in args.photo or []:
        if not photo.is_file():
            ap.error(f"--photo {photo}: no such file")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.checkpoint is None:
            ckpt, paths = tiny_checkpoint(tmp)
        else:
            ckpt, paths = args.checkpoint, list(args.photo or [])
            if not paths:
                ap.error("--checkpoint needs at least one --photo")
        photos = [Path(p).read_bytes() for p in (args.photo or paths)]
        sizes = (args.max_batch, 1)
        servers = {mb: start_server(ckpt, args.mode, mb, args.max_wait_ms, tmp / f"serve_{mb}.log") for mb in sizes}
        results = {}
        try:
            tallies = {mb: Tally() for mb in sizes}
            before = {}
            for mb, (proc, port) in servers.items():
                load(port, photos, args.clients, 5.0, 40 * args.clients, Tally())  # warm-up: allocator settles at full batches
                before[mb] = rss_mb(proc.pid)
            trace: dict[int, list[float]] = {mb: [] for mb in sizes}
            for _ in range(args.rounds):
                for mb, (proc, port) in servers.items():
                    load(port, photos, args.clients, args.seconds / args.rounds, args.max_requests // args.rounds, tallies[mb])
                    trace[mb].append(rss_mb(proc.pid) - before[mb])
            for mb, (proc, port) in servers.items():
                results[mb] = {**tallies[mb].summary(), "rss_growth": rss_mb(proc.pid) - before[mb], "mean_batch": mean_batch(port)}
                proc.send_signal(signal.SIGTERM)
            for mb, (proc, _) in servers.items():
                results[mb]["exit"] = proc.wait(60)
        finally:
            for proc, _ in servers.values():
                if proc.poll() is None:
                    proc.kill()
        ceiling = predictor_ceiling(ckpt, photos, args.mode, args.max_batch, 8.0)
    print(f"{args.clients} clients x {args.seconds:g} s per server in {args.rounds} alternated rounds, mode {args.mode}, "
          f"--max-wait-ms {args.max_wait_ms:g}")
    print(f"{'max_batch':>9} {'ok':>6} {'503':>5} {'lost':>5} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'rss +MB':>8} {'batch':>6} {'exit':>5}")
    for mb, r in results.items():
        print(f"{mb:9d} {r['ok']:6d} {r['busy']:5d} {r['lost']:5d} {r['rps']:7.2f} {r['p50']:8.1f} {r['p99']:8.1f} "
              f"{r['rss_growth']:+8.1f} {r['mean_batch']:6.2f} {r['exit']:5d}")
        print(f"{'':9} RSS growth after each round (MB): {' '.join(f'{g:+.1f}' for g in trace[mb])}")
        for f in r["failures"]:
            print(f"  failure: {f}")
    ratio = results[args.max_batch]["rps"] / max(results[1]["rps"], 1e-9)
    lost = sum(r["lost"] for r in results.values())
    growth = max(r["rss_growth"] for r in results.values())
    clean = all(r["exit"] == 0 for r in results.values())
    print(f"batching throughput ratio: {ratio:.2f}x (goal >= 1.5); the predictor alone, {args.max_batch} photos per call "
          f"vs 1: {ceiling:.2f}x")
    print(f"lost requests: {lost}; max RSS growth {growth:+.1f} MB (< 50); SIGTERM exits: {'all 0' if clean else 'NOT 0'}")
    print("PASS" if ratio >= 1.5 and lost == 0 and growth < 50 and clean else "FAIL")


if __name__ == "__main__":
    main()
