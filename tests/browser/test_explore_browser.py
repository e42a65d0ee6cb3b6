"""Explorer in a real Chromium: a demo run, a click on a confusion-matrix cell, a relabel and its undo."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.browser.conftest import ARTIFACTS, free_port, start_streamlit, stop, wait_for_app_idle, wait_healthy

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def explore_server(tmp_path_factory):
    """A server of its own whose data dir is an empty temporary folder."""
    ARTIFACTS.mkdir(exist_ok=True)
    data = tmp_path_factory.mktemp("explore-data")
    port = free_port()
    proc = start_streamlit(port, env_extra={"DLLAB_DATA": str(data)})
    try:
        wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}", data
    finally:
        stop(proc)


def files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def test_cell_click_then_relabel_and_undo(page, explore_server):
    url, data = explore_server
    page.set_default_timeout(180_000)
    page.goto(f"{url}/explore")
    page.get_by_text("Make a quick demo run").click()
    page.locator(".js-plotly-plot .nsewdrag").first.wait_for()
    wait_for_app_idle(page, 120_000)
    assert page.locator("text=Traceback").count() == 0

    # Click the top-left cell: actual 0, predicted 0 (the diagonal always holds images here).
    area = page.locator(".js-plotly-plot .nsewdrag").first
    area.scroll_into_view_if_needed()
    box = area.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.05, box["y"] + box["height"] * 0.05)
    # The heading under the matrix (the hover label says the same in lower case, so match h4).
    page.locator("h4", has_text="Actual 0, predicted 0").wait_for()
    wait_for_app_idle(page)
    assert page.locator(".st-key-explore-cell-images img").count() > 0

    folder = next((data / "explore-demo").iterdir())
    before = files(folder)
    page.get_by_role("tab", name="Clean").click()
    grid = page.locator(".st-key-explore-cleaner-grid")
    grid.locator("[data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name="move to 1", exact=True).click()
    wait_for_app_idle(page)
    page.get_by_text("1 change chosen").wait_for()
    page.get_by_role("button", name="Apply").click()
    page.get_by_text("1 relabelled").wait_for()
    after = files(folder)
    assert after != before and sorted(after.values()) == sorted(before.values())
    moved = set(after) - set(before)
    assert len(moved) == 1 and moved.pop().startswith("1/")

    page.get_by_role("button", name="Undo").click()
    page.get_by_text("Undone").wait_for()
    assert files(folder) == before
    assert page.locator("text=Traceback").count() == 0
