"""Case 4 of issue 8: class names, data-set names, file names and URLs that hold HTML or script show
as the text they are, on the Train page and in the Explorer, charts included.

Plotly reads a small HTML subset in labels and hover text (<b>, <i>, <br>, <a href>, …) and
decodes entities, so names reach it through ui.figures.plotly_text; markdown gets pages/explore.md.
The AppTests check what the pages send; one Chromium test checks what the browser builds from it.
(File names in an upload: tests/reliability/test_upload_endpoint.py.)
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.browser.conftest import ROOT, wait_for_app_idle
from ui import state
from ui.figures import plotly_text, plotly_texts
from ui.train_figs import counts_figure

IMG = "<img src=x onerror=alert(1)>"
BOLD = "<b>bold"                 # a folder name cannot hold the "/" of "</b>"; Plotly bolds anyway
AMP = "fish &amp; chips"         # must show "&amp;", not "&"
SET = "<svg onload=alert(3)>"    # the data set's own folder name
FILE = "<img src=x onerror=alert(4)>"    # start of some image file names
CLASSES = sorted([IMG, BOLD, AMP])
COLOURS = {IMG: (220, 40, 40), BOLD: (40, 40, 220), AMP: (40, 200, 40)}


def make_set(root: Path, per_class: int = 12) -> Path:
    """<root>/folders/<SET>/<class>/…png: three colours with noise, some files named like HTML."""
    rng = np.random.default_rng(0)
    folder = root / "folders" / SET
    for cls, colour in COLOURS.items():
        d = folder / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.clip(np.array(colour) + rng.normal(0, 70, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / (f"{FILE}{i}.png" if i % 2 else f"{i}.png"))
    return folder


def make_run(folder: Path, owner: str):
    """A one-epoch run on the set, saved for `owner` (as the Train page would)."""
    import torch

    from engine.data import DataConfig, build_dataloaders
    from engine.models import create_model
    from engine.runs import save_run
    from engine.training import Learner

    torch.manual_seed(0)
    dls = build_dataloaders(folder, DataConfig(size=16, bs=8, flip=False, seed=42))
    learn = Learner(create_model("simple_cnn", len(dls.classes), pretrained=False), dls,
                    device="cpu", seed=0)
    learn.fit_one_cycle(1, 1e-2)
    settings = {"source": "folder", "folder": str(folder), "arch": "simple_cnn", "pretrained": False,
                "size": 16, "bs": 8, "valid_pct": 0.2, "seed": 42, "method": "fit_one_cycle",
                "epochs": 1, "lr": 1e-2}
    return save_run(learn, owner=owner, data_name=folder.name, settings=settings,
                    history={"epochs": learn.history}, status="done")


def plotly_decode(text: str) -> str:
    """What Plotly shows for a label with no tags in it: its entities turned into characters."""
    return html.unescape(text)


def strings(obj):
    """Every string inside a figure spec."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from strings(v)


def assert_no_raw_names(spec: dict) -> None:
    """No name reaches Plotly as markup; every one that is there shows exactly as written."""
    text = json.dumps(spec, ensure_ascii=False)
    for name in CLASSES + [SET, FILE]:
        assert name not in text, name
    for s in strings(spec):
        # the only tags allowed are the figure's own (<br>, <extra>)
        tags = s.replace("<br>", "").replace("<extra></extra>", "").replace("<extra>", "")
        tags = tags.replace("</extra>", "")
        assert "<" not in tags, s


