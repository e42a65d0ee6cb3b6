"""The code for a run's settings (engine.code_view): valid Python that carries every setting."""
from __future__ import annotations

import ast

import pytest

from engine.code_view import GROUPS, fastai_code, pytorch_outline
from engine.settings import ARCH_NAMES, METHODS, PRETRAINED_ARCHS, RunSettings


@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize("method", METHODS)
def test_both_texts_are_python_and_follow_the_settings(arch, method):
    s = RunSettings(arch=arch, method=method, pretrained=arch in PRETRAINED_ARCHS, size=64, bs=32,
                    epochs=7, freeze_epochs=2, lr=3e-3, lr_lo=2e-6, seed=123, valid_pct=0.25,
                    augment=True, flip=False)
    fastai, outline = fastai_code(s), pytorch_outline(s)
    ast.parse(fastai)
    ast.parse(outline)
    for text in (fastai, outline):
        assert "123" in text and "0.25" in text and "64" in text and "32" in text
    assert "do_flip=False" in fastai and "set_seed(123" in fastai
    if method == "fine_tune":
        assert "learn.fine_tune(7, base_lr=0.003, freeze_epochs=2)" in fastai
        assert "pct_start=0.99" in outline and "pct_start=0.3" in outline
    elif method == "unfreeze":
        assert "learn.unfreeze()" in fastai and "lr_max=slice(2e-06, 0.003)" in fastai
        assert "2e-06" in outline and "0.003]" in outline
    else:
        assert "learn.fit_one_cycle(7, lr_max=0.003)" in fastai
        assert ("requires_grad_(False)" in outline) == (arch != "simple_cnn")
    assert GROUPS[arch] in outline
    if arch == "simple_cnn":
        assert "Learner(dls, model" in fastai
    else:
        assert f"vision_learner(dls, {arch if arch.startswith('resnet') else repr(arch)}" in fastai


def test_non_default_settings_show_up():
    s = RunSettings(arch="resnet18", pretrained=False, augment=False, wd=0.1)
    fastai = fastai_code(s)
    assert "pretrained=False" in fastai and "wd=0.1" in fastai and "aug_transforms" not in fastai
    assert "Normalize" not in pytorch_outline(s)   # trained from scratch: not normalised
    assert "Normalize" in pytorch_outline(s.with_(pretrained=True))


def test_the_servers_folder_stays_private_and_a_name_cannot_break_the_code():
    s = RunSettings(folder="/srv/dllab/data/sessions/abc/bears", data_name="bears\nimport os  # x")
    for text in (fastai_code(s), pytorch_outline(s)):
        ast.parse(text)
        assert "/srv/dllab" not in text and "path/to/images" in text
    assert "\nimport os" not in fastai_code(s)


def test_the_groups_are_the_models_parameter_groups():
    from engine.models import GROUP_STARTS, n_param_groups
    for arch in ARCH_NAMES:
        assert GROUPS[arch].count(",") + 1 == n_param_groups(arch)
        starts = [f"body[{i}:]" for i in GROUP_STARTS[arch][1:]]
        assert all(s in GROUPS[arch] for s in starts)
