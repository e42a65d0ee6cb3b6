"""AppTest for the home page: lesson path, device panel and versions, without waiting for torch."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_home_shows_lesson_path_device_and_versions():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value.endswith("Deep Learning Lab")
    links = [el.proto.label for el in at.get("page_link")]
    assert any("1. Kernel Playground" in label for label in links)
    text = " ".join(m.value for m in at.markdown) + " ".join(links)
    for title in ("Kernel Playground", "SGD", "Train", "Explorer"):
        assert title in text
    device_msgs = [e.value for e in at.info] + [e.value for e in at.success]
    assert any("Compute device" in m for m in device_msgs)
    versions = at.table[0].value
    assert "torch" in list(versions["library"])
