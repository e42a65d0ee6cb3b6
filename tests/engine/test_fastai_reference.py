"""The engine against fastai itself: the LR-finder rules, and the learning rate of every parameter
group and the momentum at every step of fit_one_cycle, fine_tune and fit_one_cycle(slice(lo, hi)).

The numbers come from tests/reference/fastai_reference.py, run now when fastai is importable from
bench/.fastai-pkgs (`make bench-deps`), otherwise from its stored output
(tests/reference/fastai_numbers.json, made by the same script)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.lr_rules import minimum, slide, steep, valley
from engine.schedule import even_mults, plan_run

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "reference" / "fastai_reference.py"
STORED = ROOT / "tests" / "reference" / "fastai_numbers.json"
FASTAI_PKGS = ROOT / "bench" / ".fastai-pkgs"


def load_script():
    """The reference script as a module (for its curve and the plans' settings)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("fastai_reference", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def reference() -> dict:
    if (FASTAI_PKGS / "fastai").is_dir():
        env = {**os.environ, "PYTHONPATH": str(FASTAI_PKGS)}
        out = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
        if out.returncode == 0:
            return {**json.loads(out.stdout), "source": "fastai, run now"}
    return {**json.loads(STORED.read_text()), "source": "stored numbers"}


def test_rules_equal_fastai_on_a_float32_curve(reference):
    lrs, losses = load_script().curve()
    assert valley(lrs, losses) == reference["rules"]["valley"]
    assert slide(lrs, losses) == reference["rules"]["slide"]
    assert minimum(lrs, losses) == reference["rules"]["minimum"]
    assert steep(lrs, losses) == reference["rules"]["steep"]


def test_even_mults_equals_fastai(reference):
    np.testing.assert_allclose(even_mults(1e-5, 1e-3, 3), reference["even_mults"], rtol=1e-12)


@pytest.mark.parametrize("name", ["fit_one_cycle", "fine_tune", "unfreeze"])
def test_every_step_of_a_plan_equals_fastai(reference, name):
    method, kwargs = load_script().PLANS[name]
    if name == "fine_tune":
        plan = plan_run("fine_tune", kwargs["epochs"], kwargs["base_lr"], reference["n_batches"], 3,
                        freeze_epochs=kwargs["freeze_epochs"])
    elif name == "unfreeze":
        lo, hi = kwargs["lr_max"]
        plan = plan_run("unfreeze", kwargs["n_epoch"], hi, reference["n_batches"], 3, lr_lo=lo)
    else:
        plan = plan_run("fit_one_cycle", kwargs["n_epoch"], kwargs["lr_max"],
                        reference["n_batches"], 3)
    want = reference["plans"][name]
    # fastai places a step inside its cosine with float32 tensors (combine_scheds), the engine in
    # float64: the two agree to about 1e-6, relative.
    assert plan.lrs.shape == np.asarray(want["lrs"]).shape, reference["source"]
    np.testing.assert_allclose(plan.lrs, want["lrs"], rtol=2e-6, err_msg=reference["source"])
    np.testing.assert_allclose(plan.moms, want["moms"], rtol=2e-6, err_msg=reference["source"])
