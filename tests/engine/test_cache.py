"""The decoded-image cache: build_dataloaders holds exactly the tensors a fresh decode gives, later
epochs and the LR finder never decode again, a second build reuses the process cache, a changed file
is decoded afresh, and the cache stays within its byte limit."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from engine import data
from engine.images import load_image
from engine.models import create_model
from engine.training import Learner


@pytest.fixture
def folder(tmp_path):
    """Two classes of JPEG and PNG photos of different sizes and aspect ratios."""
    import cv2

    rng = np.random.default_rng(1)
    for c in ("cats", "dogs"):
        (tmp_path / c).mkdir()
        for i in range(9):
            h, w = int(rng.integers(30, 90)), int(rng.integers(30, 90))
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            cv2.imwrite(str(tmp_path / c / f"{i}.{'jpg' if i % 2 else 'png'}"), img)
    return tmp_path


@pytest.fixture(autouse=True)
def fresh_cache():
    data.DECODE_CACHE.clear()
    yield
    data.DECODE_CACHE.clear()


def _fresh(path, size):
    """Decoding afresh, the way a plain loader would: (3, size, size) uint8."""
    return torch.from_numpy(data.resize_crop(load_image(path), size)).permute(2, 0, 1)


def _count_decodes(monkeypatch):
    calls = []

    def counting(path, *a, **k):
        calls.append(path)
        return load_image(path, *a, **k)

    monkeypatch.setattr(data.loaders, "load_image", counting)
    return calls


def test_cache_holds_what_a_fresh_decode_gives(folder):
    cfg = data.DataConfig(size=24, bs=4, augment=False, valid_pct=0.25)
    dls = data.build_dataloaders(folder, cfg)
    for ds, items in ((dls.train.dataset, dls.train_items), (dls.valid.dataset, dls.valid_items)):
        assert len(ds) == len(items)
        for i, (path, label) in enumerate(items):
            x, y = ds[i]
            assert x.dtype == torch.uint8 and torch.equal(x, _fresh(path, 24)), path
            assert int(y) == label
    # The validation batches are the fresh decodes, normalised.
    xb, _ = next(iter(dls.valid))
    fresh = torch.stack([_fresh(p, 24) for p, _ in dls.valid_items[:len(xb)]]).float() / 255
    m = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    s = torch.tensor(cfg.std).view(1, 3, 1, 1)
    torch.testing.assert_close(xb, (fresh - m) / s)


def test_epochs_and_the_lr_finder_do_not_decode_again(folder, monkeypatch):
    dls = data.build_dataloaders(folder, data.DataConfig(size=16, bs=4))
    calls = _count_decodes(monkeypatch)
    for _ in range(2):
        for _ in dls.train:
            pass
    torch.manual_seed(0)
    learn = Learner(create_model("simple_cnn", 2, pretrained=False), dls, device="cpu")
    learn.lr_find(num_it=6)
    learn.fit_one_cycle(1, 1e-3)
    assert calls == []


def test_a_second_build_reuses_the_cache_and_a_changed_file_is_decoded_afresh(folder, monkeypatch):
    import cv2

    cfg = data.DataConfig(size=20, bs=4, augment=False)
    first = data.build_dataloaders(folder, cfg)
    calls = _count_decodes(monkeypatch)
    second = data.build_dataloaders(folder, cfg)
    assert calls == []                                          # every image came from the cache
    assert torch.equal(first.train.dataset.images, second.train.dataset.images)
    assert data.DECODE_CACHE.hits >= len(first.train_items) + len(first.valid_items)

    path = first.train_items[0][0]
    new = np.full((40, 50, 3), 200, np.uint8)
    cv2.imwrite(str(path), new)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    third = data.build_dataloaders(folder, cfg)
    assert calls == [path]                                      # only the changed file
    i = [p for p, _ in third.train_items].index(path)
    assert torch.equal(third.train.dataset.images[i], _fresh(path, 20))
    # Another size is another entry: no stale image at the wrong size.
    calls.clear()
    data.build_dataloaders(folder, data.DataConfig(size=12, bs=4, augment=False))
    assert len(calls) == len(first.train_items) + len(first.valid_items)


def test_cache_entries_are_read_only_and_the_limit_holds(folder):
    cache = data.DecodeCache(max_bytes=3 * 16 * 16 * 3)          # room for three 16-px images
    paths = sorted(folder.rglob("*.*"))
    images, ok, bad = data.decode_items(paths[:5], 16, cache=cache, workers=1)
    assert ok == list(range(5)) and not bad
    # One build never evicts its own entries: the first three stay (a prefix a rebuild can use).
    assert len(cache) == 3 and cache.nbytes <= cache.max_bytes
    keys = [data.DecodeCache.key(p, 16) for p in paths]
    assert all(cache.get(k) is not None for k in keys[:3]) and cache.get(keys[3]) is None
    entry = cache.get(keys[0])
    assert not entry.flags.writeable
    images[0].zero_()                                            # the caller's copy, not the entry
    assert entry.any()
    # A later build evicts what earlier builds left, least recently used first.
    cache.get(keys[2])
    data.decode_items(paths[5:7], 16, cache=cache, workers=1)
    assert cache.get(keys[2]) is not None and cache.get(keys[5]) is not None
    assert cache.get(keys[0]) is None and cache.get(keys[1]) is None
    off, _, _ = data.decode_items(paths[:5], 16, cache=None)
    assert torch.equal(off[1:], images[1:])


def test_a_data_set_larger_than_the_cache_still_hits_on_a_rebuild(folder, monkeypatch):
    paths = sorted(folder.rglob("*.*"))
    cache = data.DecodeCache(max_bytes=10 * 16 * 16 * 3)         # 10 of the 18 images fit
    data.decode_items(paths, 16, cache=cache, workers=1)
    calls = _count_decodes(monkeypatch)
    data.decode_items(paths, 16, cache=cache, workers=1)
    assert len(calls) == len(paths) - 10                          # plain LRU would decode all 18
