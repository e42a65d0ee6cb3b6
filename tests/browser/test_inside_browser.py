"""Explorer › Inside in a real Chromium: click a learned kernel, open it in the Kernel Playground and
see it applied there; click a feature map and see it enlarged."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, free_port, start_streamlit, stop, wait_for_app_idle, wait_healthy

pytestmark = pytest.mark.browser

#: JavaScript: the page coordinates of a data point (x, y) in the Plotly chart of the element
#: whose key is `key` (Streamlit gives its container the class st-key-<key>, dots as dashes).
POINT_JS = """([key, x, y]) => {
  const box = [...document.querySelectorAll('[class*="st-key-"]')]
      .find(e => [...e.classList].includes('st-key-' + key));
  const gd = box.querySelector('.js-plotly-plot');
  const L = gd._fullLayout, r = gd.getBoundingClientRect();
  return [r.left + L.xaxis._offset + L.xaxis.l2p(x), r.top + L.yaxis._offset + L.yaxis.l2p(y)];
}"""


@pytest.fixture(scope="module")
def inside_server(tmp_path_factory):
    """A server of its own, with one stored run (small CNN on coloured squares) in its data dir."""
    from tests.pages.test_explore import make_fake_run

    ARTIFACTS.mkdir(exist_ok=True)
    data = tmp_path_factory.mktemp("inside-data")
    mp = pytest.MonkeyPatch()
    mp.setenv("DLLAB_DATA", str(data))
    run_id, _ = make_fake_run(data)
    mp.undo()
    port = free_port()
    proc = start_streamlit(port, env_extra={"DLLAB_DATA": str(data)})
    try:
        wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}", run_id, data
    finally:
        stop(proc)


def click_point(page, key: str, x: float, y: float) -> None:
    key = key.replace(".", "-")
    box = page.locator(f".st-key-{key} .js-plotly-plot").first
    box.scroll_into_view_if_needed()
    box.locator(".nsewdrag").first.wait_for()
    px, py = page.evaluate(POINT_JS, [key, x, y])
    page.mouse.click(px, py)


def output_src(pg) -> str:
    img = pg.locator("[data-testid='stImage']").filter(has_text="output").locator("img")
    return img.first.get_attribute("src")


def test_a_learned_kernel_opens_in_the_playground_and_is_applied(page, inside_server, monkeypatch):
    from tests.pages.test_inside import expected_cells

    url, run_id, data = inside_server
    monkeypatch.setenv("DLLAB_DATA", str(data))
    page.set_default_timeout(120_000)
    page.goto(f"{url}/explore?run={run_id}")
    page.get_by_role("tab", name="Inside").click()
    page.get_by_text("What the first layer learned").wait_for()
    wait_for_app_idle(page)
    assert page.locator("text=Traceback").count() == 0

    # Kernel 5 of 32: 16 to a row of 3-pixel tiles with 1-pixel gaps -> its centre is at (21, 1).
    click_point(page, "explore.in_kernel_fig", 5 * 4 + 1, 1)
    expect(page.get_by_label("Kernel number")).to_have_value("5")
    # The sentence under the kernel is drawn after the number box in the same run: once it names
    # kernel 5, the link below it is kernel 5's too.
    page.get_by_text("so kernel 5's three slices", exact=False).wait_for()
    wait_for_app_idle(page)
    link = page.get_by_role("link", name="Open in the Kernel Playground")
    href = link.get_attribute("href")
    query = parse_qs(urlsplit(href).query)
    cells = query["k"][0].split(",")
    assert cells == expected_cells(run_id, 5) and query["preset"] == ["custom"]

    # A click on the first map of stage 2 enlarges it over the image.
    click_point(page, "explore.in_fmap1", 3.5, 3.5)   # the centre of its first 8×8 map
    page.get_by_text("of “block 2", exact=False).first.wait_for()

    # The playground in a new tab: the learned kernel is in the grid and its output is drawn.
    default_page = page.context.new_page()
    default_page.goto(f"{url}/kernels")
    default_page.get_by_text("Pixel walkthrough").first.wait_for()
    wait_for_app_idle(default_page)
    sobel_src = output_src(default_page)
    default_page.close()
    with page.context.expect_page() as opened:
        link.click()
    play = opened.value
    play.set_default_timeout(120_000)
    play.get_by_text("Pixel walkthrough").first.wait_for()
    for i, text in enumerate(cells):
        row, col = divmod(i, 3)
        expect(play.get_by_label(f"row {row + 1}, column {col + 1}")).to_have_value(
            text, timeout=120_000)   # the grid is drawn after the photo is read: slow under load
    wait_for_app_idle(play)
    play.wait_for_function("s => { const i = [...document.querySelectorAll('[data-testid=stImage]')]"
                           ".find(e => e.innerText.startsWith('output')); "
                           "return i && i.querySelector('img').src && i.querySelector('img').src !== s }",
                           arg=sobel_src)
    assert play.locator("text=Traceback").count() == 0
    assert play.locator("[data-testid='stAlert']").filter(has_text="not a number").count() == 0
