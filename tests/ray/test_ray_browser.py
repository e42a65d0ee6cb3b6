"""The Train page on Ray in a real browser (issue 13, tests 5 and 6): a server started with
DLLAB_RAY_ADDRESS=local trains the digits on a worker process of its own Ray instance; two servers
sharing DLLAB_DATA and the session's Ray head — a run trained through one opens from its share link
on the other."""
from __future__ import annotations

import json
import re

import pytest

from tests.browser.conftest import (ARTIFACTS, free_port, start_streamlit, stop, wait_for_app_idle,
                                    wait_healthy)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_train(pg, url: str, query: str = "") -> None:
    pg.goto(f"{url}/train{query}")
    pg.get_by_role("button", name="Train", exact=True).wait_for(timeout=90_000)
    wait_for_app_idle(pg, 60_000)


def train_and_get_run_id(pg, url: str) -> str:
    """Train the digits for one epoch on the page; the new run's id from its share link."""
    open_train(pg, url, "?epochs=1")
    pg.get_by_role("button", name="Train", exact=True).click()
    pg.get_by_text("5 · Coach").wait_for(timeout=180_000)
    wait_for_app_idle(pg)
    link = pg.get_by_text("explore?run=").first
    link.wait_for(timeout=30_000)
    return re.search(r"explore\?run=([A-Za-z0-9_-]{22})", link.inner_text()).group(1)


def servers(n: int, env: dict) -> list[tuple[str, object]]:
    started = []
    try:
        for _ in range(n):
            port = free_port()
            started.append((f"http://127.0.0.1:{port}", start_streamlit(port, env), port))
        for url, proc, port in started:
            wait_healthy(port, proc, timeout=90)
    except BaseException:
        for _, proc, _ in started:
            stop(proc)
        raise
    return [(url, proc) for url, proc, _ in started]


def test_train_page_on_local_ray_trains_on_a_worker_process(page, tmp_path):
    data = tmp_path / "appdata"
    [(url, proc)] = servers(1, {"DLLAB_RAY_ADDRESS": "local", "DLLAB_DATA": str(data)})
    try:
        run_id = train_and_get_run_id(page, url)
        info = json.loads((data / "runs" / run_id / "run.json").read_text())
        assert info["backend"] == "ray" and info["pid"] not in (0, proc.pid)
        # The runs list says so: "Ray worker on <host> (pid <worker's pid>)" (a cell of the grid's
        # accessible table: attached to the page, drawn on its canvas).
        page.get_by_text(f"Ray worker on {info['host']} (pid {info['pid']})").first.wait_for(
            state="attached", timeout=30_000)
        # The server's log names the private instance, on 127.0.0.1 only.
        port = url.rsplit(":", 1)[1]
        log = (ARTIFACTS / f"streamlit-{port}.log").read_text()
        assert re.search(r"Ray backend ready: .*'gcs': '127\.0\.0\.1:\d+'", log), log[-2000:]
    finally:
        stop(proc)


def test_two_servers_one_cluster_a_share_link_opens_on_the_other(browser, ray_cluster, tmp_path):
    data = tmp_path / "shared"
    (url_a, proc_a), (url_b, proc_b) = servers(2, {"DLLAB_RAY_ADDRESS": ray_cluster,
                                                   "DLLAB_DATA": str(data)})
    ctxs = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        teacher, student = (c.new_page() for c in ctxs)
        run_id = train_and_get_run_id(teacher, url_a)
        info = json.loads((data / "runs" / run_id / "run.json").read_text())
        assert info["backend"] == "ray" and info["pid"] not in (proc_a.pid, proc_b.pid)
        student.goto(f"{url_b}/explore?run={run_id}")
        try:
            student.get_by_text("You opened a run someone shared with a link").wait_for(
                timeout=90_000)
        except Exception:
            for name, pg in (("student", student), ("teacher", teacher)):
                pg.screenshot(path=str(ARTIFACTS / f"ray-share-{name}.png"), full_page=True)
            raise
    finally:
        for c in ctxs:
            c.close()
        stop(proc_a)
        stop(proc_b)
