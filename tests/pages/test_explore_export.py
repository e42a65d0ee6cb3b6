"""AppTest for the Explorer's Export tab: the zip download, and the commands that serve the run
over HTTP (engine.serve) and ask it for a prediction with curl."""
from __future__ import annotations

from tests.pages.test_explore import app, env, stored  # noqa: F401  (fixtures of the Explorer's run)
from ui import state


def test_the_export_tab_shows_the_serve_command_and_a_curl_example(env):
    run_id, _ = env
    at = app()
    assert not at.error
    export = at.tabs[4]
    assert export.label == "Export"
    codes = [c.value for c in export.code]
    assert f"python -m engine.serve --run={run_id}" in codes
    assert any(c.startswith("python -m engine.serve --model dllab-simple_cnn-shapes-") and
               c.endswith(".zip") for c in codes)
    assert "curl -F file=@photo.jpg http://127.0.0.1:8000/predict" in codes
    text = "\n".join(m.value for m in export.markdown)
    assert "Serve it over HTTP" in text and "make serve-model" in text
    assert any(b.key == state.E_DOWNLOAD for b in at.get("download_button"))
