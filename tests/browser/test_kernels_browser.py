"""Kernel Playground in a real Chromium against a real `streamlit run`."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import wait_for_app_idle

pytestmark = pytest.mark.browser


def output_src(pg) -> str:
    img = pg.locator("[data-testid='stImage']").filter(has_text=re.compile("^output")).locator("img")
    return img.first.get_attribute("src")


def cell(pg, i: int):
    row, col = divmod(i, 3)
    return pg.get_by_label(f"row {row + 1}, column {col + 1}")


def open_page(pg, url: str) -> None:
    pg.goto(url)
    pg.get_by_text("Pixel walkthrough").first.wait_for()
    wait_for_app_idle(pg)


def choose(pg, label: str, option: str) -> None:
    pg.get_by_label(label).first.click()  # a Streamlit selectbox opens a list of options
    pg.get_by_role("option", name=option, exact=True).click()


def test_preset_and_cell_edit_change_the_output(page, app_url):
    open_page(page, f"{app_url}/kernels")
    first = output_src(page)
    choose(page, "Preset", "sharpen")
    page.wait_for_function("s => { const i = [...document.querySelectorAll('[data-testid=stImage]')]"
                           ".find(e => e.innerText.startsWith('output')); "
                           "return i && i.querySelector('img').src !== s }", arg=first)
    wait_for_app_idle(page)
    expect(cell(page, 4)).to_have_value("5")
    sharpened = output_src(page)
    cell(page, 4).fill("9")
    cell(page, 4).press("Enter")
    page.wait_for_function("s => { const i = [...document.querySelectorAll('[data-testid=stImage]')]"
                           ".find(e => e.innerText.startsWith('output')); "
                           "return i && i.querySelector('img').src !== s }", arg=sharpened)
    wait_for_app_idle(page)
    preset_box = page.locator("[data-testid='stSelectbox']").filter(has_text="Preset").first
    shown = preset_box.evaluate("e => e.innerText + ' ' + [...e.querySelectorAll('input')]"
                                ".map(i => i.value + ' ' + (i.getAttribute('aria-label') || '')).join(' ')")
    assert "custom" in shown
    assert "preset=custom" in page.url
    assert "k=0%2C-1%2C0%2C-1%2C9" in page.url or "k=0,-1,0,-1,9" in page.url


def test_share_link_reproduces_the_state(page, app_url):
    query = "?preset=custom&k=0,1/2,0,0,0,0,0,-1/2,0&sample=coffee&display=abs&border=reflect&x=20&y=30"
    open_page(page, f"{app_url}/kernels{query}")
    for i, text in enumerate(["0", "1/2", "0", "0", "0", "0", "0", "-1/2", "0"]):
        expect(cell(page, i)).to_have_value(text)  # retries while the page is still drawing
    sample_box = page.locator("[data-testid='stSelectbox']").filter(has_text="Sample").first
    assert "coffee" in sample_box.evaluate("e => e.innerText + ' ' + [...e.querySelectorAll('input')]"
                                           ".map(i => i.value + ' ' + (i.getAttribute('aria-label') || '')).join(' ')").lower()
    expect(page.get_by_label("x (column)")).to_have_value("20")
    expect(page.get_by_label("y (row)")).to_have_value("30")
    first = output_src(page)
    page.reload()
    page.get_by_text("Pixel walkthrough").first.wait_for()
    wait_for_app_idle(page)
    expect(cell(page, 1)).to_have_value("1/2")
    assert output_src(page) == first          # same pixels -> same media file


def test_invalid_cell_keeps_the_output_and_explains(page, app_url):
    open_page(page, f"{app_url}/kernels")
    before = output_src(page)
    cell(page, 0).fill("banana")
    cell(page, 0).press("Enter")
    page.get_by_text("is not a number").wait_for()
    wait_for_app_idle(page)
    assert output_src(page) == before
    assert page.locator("text=Traceback").count() == 0


def test_a_text_file_named_png_is_refused_and_the_photo_kept(page, app_url, tmp_path):
    fake = tmp_path / "holiday.png"
    fake.write_text("this is not a picture at all")
    open_page(page, f"{app_url}/kernels")
    before = output_src(page)
    page.get_by_text("Upload", exact=True).click()
    page.locator("input[type=file]").set_input_files(str(fake))
    page.get_by_text("not an image the app can read").wait_for()
    wait_for_app_idle(page)
    assert output_src(page) == before
    assert page.locator("text=Traceback").count() == 0


def test_clicking_the_enlarged_view_picks_a_pixel(page, app_url):
    open_page(page, f"{app_url}/kernels?x=100&y=100")
    plot = page.locator("[data-testid='stPlotlyChart']").first
    plot.wait_for(state="visible", timeout=120_000)   # a loaded machine draws it late
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    # The plot area spans the 15 pixels around (100, 100); a click left of centre picks x < 100.
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.wait_for_function("() => { const e = [...document.querySelectorAll('input')]"
                           ".find(i => i.getAttribute('aria-label') === 'x (column)'); "
                           "return e && e.value !== '100' }")
    assert int(page.get_by_label("x (column)").input_value()) < 100
    assert int(page.get_by_label("y (row)").input_value()) < 100
