"""The engine against fastai itself: the LR-finder rules, and the learning rate of every parameter
group and the momentum at every step of fit_one_cycle, fine_tune and fit_one_cycle(slice(lo, hi)).

The numbers come from tests/reference/fastai_reference.py, run now when fastai is importable from
bench/.fastai-pkgs (`make bench-deps`), otherwise from its stored output
(tests/reference/fastai_numbers.json, made by the same script)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.lr_rules import minimum, slide, steep, valley
from engine.schedule import even_mults, plan_run
from tests import reference as reference_scripts

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "reference" / "fastai_reference.py"
STORED = ROOT / "tests" / "reference" / "fastai_numbers.json"


def load_script():
    """The reference script as a module."""
    return reference_scripts.load_script(SCRIPT)


@pytest.fixture(scope="module")
def reference() -> dict:
    return reference_scripts.numbers(SCRIPT, STORED, timeout=300)


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