# The helper -------------------------------------------------------------------------------------
def test_plotly_text_shows_any_name_exactly_as_written():
    for name in [IMG, BOLD, "<b>bold</b>", AMP, "a < b > c", "&lt;", "it's \"quoted\"", "plain", 7]:
        safe = plotly_text(name)
        assert "<" not in safe and ">" not in safe
        assert plotly_decode(safe) == str(name)
    assert plotly_text("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    assert plotly_text('"q"') == '"q"'          # Plotly does not decode &quot;: quotes stay
    assert plotly_texts([IMG, 3]) == [plotly_text(IMG), "3"]


def test_counts_figure_escapes_class_names():
    spec = counts_figure(CLASSES, [9, 9, 9], [3, 3, 3])
    assert spec["data"][0]["x"] == plotly_texts(CLASSES)
    assert_no_raw_names(spec)


# AppTests: what the pages send --------------------------------------------------------------------
@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    return tmp_path


def charts(at: AppTest) -> dict[str, dict]:
    return {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def test_train_page_shows_html_class_names_as_text(data_root):
    make_set(data_root)
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    at.radio(key=state.T_SOURCE).set_value("folder").run()
    assert not at.exception, at.exception
    assert at.selectbox(key=state.T_FOLDER).value == SET
    counts = next(s for s in charts(at).values() if "Images per class" in json.dumps(s))
    assert [plotly_decode(x) for x in counts["data"][0]["x"]] == CLASSES
    for spec in charts(at).values():
        assert_no_raw_names(spec)
    assert not at.error, [e.value for e in at.error]


def test_url_lists_holding_html_give_a_plain_text_summary(data_root):
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    at.radio(key=state.T_SOURCE).set_value("urls").run()
    at.text_input(key="train.url_name0").set_value(IMG)
    at.text_input(key="train.url_name1").set_value("<b>bold</b>")
    # Refused before any connection: loopback, a javascript: URL, a tag in place of a host.
    at.text_area(key="train.url_text0").set_value(f"http://127.0.0.1/{IMG}.png\njavascript:alert(1)")
    at.text_area(key="train.url_text1").set_value("http://10.0.0.1/<b>bold</b>.png\n<b>bold</b>")
    at.button(key="train.url_dl").click().run()
    assert not at.exception, at.exception
    lines: list[str] = []
    t0 = time.time()
    while not lines and time.time() - t0 < 120:
        time.sleep(0.3)
        at.run()
        assert not at.exception, at.exception
        lines = [c.value for c in at.caption if "failed" in c.value]
    assert len(lines) == 2, ([c.value for c in at.caption], [e.value for e in at.error])
    for line in lines:     # class names cut down to letters, digits, "-" and " "; URLs only counted
        assert "<" not in line and ">" not in line and "http" not in line and "alert(" not in line
        assert "0 images saved, 2 failed" in line
    everything = " ".join(str(e.value) for kind in ("markdown", "caption", "error", "warning", "info")
                          for e in at.get(kind))
    assert IMG not in everything and "<b>" not in everything
    # Each failed address is listed with its reason, exactly as typed, in a data frame (plain text).
    table = next(d.value for d in at.dataframe if list(d.value.columns) == ["class", "url", "reason"])
    assert sorted(table["url"]) == sorted([f"http://127.0.0.1/{IMG}.png", "javascript:alert(1)",
                                           "http://10.0.0.1/<b>bold</b>.png", "<b>bold</b>"])
    assert sorted(table["class"]) == ["bboldb", "bboldb", "img srcx onerroralert1", "img srcx onerroralert1"]
    assert all(isinstance(r, str) and len(r) > 10 for r in table["reason"])
    assert any("private" in r or "loopback" in r or "local" in r for r in table["reason"]), list(table["reason"])
    # The report stays while these images are the data set: another rerun still shows it.
    at.run()
    assert [c.value for c in at.caption if "failed" in c.value] == lines


def test_explorer_shows_html_class_and_file_names_as_text(data_root):
    owner = "O" * 22
    folder = make_set(data_root)
    make_run(folder, owner)
    at = AppTest.from_file(str(ROOT / "pages" / "explore.py"), default_timeout=120)
    at.session_state[state.SESSION_OWNER] = owner
    at.run()
    assert not at.exception, at.exception
    specs = charts(at)
    cm = next(s for s in specs.values() if "Predicted" in json.dumps(s))
    assert [plotly_decode(t) for t in cm["layout"]["xaxis"]["ticktext"]] == CLASSES
    hover = [plotly_decode(a) for a, _, _ in cm["data"][1]["customdata"]]
    assert set(hover) == set(CLASSES)
    probs = next(s for s in specs.values() if s["data"][0].get("orientation") == "h")
    assert sorted(plotly_decode(y) for y in probs["data"][0]["y"]) == CLASSES
    for spec in specs.values():
        assert_no_raw_names(spec)
    # Markdown (captions, headings): every markdown character escaped, so no tag and no **.
    md_text = [e.value for kind in ("caption", "markdown") for e in at.get(kind)]
    assert any("predicted **" in t for t in md_text)
    for t in md_text:
        for name in CLASSES + [SET, FILE]:
            assert name not in t, (name, t)
    assert not at.error, [e.value for e in at.error]


# One real browser: what Chromium builds from it ----------------------------------------------------
DOM_PROBE = """() => ({
    tags: document.querySelectorAll('img[src="x"], image[href="x"], [onerror], [onload]').length,
    bold: [...document.querySelectorAll('b, strong, tspan')].filter(e =>
        e.textContent.trim() === 'bold' && (e.tagName !== 'tspan' ||
        getComputedStyle(e).fontWeight >= 600)).length,
    ticks: [...document.querySelectorAll('.xtick text, .ytick text')].map(t => t.textContent),
})"""


def selectbox_texts(pg) -> list[str]:
    """What each select box shows (its text, and the value of its search field)."""
    return pg.evaluate("""() => [...document.querySelectorAll('[data-testid=stSelectbox]')].map(e =>
        e.innerText + ' ' + [...e.querySelectorAll('input')].map(i => i.value).join(' '))""")


def assert_clean(pg, dialogs: list) -> dict:
    seen = pg.evaluate(DOM_PROBE)
    assert dialogs == [], dialogs
    assert seen["tags"] == 0 and seen["bold"] == 0, seen
    assert pg.locator("text=Traceback").count() == 0
    return seen


@pytest.mark.browser
def test_html_names_render_as_text_in_chromium(server, page, monkeypatch):
    base, _, data = server
    folder = make_set(data)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.set_default_timeout(90_000)

    # Train page: the folder on the server, its counts chart and show_batch.
    page.goto(f"{base}/train")
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=120_000)
    wait_for_app_idle(page, 90_000)
    page.get_by_text("A folder on the server").click()
    # The digits' counts chart is on the page before the click, so waiting for a chart is not
    # enough: wait until the chart's ticks are the set's class names.
    page.wait_for_function("names => names.every(n => [...document.querySelectorAll("
                           "'.js-plotly-plot .xtick text, .js-plotly-plot .ytick text')]"
                           ".some(t => t.textContent === n))", arg=CLASSES, timeout=90_000)
    wait_for_app_idle(page, 90_000)
    page.get_by_text("show_batch").first.wait_for()
    seen = assert_clean(page, dialogs)
    for name in CLASSES:
        assert name in seen["ticks"], (name, seen["ticks"])
    assert any(SET in t for t in selectbox_texts(page))

    # A run of that set for this browser's owner (the cookie every page sets), then the Explorer.
    owner = next(c["value"] for c in page.context.cookies() if c["name"] == state.OWNER_COOKIE)
    monkeypatch.setenv("DLLAB_DATA", str(data))
    make_run(folder, owner)
    page.goto(f"{base}/explore")
    page.locator(".js-plotly-plot .nsewdrag").first.wait_for(timeout=120_000)
    wait_for_app_idle(page, 90_000)
    seen = assert_clean(page, dialogs)
    for name in CLASSES:
        assert seen["ticks"].count(name) >= 2, (name, seen["ticks"])     # both matrix axes
    assert any(SET in t for t in selectbox_texts(page))

    # Hover a confusion-matrix cell: the hover label shows the names as text too.
    area = page.locator(".js-plotly-plot .nsewdrag").first
    box = area.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 6, box["y"] + box["height"] / 6)
    label = page.locator(".hoverlayer .hovertext").first
    label.wait_for(timeout=10_000)
    assert f"actual {CLASSES[0]}, predicted {CLASSES[0]}" in label.text_content()
    assert_clean(page, dialogs)

    # Top losses: captions name the classes in markdown, shown literally.
    page.get_by_role("tab", name="Top losses").click()
    page.get_by_text("Grad-CAM opacity").first.wait_for()
    wait_for_app_idle(page)
    for name in CLASSES:     # predicted **name** · actual **name**: the bold parts, literally
        assert page.get_by_text(name, exact=True).count() >= 1, name
    # Predict on a validation image: the probability chart's class axis.
    page.get_by_role("tab", name="Predict").click()
    page.get_by_text("one forward pass").first.wait_for(timeout=60_000)
    wait_for_app_idle(page)
    page.locator(".js-plotly-plot .ytick text").filter(has_text=IMG).last.wait_for(timeout=30_000)
    seen = assert_clean(page, dialogs)
    for name in CLASSES:
        assert name in seen["ticks"], (name, seen["ticks"])
    # Clean: file names in captions.
    page.get_by_role("tab", name="Clean").click()
    page.get_by_text(FILE).first.wait_for()
    assert_clean(page, dialogs)
