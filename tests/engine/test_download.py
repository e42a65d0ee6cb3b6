"""download_images against a local HTTP server on 127.0.0.1, started and stopped by a fixture.

The server is allow-listed by its literal address for the cases that should succeed; everything
that must be refused is refused by the address checks, before any connection.
"""
from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import download
from engine.download import URLRefused, check_url, download_images

ALLOW = ["127.0.0.1"]


def _image_bytes(fmt: str, colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), colour, np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


PNG = _image_bytes("PNG")
JPEG = _image_bytes("JPEG", (10, 120, 240))


@pytest.fixture(scope="module")
def server():
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):   # keep test output quiet
            pass

        def _send(self, body: bytes, ctype: str, status: int = 200):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, location: str):
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            port = self.server.server_address[1]
            path = self.path.split("?", 1)[0]
            try:
                if path == "/good.png":
                    self._send(PNG, "image/png")
                elif path == "/good.jpg":
                    self._send(JPEG, "image/jpeg")
                elif path == "/copy.png":
                    self._send(PNG, "image/png")
                elif path == "/text.txt":
                    self._send(b"just some words, not pixels\n", "text/plain")
                elif path == "/page.html":
                    # Served as an image type: the body is what is judged, never the header.
                    self._send(b"<!doctype html><html><body>Not found</body></html>", "image/png")
                elif path == "/missing":
                    self._send(b"nope", "text/plain", status=404)
                elif path == "/slow":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(PNG)))
                    self.end_headers()
                    for b in PNG:   # one byte a second
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        if stop.wait(1.0):
                            return
                elif path == "/slow-headers":
                    # Each read gets a byte well within any socket timeout; only a wall clock helps.
                    for b in b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\n\r\n":
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        if stop.wait(0.5):
                            return
                    self.wfile.write(PNG)
                elif path == "/endless":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    chunk = b"\x89PNG" + b"\0" * 65532
                    while not stop.is_set():
                        self.wfile.write(chunk)
                elif path == "/redirect-good":
                    self._redirect("/good.jpg")
                elif path == "/redirect-metadata":
                    self._redirect("http://169.254.169.254/latest/meta-data/")
                elif path == "/redirect-localhost":
                    self._redirect(f"http://localhost:{port}/good.png")
                elif path == "/redirect-loop":
                    self._redirect("/redirect-loop")
                else:
                    self._send(b"?", "text/plain", status=404)
            except (BrokenPipeError, ConnectionResetError):
                pass   # the client gave up, as it should

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_each_url_is_saved_or_refused_with_its_reason(server, tmp_path):
    base = server
    port = base.rsplit(":", 1)[1]
    urls = {
        "png": f"{base}/good.png",
        "jpg": f"{base}/good.jpg",
        "redirect_good": f"{base}/redirect-good",
        "text": f"{base}/text.txt",
        "html": f"{base}/page.html",
        "missing": f"{base}/missing",
        "slow": f"{base}/slow",
        "slow_headers": f"{base}/slow-headers",
        "endless": f"{base}/endless",
        "redirect_metadata": f"{base}/redirect-metadata",
        "redirect_localhost": f"{base}/redirect-localhost",
        "localhost": f"http://localhost:{port}/good.png",
        "loop": f"{base}/redirect-loop",
    }
    dest = tmp_path / "teddy"
    seen = []
    start = time.monotonic()
    report = download_images(list(urls.values()), dest, timeout=1.5, max_bytes=200_000, workers=12,
                             allow_hosts=ALLOW, progress=lambda f, m: seen.append(f))
    elapsed = time.monotonic() - start
    reasons = dict(report.failed)

    # Two distinct images saved (the redirect reaches good.jpg again, a duplicate of the same bytes).
    assert report.n_saved == 2
    assert sorted(p.suffix for p in report.saved) == [".jpg", ".png"]
    assert {p.read_bytes() for p in report.saved} == {PNG, JPEG}
    assert all(p.parent == dest and len(p.stem) == 16 for p in report.saved)
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in report.saved)  # no .part
    assert report.n_failed == len(urls) - 2

    assert "already saved" in reasons[urls["redirect_good"]] or \
        "already saved" in reasons[urls["jpg"]]
    assert "looks like text" in reasons[urls["text"]]
    assert "HTML" in reasons[urls["html"]]
    assert "404" in reasons[urls["missing"]]
    assert "longer than 1.5 s" in reasons[urls["slow"]]
    assert "longer than 1.5 s" in reasons[urls["slow_headers"]]
    assert "limit" in reasons[urls["endless"]] and "MB" in reasons[urls["endless"]]
    assert "169.254.169.254" in reasons[urls["redirect_metadata"]]
    assert "link-local" in reasons[urls["redirect_metadata"]]
    assert "loopback" in reasons[urls["redirect_localhost"]]
    assert "localhost" in reasons[urls["localhost"]] and "loopback" in reasons[urls["localhost"]]
    assert "redirected more than" in reasons[urls["loop"]]

    # Per-URL wall-clock limit holds even though the slow server never stalls a single read.
    assert elapsed < 6.0
    assert seen and seen[-1] == pytest.approx(1.0)
    assert "2 images saved" in report.summary()


