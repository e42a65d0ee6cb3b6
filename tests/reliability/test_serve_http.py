"""`python -m engine.serve` as a client sees it: a real uvicorn on a free 127.0.0.1 port, started
and stopped by the tests (bounded in time), serving a run saved by the app and its export zip.

Each endpoint; every bad input of issue 14 answered with a 4xx and {"error": sentence} while the
server stays up; 200 concurrent requests all answered, in fewer forward passes; predictions equal
the Explorer's; /classify-url against a local HTTP server (an image, redirects to refused addresses,
an endless body).
"""
from __future__ import annotations

import http.client
import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import ARTIFACTS, free_port, stop
from tests.pages.test_explore import make_fake_run

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0    # seconds for the server to answer /health (imports torch on a busy machine)


# ------------------------------------------------------------------------------------ helpers


def image_bytes(seed: int, fmt: str = "PNG", w: int = 48, h: int = 36) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height pixels: a decompression bomb."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def multipart(fields: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body of (name, data, filename or None for a text field)."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, data, filename in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        ctype = "Content-Type: application/octet-stream\r\n" if filename else ""
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n{ctype}\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(base: str, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, chunked: bool = False) -> tuple[int, dict]:
    """One HTTP request; (status, JSON body). A server that cuts the upload short still gets its
    answer read."""
    conn = http.client.HTTPConnection(base.split("//", 1)[1], timeout=60)
    try:
        conn.putrequest(method, path)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None and not chunked:
            conn.putheader("Content-Length", str(len(body)))
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            if chunked and body is not None:
                for i in range(0, len(body), 1 << 16):
                    piece = body[i:i + (1 << 16)]
                    conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                conn.send(b"0\r\n\r\n")
            elif body:
                conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def predict(base: str, data: bytes, *, raw: bool = False) -> tuple[int, dict]:
    if raw:
        return request(base, "POST", "/predict", data, {"Content-Type": "image/png"})
    body, ctype = multipart([("file", data, "photo.png")])
    return request(base, "POST", "/predict", body, {"Content-Type": ctype})


def start_service(args: list[str], env_extra: dict | None = None) -> tuple[str, subprocess.Popen]:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    log = open(ARTIFACTS / f"serve-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "engine.serve", *args, "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"engine.serve exited with {proc.returncode}; see {log.name}")
        try:
            if request(base, "GET", "/health")[0] == 200:
                return base, proc
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise TimeoutError(f"engine.serve did not answer within {START_TIMEOUT:.0f} s")


def assert_sentence(status: int, body: dict, expected_status: int, phrase: str) -> None:
    assert status == expected_status, body
    assert list(body) == ["error"], body
    text = body["error"]
    assert phrase.lower() in text.lower(), text
    assert text.rstrip().endswith((".", ")")) and "Traceback" not in text and 'File "' not in text


# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A run saved by the app (the Explorer's test run) and its export zip."""
    data = tmp_path_factory.mktemp("dllab-serve")
    mp = pytest.MonkeyPatch()
    mp.setenv("DLLAB_DATA", str(data))
    try:
        run_id, folder = make_fake_run(data)
        from engine.export import run_zip
        from engine.runs import load_run
        run = load_run(run_id)
        zip_path = data / "export.zip"
        zip_path.write_bytes(run_zip(run))
        # What the Explorer's Predict tab computes: ui.explore_predict calls Checkpoint.predict.
        explorer = run.load_model()
        yield {"run": run, "data": data, "zip": zip_path, "explorer": explorer}
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def service(stored):
    """engine.serve --run ID, allowed to fetch from 127.0.0.1 for the classify-url tests."""
    base, proc = start_service(["--run", stored["run"].info.id, "--allow-host", "127.0.0.1",
                                "--max-wait-ms", "10", "--fetch-timeout", "5"],
                               {"DLLAB_DATA": str(stored["data"])})
    try:
        yield base, proc
    finally:
        stop(proc)


def expected_probs(stored, data: bytes) -> np.ndarray:
    from engine.images import load_image
    return stored["explorer"].predict(load_image(data), device="cpu")[2]


def assert_same_as_explorer(stored, data: bytes, body: dict) -> None:
    classes = stored["run"].classes
    want = expected_probs(stored, data)
    got = {p["class"]: p["p"] for p in body["probabilities"]}
    assert sorted(got) == sorted(classes)
    np.testing.assert_allclose([got[c] for c in classes], want, atol=1e-5, rtol=0)
    ps = [p["p"] for p in body["probabilities"]]
    assert ps == sorted(ps, reverse=True)
    assert body["prediction"] == classes[int(np.argmax(want))]
    assert body["time_ms"] > 0


