"""engine.interpret: counts against brute force, orderings, and Grad-CAM on a model that has
learned to find a bright square in noise."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from engine import interpret
from engine.models import create_model


def test_confusion_matrix_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    for n_classes in (1, 2, 5, 13):
        t = rng.integers(0, n_classes, 500)
        p = rng.integers(0, n_classes, 500)
        cm = interpret.confusion_matrix(t, p, n_classes)
        slow = np.zeros((n_classes, n_classes), int)
        for a, b in zip(t, p):
            slow[a, b] += 1
        assert cm.dtype.kind == "i" and cm.shape == (n_classes, n_classes)
        np.testing.assert_array_equal(cm, slow)
        assert cm.sum() == 500


def test_confusion_matrix_rows_are_actual_and_bad_input_is_refused():
    cm = interpret.confusion_matrix([0, 0, 1], [1, 1, 1], 2)
    assert cm.tolist() == [[0, 2], [0, 1]]       # two actual-0 items predicted as 1
    assert interpret.confusion_matrix([], [], 3).sum() == 0
    with pytest.raises(interpret.InterpretError):
        interpret.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(interpret.InterpretError):
        interpret.confusion_matrix([0], [0, 1], 3)
    np.testing.assert_allclose(interpret.row_normalise([[1, 3], [0, 0]]), [[0.25, 0.75], [0, 0]])


def test_most_confused_order_ties_and_min_val():
    classes = ["a", "b", "c"]
    cm = np.array([[9, 2, 5],
                   [2, 9, 1],
                   [0, 5, 9]])
    assert interpret.most_confused(cm, classes) == [("a", "c", 5), ("c", "b", 5), ("a", "b", 2),
                                            ("b", "a", 2), ("b", "c", 1)]
    assert interpret.most_confused(cm, classes, min_val=2) == [("a", "c", 5), ("c", "b", 5), ("a", "b", 2),
                                                       ("b", "a", 2)]
    assert interpret.most_confused(cm, classes, min_val=6) == []
    assert interpret.most_confused(cm, classes, min_val=0)[-1] == ("b", "c", 1)  # zero cells never listed
    with pytest.raises(interpret.InterpretError):
        interpret.most_confused(cm, ["a", "b"])


def test_top_losses_largest_smallest_ties_and_k():
    losses = np.array([0.5, 2.0, 0.1, 2.0, 1.0])
    v, i = interpret.top_losses(losses, 3)
    assert i.tolist() == [1, 3, 4] and v.tolist() == [2.0, 2.0, 1.0]
    v, i = interpret.top_losses(losses, 2, largest=False)
    assert i.tolist() == [2, 0] and v.tolist() == [0.1, 0.5]
    assert len(interpret.top_losses(losses, 99)[1]) == 5 and len(interpret.top_losses(losses, 0)[1]) == 0
    assert interpret.top_losses(losses)[1].tolist() == [1, 3, 4, 0, 2]


def test_class_scores_by_hand():
    cm = np.array([[3, 1], [2, 4]])
    s = interpret.class_scores(cm, ["cat", "dog"])
    np.testing.assert_allclose(s.recall, [3 / 4, 4 / 6])
    np.testing.assert_allclose(s.precision, [3 / 5, 4 / 5])
    np.testing.assert_allclose(s.accuracy, [7 / 10, 7 / 10])
    assert s.support.tolist() == [4, 6]
    empty = interpret.class_scores(np.array([[2, 0], [0, 0]]), ["x", "y"])
    assert np.isnan(empty.precision[1]) and np.isnan(empty.recall[1])
    assert s.rows()[0]["class"] == "cat"


# ------------------------------------------------------------------------------------- Grad-CAM


def _square_data(n: int, rng: np.random.Generator, size: int = 32, side: int = 8):
    """Half the images are noise, half noise plus one bright square at a random place."""
    x = rng.uniform(0, 0.5, (n, 3, size, size)).astype(np.float32)
    y = np.zeros(n, np.int64)
    boxes = []
    for k in range(n):
        if k % 2:
            r, c = rng.integers(0, size - side, 2)
            x[k, :, r:r + side, c:c + side] = 1.0
            y[k] = 1
            boxes.append((r, c))
        else:
            boxes.append(None)
    return torch.from_numpy(x), torch.from_numpy(y), boxes


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(2),
                                      nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def square_model():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y, _ = _square_data(256, rng)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(4):
        for s in range(0, len(x), 32):
            loss = nn.functional.cross_entropy(model(x[s:s + 32]), y[s:s + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    tx, ty, _ = _square_data(64, np.random.default_rng(1))
    with torch.no_grad():
        acc = (model(tx).argmax(1) == ty).float().mean().item()
    assert acc > 0.95, f"the square finder only reached {acc:.2f} accuracy"
    return model


def test_grad_cam_peak_lies_inside_the_square(square_model):
    x, _, boxes = _square_data(12, np.random.default_rng(7))
    for k in range(1, 12, 2):
        cam = interpret.grad_cam(square_model, x[k], 1)
        assert cam.shape == (32, 32) and cam.dtype == np.float32
        assert 0 <= cam.min() and cam.max() == pytest.approx(1.0)
        r, c = np.unravel_index(int(cam.argmax()), cam.shape)
        r0, c0 = boxes[k]
        assert r0 <= r < r0 + 8 and c0 <= c < c0 + 8, f"peak {(r, c)} outside square at {(r0, c0)}"


def test_grad_cam_leaves_the_model_as_it_was(square_model):
    model = square_model
    model.train()
    model.zero_grad(set_to_none=True)  # the fixture's last training step left gradients behind
    for p in model.fc.parameters():
        p.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, _, _ = _square_data(2, np.random.default_rng(3))
    interpret.grad_cam(model, x[1:2], 1, layer=model.features[3])
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.features[3]._forward_hooks
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()


def test_grad_cam_on_a_classifier_and_a_fully_frozen_one():
    torch.manual_seed(0)
    model = create_model("simple_cnn", 3, pretrained=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cam = interpret.grad_cam(model, torch.randn(3, 24, 24), 2)
    assert cam.shape == (24, 24) and 0 <= cam.min() and cam.max() <= 1
    assert interpret.default_cam_layer(model) is model.body[-1]
    with pytest.raises(interpret.InterpretError):
        interpret.grad_cam(model, torch.randn(3, 24, 24), 3)


def test_overlay_and_colour_maps():
    img = np.zeros((10, 20, 3), np.uint8)
    cam = np.linspace(0, 1, 50, dtype=np.float32).reshape(5, 10)
    out = interpret.overlay(img, cam, alpha=1.0, cmap="viridis")
    assert out.shape == (10, 20, 3) and out.dtype == np.uint8
    assert tuple(interpret.colorize(np.array([0.0]), "viridis")[0]) == (0x44, 0x01, 0x54)
    assert tuple(interpret.colorize(np.array([1.0]), "cividis")[0]) == (0xfe, 0xe8, 0x38)
    assert (interpret.overlay(img + 100, cam, alpha=0.0) == 100).all()
    with pytest.raises(interpret.InterpretError):
        interpret.colorize(cam, "jet")


def test_cam_overlay_is_the_pipeline_the_page_ran_before():
    """cam_map + cam_overlay equal what the Explorer once wrote out twice by hand: preprocess like
    a validation image, Grad-CAM, then blend over the photo's centre square at CAM_SIDE pixels."""
    from engine.data import IMAGENET_MEAN, IMAGENET_STD, resize_crop
    from engine.models import Checkpoint, preprocess_image

    torch.manual_seed(0)
    model = create_model("simple_cnn", 3, pretrained=False).eval()
    meta = {"classes": ["a", "b", "c"], "size": 16, "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD)}
    ckpt = Checkpoint(model, meta)
    photo = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    by_hand_cam = interpret.grad_cam(model, preprocess_image(photo, 16, meta["mean"], meta["std"]), 2)
    by_hand = interpret.overlay(resize_crop(photo, 224), by_hand_cam, alpha=0.35, cmap="viridis")

    cam = interpret.cam_map(ckpt, photo, 2)
    np.testing.assert_array_equal(cam, by_hand_cam)
    assert cam.shape == (16, 16) and cam.dtype == np.float32
    out = interpret.cam_overlay(ckpt, photo, 2, alpha=0.35, cmap="viridis")
    assert out.shape == (interpret.CAM_SIDE, interpret.CAM_SIDE, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, by_hand)
    # A map kept from before gives the same picture without another backward pass.
    np.testing.assert_array_equal(
        interpret.cam_overlay(ckpt, photo, 2, alpha=0.35, cmap="viridis", cam=cam), by_hand)
    # Opacity 0 is the centre square alone; another side is honoured.
    np.testing.assert_array_equal(interpret.cam_overlay(ckpt, photo, 2, alpha=0.0, side=20),
                                  resize_crop(photo, 20))
    with pytest.raises(interpret.InterpretError):
        interpret.cam_map(ckpt, photo, 3)
