"""The inference service (`python -m engine.serve`) under load: requests per second and p50/p95
latency at 1, 8 and 32 clients at once, with micro-batching (the defaults: up to 32 images within
5 ms in one forward pass) against the lesson's way (`--max-batch 1`: one forward pass per request),
both measured in the same run, rounds interleaved so that a busy machine slows both alike. The
default batch is 32 images at 16 px but 4 at 224 px on a CPU; a third mode shows 32 at 224 px.

Models: simple_cnn at 16 px (10 classes) and efficientnet_lite0 at 224 px (37 classes), random
weights (speed does not depend on them). Each request POSTs one 640×480 JPEG as the raw body, so
every request is decoded, resized and normalised on the server as the Explorer does it. Clients are
threads of this process on keep-alive connections; they share the machine's cores with the server.

Run: .venv/bin/python -m bench.bench_serve
"""
from __future__ import annotations

import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import print_rows, row

ROOT = Path(__file__).resolve().parents[1]
CASES = (("simple_cnn", 16, 10, 2.0), ("efficientnet_lite0", 224, 37, 5.0))  # arch, px, classes, s
CONCURRENCY = (1, 8, 32)
MODES = (("one forward per request", ["--max-batch", "1"]), ("batched", []))
# At 224 px the default batch on a CPU is 4 images (engine.inference.CPU_BATCH_PIXELS); this mode
# shows why: the same service allowed 32 images a batch.
BIG_BATCH = ("batched, up to 32 a batch", ["--max-batch", "32"])


def _photo() -> bytes:
    """A 640×480 JPEG with a photo's smooth gradients and some noise (~60 kB)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x / 640 * 255, y / 480 * 255, (x + y) / 1120 * 255], -1)
    img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=88)
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(model: Path, extra: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "engine.serve", "--model", str(model),
                             "--port", str(port), *extra], cwd=ROOT, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"engine.serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("engine.serve did not start within 120 s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


class _Client:
    """One keep-alive connection that sends a prepared request and reads the answer: a client this
    light leaves the cores to the server."""

    def __init__(self, port: int, request: bytes):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.request = request
        self.buf = b""

    def call(self) -> int:
        self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(self.buf) < length:
            self.buf += self._recv()
        self.buf = self.buf[length:]
        return status

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


def load(port: int, photo: bytes, clients: int, seconds: float) -> dict:
    """`clients` threads send requests back to back for `seconds`; requests/s and latencies."""
    request = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: image/jpeg\r\n"
               f"Content-Length: {len(photo)}\r\n\r\n").encode() + photo
    conns = [_Client(port, request) for _ in range(clients)]
    for c in conns:             # warm: every connection open and the model run once
        assert c.call() == 200
    latencies: list[list[float]] = [[] for _ in conns]
    errors = [0]
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def work(i: int) -> None:
        start.wait()
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            if conns[i].call() != 200:
                errors[0] += 1
            latencies[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    every = sorted(x for per in latencies for x in per)
    return {"rps": len(every) / wall, "p50": every[len(every) // 2] * 1000,
            "p95": every[min(len(every) - 1, int(len(every) * 0.95))] * 1000, "n": len(every),
            "errors": errors[0]}


def run(rounds: int = 5, scale: float = 1.0) -> list[dict]:
    import torch

    from engine.inference import CPU_BATCH_PIXELS
    from engine.models import IMAGENET_MEAN, IMAGENET_STD, create_model, save_checkpoint

    photo = _photo()
    rows: list[dict] = []
    load_avg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        for arch, size, n_classes, seconds in CASES:
            torch.manual_seed(0)
            model = create_model(arch, n_classes, pretrained=False).eval()
            ckpt = save_checkpoint(Path(tmp) / f"{arch}.safetensors", model,
                                   {"classes": [f"c{i}" for i in range(n_classes)], "size": size,
                                    "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
            modes = MODES + ((BIG_BATCH,) if size * size * 32 > CPU_BATCH_PIXELS else ())
            servers = {name: _start(ckpt, extra, Path(tmp) / f"{arch}-{i}.log")
                       for i, (name, extra) in enumerate(modes)}
            results: dict[tuple[str, int], list[dict]] = {}
            try:
                for r in range(rounds):
                    for clients in CONCURRENCY:
                        # Interleaved, in alternating order: the same machine state for every mode.
                        for name, _extra in (modes if r % 2 == 0 else modes[::-1]):
                            res = load(servers[name][1], photo, clients, seconds * scale)
                            results.setdefault((name, clients), []).append(res)
            finally:
                for proc, _port in servers.values():
                    _stop(proc)
            rows += _rows(arch, size, results)
    rows.append(row("machine load average (1 min) at the start", load_avg, "",
                    note=f"{os.cpu_count()} cores; clients share them with the server"))
    return rows


def _median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def _rows(arch: str, size: int, results: dict) -> list[dict]:
    out = []
    tag = f"{arch} {size} px"
    for clients in CONCURRENCY:
        base = results[("one forward per request", clients)]
        fast = results[("batched", clients)]
        n = sum(r["n"] for r in fast)
        out.append(row(f"{tag}, {clients} client(s), one forward per request: requests/s",
                       _median(base, "rps"), "req/s", note=f"p50 {_median(base, 'p50'):.1f} ms, "
                       f"p95 {_median(base, 'p95'):.1f} ms"))
        out.append(row(f"{tag}, {clients} client(s), batched: requests/s", _median(fast, "rps"), "req/s",
                       baseline="one forward per request", ratio=_median(fast, "rps") / _median(base, "rps"),
                       note=f"p50 {_median(fast, 'p50'):.1f} ms, p95 {_median(fast, 'p95'):.1f} ms; "
                            f"{n} requests, {sum(r['errors'] for r in fast + base)} errors"
                            + ("; with 1 client both run the same path (a lone request never "
                               "waits), so this ratio is the noise" if clients == 1 else "")))
        if (BIG_BATCH[0], clients) in results:
            big = results[(BIG_BATCH[0], clients)]
            out.append(row(f"{tag}, {clients} client(s), batched up to 32: requests/s",
                           _median(big, "rps"), "req/s", baseline="one forward per request",
                           ratio=_median(big, "rps") / _median(base, "rps"),
                           note=f"p50 {_median(big, 'p50'):.1f} ms, p95 {_median(big, 'p95'):.1f} ms"))
    single = _median(results[("batched", 1)], "p50")
    p95 = _median(results[("batched", 32)], "p95")
    speed = _median(results[("batched", 32)], "rps") / _median(results[("one forward per request", 32)], "rps")
    out.append(row(f"GOAL {tag}: batched ÷ one-per-request throughput, 32 clients", speed, "×",
                   target="≥ 2×", note="met" if speed >= 2 else "not met"))
    out.append(row(f"GOAL {tag}: batched p95 at 32 clients ÷ single-request latency", p95 / single, "×",
                   target="≤ 4×", note=f"{p95:.1f} ms ÷ {single:.1f} ms (p50, 1 client); "
                                       + ("met" if p95 / single <= 4 else "not met")
                                       + "; 32 clients back to back wait 32 ÷ (requests/s) on "
                                         "average (Little's law), so ≤ 4× needs 8× the 1-client rate"))
    return out


if __name__ == "__main__":
    print_rows(run(rounds=int(os.environ.get("BENCH_ROUNDS", "5")),
                   scale=float(os.environ.get("BENCH_SCALE", "1"))))
