"""Case 10 of issue 8 at page level: when the run a user picks in the Explorer has a damaged
checkpoint (an absurd safetensors header, or weights written for another architecture), the page
says so in a sentence, and the model the session already holds stays the same object with the same
weights; picking the good run again goes on with it."""
from __future__ import annotations

import json
import struct

import torch
from streamlit.testing.v1 import AppTest

from engine import models
from tests.browser.conftest import ROOT
from tests.reliability.test_html_names import data_root, make_run, make_set  # noqa: F401 (fixture)
from ui import state


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_damaged_checkpoint_leaves_the_held_model_as_it_was(data_root):  # noqa: F811
    from safetensors.torch import load_file, save_file

    owner = "K" * 22
    folder = make_set(data_root)
    bad = make_run(folder, owner)
    good = make_run(folder, owner)            # the newest run: the page opens it first
    at = AppTest.from_file(str(ROOT / "pages" / "explore.py"), default_timeout=120)
    at.session_state[state.SESSION_OWNER] = owner
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    held_id, held = at.session_state[state.E_MODEL]
    assert held_id == good.id
    before = weights(held.model)

    path = data_root / "runs" / bad.id / "model.safetensors"
    original = path.read_bytes()
    damaged = {
        # a header length of 2**63 bytes, then the start of a JSON header
        "absurd header": struct.pack("<Q", 2**63) + b'{"a":1}' + bytes(64),
        # real tensors of this run, but the file says they belong to a resnet18
        "another architecture": None,
    }
    for what, content in damaged.items():
        if content is None:
            meta = models.read_checkpoint_meta(path)
            meta["arch"] = "resnet18"
            save_file(load_file(str(path)), str(path), metadata={"dllab": json.dumps(meta)})
        else:
            path.write_bytes(content)
        at.selectbox(key=state.E_RUN).set_value(bad.id).run()
        assert not at.exception, (what, at.exception)
        errors = [e.value for e in at.error]
        assert errors and all("could not be opened" in e for e in errors), (what, errors)
        assert all("Traceback" not in e and "File \"" not in e for e in errors)
        now_id, now = at.session_state[state.E_MODEL]
        assert now_id == good.id and now is held, what          # nothing replaced it
        assert all(torch.equal(before[k], v) for k, v in now.model.state_dict().items()), what
        path.write_bytes(original)

    at.selectbox(key=state.E_RUN).set_value(good.id).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state[state.E_MODEL][1] is held


def test_two_runs_with_the_same_settings_have_different_labels(data_root):  # noqa: F811
    """Picking relies on the labels: two runs made a second apart with equal settings and equal
    results must still read differently (they once did not, and the second could not be picked)."""
    owner = "L" * 22
    folder = make_set(data_root)
    first, second = make_run(folder, owner), make_run(folder, owner)
    at = AppTest.from_file(str(ROOT / "pages" / "explore.py"), default_timeout=120)
    at.session_state[state.SESSION_OWNER] = owner
    at.run()
    box = at.selectbox(key=state.E_RUN)
    assert len(set(box.options)) == 2, box.options
    for run in (first, second, first):
        at.selectbox(key=state.E_RUN).set_value(run.id).run()
        assert at.session_state[state.E_MODEL][0] == run.id
