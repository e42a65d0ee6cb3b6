"""Issue 8, case 13 (second half): the pinned requirements are audited for known vulnerabilities in
CI (`.ci/audit.py`, run by `make test`). Here against a fake index on 127.0.0.1 that answers like
PyPI's JSON API, so every branch is exercised without the network."""
from __future__ import annotations

import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
audit = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = audit   # dataclasses look their module up there
spec.loader.exec_module(audit)

ADVISORY = {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001"], "fixed_in": ["2.0.1"],
            "withdrawn": None}
# path -> JSON body; anything else is a 404, as PyPI answers for an unknown release
PAGES = {
    "/pypi/safe/1.0/json": {"info": {"version": "1.0"}, "vulnerabilities": []},
    "/pypi/bad/2.0/json": {"info": {"version": "2.0"}, "vulnerabilities": [ADVISORY]},
    "/pypi/oldwithdrawn/1.0/json": {"info": {"version": "1.0"},
                                    "vulnerabilities": [{**ADVISORY, "withdrawn": "2099-02-01"}]},
    # a mirror without per-release pages: only the project page, describing the newest release
    "/pypi/newest/json": {"info": {"version": "3.0"}, "vulnerabilities": [ADVISORY]},
    "/pypi/older/json": {"info": {"version": "9.9"}, "vulnerabilities": []},
}


class Index(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = PAGES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def index():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def write(tmp_path, text: str) -> str:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return str(path)


def test_clean_pins_pass_and_a_vulnerable_pin_fails(tmp_path, index, capsys):
    assert audit.main([write(tmp_path, "safe==1.0\noldwithdrawn==1.0\n"), "--index", index]) == 0
    assert "0 vulnerable" in capsys.readouterr().out
    rc = audit.main([write(tmp_path, "# pinned\nsafe==1.0\nbad==2.0  # the culprit\n"), "--index", index])
    out = capsys.readouterr().out
    assert rc == 1
    assert "VULNERABLE bad==2.0: PYSEC-2099-1 (fixed in 2.0.1)" in out and "1 vulnerable" in out


def test_newest_release_is_checked_from_the_project_page(tmp_path, index, capsys):
    # No per-release page, but the pin is the newest release: its advisories still count.
    assert audit.main([write(tmp_path, "newest==3.0\n"), "--index", index]) == 1
    assert "VULNERABLE newest==3.0" in capsys.readouterr().out


def test_unverifiable_pins_are_named_and_fail_only_when_strict(tmp_path, index, capsys):
    req = write(tmp_path, "older==1.2\nunknown==0.1\nloose>=1\n-r other.txt\n")
    assert audit.main([req, "--index", index]) == 0
    out = capsys.readouterr().out
    assert "not checked older==1.2: this index answers only for the newest release (9.9)" in out
    assert "not checked unknown==0.1: the index does not know this project" in out
    assert "not pinned exactly, not checked" in out and "loose>=1" in out
    assert audit.main([req, "--index", index, "--strict"]) == 1


def test_an_unreachable_index_is_a_warning_not_a_pass(tmp_path, capsys):
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    rc = audit.main([write(tmp_path, "safe==1.0\n"), "--index", "http://127.0.0.1:9/pypi",
                     "--timeout", "2"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "not checked safe==1.0: index unreachable" in captured.out
    assert "no pin could be checked" in captured.err


def test_every_runtime_requirement_is_pinned_exactly():
    pins, loose = audit.read_pins([str(ROOT / "requirements.txt"), str(ROOT / "requirements-dev.txt")])
    assert not loose, f"requirements the audit cannot check: {loose}"
    names = {n.lower() for n, _ in pins}
    assert {"streamlit", "torch", "torchvision", "pillow", "pytest"} <= names