def test_batch_time_limit_stops_untried_urls(server, tmp_path):
    urls = [f"{server}/slow?{i}" for i in range(3)]
    start = time.monotonic()
    report = download_images(urls, tmp_path, timeout=5, batch_timeout=1.0, workers=1,
                             allow_hosts=ALLOW)
    assert time.monotonic() - start < 4.0
    assert report.n_saved == 0
    reasons = [r for _, r in report.failed]
    assert "longer than" in reasons[0]
    assert all("Not tried" in r for r in reasons[1:])


def test_500_urls_at_once_end_in_a_summary(server, tmp_path):
    """Case 19 of issue 8, the list size: 500 addresses in one go, half images (the same bytes, so
    one is kept) and half text, then 500 slow ones under a one-second limit for the whole list."""
    urls = [f"{server}/good.png?{i}" for i in range(250)] + [f"{server}/text.txt?{i}" for i in range(250)]
    start = time.monotonic()
    report = download_images(urls, tmp_path / "mixed", allow_hosts=ALLOW)
    assert time.monotonic() - start < 60
    assert (report.n_saved, report.n_failed) == (1, 499)
    assert report.summary().startswith("1 image saved, 499 failed")
    reasons = [r for _, r in report.failed]
    assert sum("already saved" in r for r in reasons) == 249
    assert sum("looks like text" in r for r in reasons) == 250

    start = time.monotonic()
    slow = download_images([f"{server}/slow?{i}" for i in range(500)], tmp_path / "slow",
                           timeout=30, batch_timeout=1.0, allow_hosts=ALLOW)
    assert time.monotonic() - start < 6
    assert (slow.n_saved, slow.n_failed) == (0, 500)
    assert sum("Not tried" in r for _, r in slow.failed) >= 500 - 8      # 8 workers were busy
    assert slow.summary().startswith("0 images saved, 500 failed")


def test_max_pics_takes_the_first_distinct_urls(server, tmp_path):
    urls = [f"{server}/good.png", f"{server}/good.png", "# a comment", "", f"{server}/good.jpg",
            f"{server}/text.txt"]
    report = download_images(urls, tmp_path, max_pics=2, allow_hosts=ALLOW)
    assert report.n_saved == 2 and report.n_failed == 0


@pytest.mark.parametrize("url, words", [
    ("http://2130706433/", "number"),
    ("http://0x7f000001/", "number"),
    ("http://0177.0.0.1/", "number"),
    ("http://127.1/", "number"),
    ("http://[::1]:8080/x.png", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://127.0.0.2/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://192.168.0.10/", "private"),
    ("http://169.254.169.254/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://localhost/", "loopback"),
    ("ftp://example.com/x.png", "Only http and https"),
    ("file:///etc/passwd", "Only http and https"),
    ("http://user:secret@example.com/", "user name or password"),
    ("http:///nohost", "no host"),
])
def test_refused_addresses(url, words):
    with pytest.raises(URLRefused) as err:
        check_url(url, allow_hosts=ALLOW)
    assert words in str(err.value)


def test_loopback_literal_is_refused_without_the_allow_list():
    """The tests allow 127.0.0.1 for their own server; the app allows nothing."""
    for url in ("http://127.0.0.1/x.png", "http://127.0.0.1:8501/_stcore/health"):
        with pytest.raises(URLRefused, match="loopback"):
            check_url(url)


def test_allow_list_names_hosts_exactly():
    assert check_url("http://127.0.0.1:9/x", allow_hosts=["127.0.0.1"]).ip == "127.0.0.1"
    assert check_url("http://[::1]:9/x", allow_hosts=["::1"]).ip == "::1"
    with pytest.raises(URLRefused):
        check_url("http://localhost:9/x", allow_hosts=["127.0.0.1"])


def test_a_name_with_any_private_answer_is_refused(monkeypatch):
    def fake_getaddrinfo(host, port, *args, **kwargs):
        return [(2, 1, 6, "", ("93.184.216.34", port)), (2, 1, 6, "", ("10.0.0.5", port))]
    monkeypatch.setattr(download.socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(URLRefused, match="private"):
        check_url("http://images.example.com/cat.jpg")


def test_public_answer_is_pinned(monkeypatch):
    monkeypatch.setattr(download.socket, "getaddrinfo",
                        lambda host, port, *a, **k: [(2, 1, 6, "", ("93.184.216.34", port))])
    target = check_url("https://images.example.com/a/b.jpg?x=1")
    assert (target.host, target.port, target.path, target.ip) == \
        ("images.example.com", 443, "/a/b.jpg?x=1", "93.184.216.34")


def test_url_files(tmp_path):
    f = tmp_path / "urls_teddys.txt"
    f.write_text("https://a.example/1.jpg\n\n# note\nhttps://a.example/1.jpg\nhttps://b.example/2.png\n")
    assert download.read_url_file(f) == ["https://a.example/1.jpg", "https://b.example/2.png"]
    assert download.class_name_from_url_file(f) == "teddys"
    assert download.class_name_from_url_file(Path("grizzly.txt")) == "grizzly"