# -------------------------------------------------------------------------------------- tests


def test_health_and_model_describe_the_run(service, stored):
    base, _ = service
    status, health = request(base, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["arch"] == "simple_cnn"
    status, model = request(base, "GET", "/model")
    run = stored["run"]
    assert status == 200
    assert model["classes"] == run.classes and model["arch"] == "simple_cnn" and model["size"] == 16
    assert model["run_id"] == run.info.id and model["data"] == "shapes"
    assert model["source"] == f"run {run.info.id}"   # never a folder of the server's disk
    meta = stored["explorer"].meta
    assert model["normalisation"]["mean"] == meta["mean"] and model["normalisation"]["std"] == meta["std"]
    assert set(model["metrics"]) >= {"accuracy", "error_rate"}
    assert model["serving"]["max_batch"] == 32 and model["serving"]["max_bytes"] == 10_000_000
    status, page = request(base, "GET", "/openapi.json")
    assert status == 200 and "/predict" in page["paths"] and "/classify-url" in page["paths"]


def test_predictions_equal_the_explorers_as_upload_and_raw_body(service, stored):
    base, _ = service
    run = stored["run"]
    samples = [Path(p).read_bytes() for p, _ in run.items[:4]]
    samples += [image_bytes(1, "JPEG", 640, 480), image_bytes(2, "WEBP", 30, 90)]
    for data in samples:
        for raw in (False, True):
            status, body = predict(base, data, raw=raw)
            assert status == 200, body
            assert_same_as_explorer(stored, data, body)


BAD_INPUTS = {
    "text": (b"just some words, not pixels\n", 400, "not an image"),
    "html": (b"<!doctype html><html><body>404</body></html>", 400, "HTML"),
    "truncated": (image_bytes(3, "JPEG", 200, 150)[:1500], 400, "cannot be decoded"),
    "bomb": (png_declaring(20000, 20000), 400, "decompression bomb"),
    "bomb in pillow's warning range": (png_declaring(10000, 10000), 400, "megapixel"),
    "empty": (b"", 400, "empty"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', 400, "SVG"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
@pytest.mark.parametrize("raw", [False, True], ids=["upload", "raw"])
def test_bad_images_get_a_sentence_not_a_traceback(service, name, raw):
    base, proc = service
    data, status, phrase = BAD_INPUTS[name]
    assert_sentence(*predict(base, data, raw=raw), status, phrase)
    assert proc.poll() is None


def test_over_the_size_cap_is_refused_whether_declared_or_streamed(service):
    base, proc = service
    big = image_bytes(4) + b"\0" * 10_000_001
    assert_sentence(*request(base, "POST", "/predict", big, {"Content-Type": "image/png"}),
                    413, "10 MB limit")
    assert_sentence(*request(base, "POST", "/predict", big, {"Content-Type": "image/png"},
                             chunked=True), 413, "10 MB limit")
    body, ctype = multipart([("file", big, "big.png")])
    assert_sentence(*request(base, "POST", "/predict", body, {"Content-Type": ctype}), 413, "10 MB")
    assert proc.poll() is None and request(base, "GET", "/health")[0] == 200


def test_forms_and_requests_that_are_not_one_image(service):
    base, proc = service
    png = image_bytes(5)
    cases = [
        (multipart([("image", png, "a.png")]), 400, "Unknown form field 'image'"),
        (multipart([("file", png, "a.png"), ("note", b"hi", None)]), 400, "Unknown form field 'note'"),
        (multipart([("file", png, "a.png"), ("file", png, "b.png")]), 400, "one image per request"),
        (multipart([("file", b"not a file", None)]), 400, "must be a file upload"),
        (multipart([]), 400, "no field `file`"),
    ]
    for (body, ctype), status, phrase in cases:
        assert_sentence(*request(base, "POST", "/predict", body, {"Content-Type": ctype}), status, phrase)
    assert_sentence(*request(base, "POST", "/predict", b"--x\r\ngarbage",
                             {"Content-Type": "multipart/form-data; boundary=x"}), 400, "field `file`")
    assert_sentence(*request(base, "POST", "/predict", b"garbage",
                             {"Content-Type": "multipart/form-data"}), 400, "multipart")
    assert_sentence(*request(base, "POST", "/predict?top=3", png, {"Content-Type": "image/png"}),
                    400, "Unknown query parameter 'top'")
    assert_sentence(*request(base, "GET", "/classify-url?link=x"), 400, "Unknown query parameter")
    assert_sentence(*request(base, "GET", "/classify-url"), 400, "Give the image's address")
    assert_sentence(*request(base, "GET", "/nowhere"), 404, "endpoints are")
    assert_sentence(*request(base, "GET", "/predict"), 405, "not allowed")
    assert_sentence(*request(base, "DELETE", "/model"), 405, "not allowed")
    assert proc.poll() is None and request(base, "GET", "/health")[0] == 200


def test_200_concurrent_requests_are_all_answered_in_fewer_forward_passes(service, stored):
    base, proc = service
    _, before = request(base, "GET", "/health")
    images = [image_bytes(100 + i, "PNG", 40 + i % 7, 30 + i % 5) for i in range(20)]
    want = [expected_probs(stored, d) for d in images]
    start = threading.Barrier(200)
    classes = stored["run"].classes

    def one(i: int) -> tuple[int, dict, int]:
        start.wait(timeout=60)
        status, body = predict(base, images[i % 20], raw=bool(i % 2))
        return status, body, i % 20

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(one, range(200)))
    assert time.monotonic() - t0 < 120
    assert [r[0] for r in results] == [200] * 200, [r[1] for r in results if r[0] != 200][:3]
    for _, body, k in results:
        got = {p["class"]: p["p"] for p in body["probabilities"]}
        np.testing.assert_allclose([got[c] for c in classes], want[k], atol=1e-5, rtol=0)
    _, after = request(base, "GET", "/health")
    requests = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    assert requests == 200
    assert batches < 200 and after["largest_batch"] > 1
    assert proc.poll() is None


# ------------------------------------------------------------------------------- classify-url


@pytest.fixture(scope="module")
def web(service):
    """A local web server: an image, redirects to refused addresses, an endless body, a page."""
    png = image_bytes(7, "PNG", 50, 40)
    finished = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, body: bytes, ctype: str, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            port = self.server.server_address[1]
            try:
                if self.path == "/good.png":
                    self._send(png, "image/png")
                elif self.path == "/redirect-good":
                    self._redirect("/good.png")
                elif self.path == "/redirect-localhost":
                    self._redirect(f"http://localhost:{port}/good.png")
                elif self.path == "/redirect-metadata":
                    self._redirect("http://169.254.169.254/latest/meta-data/")
                elif self.path == "/endless":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    chunk = b"\x89PNG" + b"\0" * 65532
                    while not finished.is_set():
                        self.wfile.write(chunk)
                elif self.path == "/page.html":
                    self._send(b"<!doctype html><html><body>hi</body></html>", "image/png")
                else:
                    self._send(b"?", "text/plain", 404)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", png
    finally:
        finished.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def classify(base: str, url: str) -> tuple[int, dict]:
    return request(base, "GET", "/classify-url?url=" + quote(url, safe=""))


def test_classify_url_fetches_an_image_and_predicts_like_the_explorer(service, web, stored):
    base, _ = service
    site, png = web
    for path in ("/good.png", "/redirect-good"):
        status, body = classify(base, site + path)
        assert status == 200, body
        assert_same_as_explorer(stored, png, body)


def test_classify_url_refuses_what_the_downloader_refuses(service, web):
    base, proc = service
    site, _ = web
    port = site.rsplit(":", 1)[1]
    assert_sentence(*classify(base, site + "/redirect-localhost"), 400, "loopback")
    assert_sentence(*classify(base, site + "/redirect-metadata"), 400, "link-local")
    assert_sentence(*classify(base, f"http://localhost:{port}/good.png"), 400, "loopback")
    assert_sentence(*classify(base, "file:///etc/passwd"), 400, "Only http and https")
    assert_sentence(*classify(base, "http://2130706433/x.png"), 400, "written as a number")
    t0 = time.monotonic()
    assert_sentence(*classify(base, site + "/endless"), 422, "10 MB limit")
    assert time.monotonic() - t0 < 30
    assert_sentence(*classify(base, site + "/missing"), 422, "HTTP 404")
    assert_sentence(*classify(base, site + "/page.html"), 400, "HTML")
    assert proc.poll() is None and request(base, "GET", "/health")[0] == 200


# ------------------------------------------------------------------------------- the export zip


def test_the_export_zip_serves_the_same_model(stored):
    base, proc = start_service(["--model", str(stored["zip"]), "--max-batch", "1"])
    try:
        status, model = request(base, "GET", "/model")
        assert status == 200 and model["run_id"] == stored["run"].info.id
        assert model["source"] == "export.zip (export zip)"
        assert model["serving"]["max_batch"] == 1
        data = image_bytes(9, "JPEG", 100, 80)
        status, body = predict(base, data)
        assert status == 200
        assert_same_as_explorer(stored, data, body)
    finally:
        stop(proc)
    assert proc.returncode is not None
