"""The Explorer's "Export" tab: the run's model as a zip to take away, and the commands that serve
it over HTTP (engine.serve) and ask it for a prediction."""
from __future__ import annotations

import streamlit as st

from engine.export import run_zip, zip_name
from engine.inference import curl_example, serve_command
from engine.runs import Run
from ui import state


def model_problem(run: Run) -> str | None:
    """Why this run's model cannot be exported or served, as a sentence; None when it can. Only
    the header is read (engine.models.read_checkpoint_meta), so this is cheap on every rerun."""
    from engine.models import CheckpointError, read_checkpoint_meta
    if not run.checkpoint.is_file():
        return ("This run has no model file (model.safetensors is missing from its folder: the "
                "run stopped before saving one, or the file was removed), so there is nothing to "
                "download or serve. Train the run again to get a model.")
    try:
        read_checkpoint_meta(run.checkpoint)
    except CheckpointError as exc:
        return f"This run's model file cannot be exported or served: {exc}"
    return None


def export_section(run: Run) -> None:
    """A download button for the run's model as a zip (safetensors, JSON, README), then how to
    serve it: the command for this run, the one for the zip, and a curl example."""
    st.write("Take the model with you: the weights as a safetensors file (tensors only — opening "
             "it cannot run code), a JSON file with the class order, architecture, input size and "
             "normalisation, and a README showing how to load it with plain PyTorch (no code from "
             "this app) or with `engine.models.load_checkpoint`.")
    problem = model_problem(run)
    if problem:   # no button that downloads nothing: say why instead
        st.warning(problem)
        return
    size = run.checkpoint.stat().st_size
    name = zip_name(run)
    st.download_button(f"Download the model ({size / 1e6:.1f} MB zip)", data=lambda: run_zip(run),
                       file_name=name, mime="application/zip", key=state.E_DOWNLOAD,
                       on_click="ignore", icon=":material/download:")
    st.markdown("#### Serve it over HTTP")
    st.write("A small web service answers with the class and its probability for each image it is "
             "sent, on the CPU. It loads the model once and stacks requests that arrive together "
             "into one forward pass. On the machine running this app, from the repository root "
             "(or `make serve-model RUN=…`):")
    st.code(serve_command(run_id=run.info.id), language="bash")
    st.write("Or anywhere with a copy of the repository, from the downloaded zip:")
    st.code(serve_command(model_path=name), language="bash")
    st.write("Then ask it about a photo (the OpenAPI page is at http://127.0.0.1:8000/docs):")
    st.code(curl_example(), language="bash")
