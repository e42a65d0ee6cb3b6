"""Decoded-image cache and loaders: each file is decoded once per process (DecodeCache), held in
memory as uint8 tensors, and served in batches through torch DataLoaders (DataLoaders)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from engine.data.config import DataConfig
from engine.data.errors import DataError
from engine.data.files import Progress
from engine.data.items import load_items
from engine.data.transforms import resize_crop, train_transforms, valid_transforms
from engine.images import ImageError, load_image


class DecodeCache:
    """Decoded, resized images kept between loader builds (the LR finder's job and the training job,
    the cleaner's retrain, a page rerun), so a JPEG is decoded once per process, not once per build.

    Keyed by (absolute path, size, file size, modification time in ns, inode): a file changed or
    replaced on disk is decoded afresh. Bounded by `max_bytes`: entries not used by the current
    build go first, least recently used first; entries of the current build are never evicted for
    one another. (Plain LRU would keep nothing useful for a data set a little larger than the
    cache, since every build reads the files in the same order; this way a prefix stays.) Safe to
    share between job threads (one lock). Entries are read-only arrays, copied out by decode_items.
    """

    def __init__(self, max_bytes: int):
        from collections import OrderedDict
        import threading

        self.max_bytes = int(max_bytes)
        self._items: "OrderedDict[tuple, tuple[np.ndarray, int]]" = OrderedDict()  # key -> (image, build)
        self._lock = threading.Lock()
        self._builds = 0
        self.nbytes = 0
        self.hits = self.misses = 0

    @staticmethod
    def key(path: Path, size: int) -> tuple | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (str(Path(path).resolve()), int(size), st.st_size, st.st_mtime_ns, st.st_ino)

    def new_build(self) -> int:
        """A number for one loader build; its entries are protected from each other."""
        with self._lock:
            self._builds += 1
            return self._builds

    def get(self, key: tuple | None, build: int = 0) -> np.ndarray | None:
        if key is None:
            return None
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._items[key] = (entry[0], max(entry[1], build))
            self._items.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: tuple | None, arr: np.ndarray, build: int = 0) -> bool:
        """Keep arr under key; False when it does not fit without evicting this build's entries."""
        if key is None or arr.nbytes > self.max_bytes:
            return False
        arr = np.array(arr, copy=True)
        arr.flags.writeable = False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old[0].nbytes
            while self.nbytes + arr.nbytes > self.max_bytes and self._items:
                first = next(iter(self._items))
                if self._items[first][1] >= build:
                    return False      # everything left belongs to this build: keep the prefix
                dropped, _ = self._items.pop(first)
                self.nbytes -= dropped.nbytes
            self._items[key] = (arr, build)
            self.nbytes += arr.nbytes
            return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)


def _cache_bytes() -> int:
    try:
        return int(float(os.environ.get("DLLAB_DECODE_CACHE_MB", "1024")) * 2**20)
    except ValueError:
        return 1024 * 2**20   # an unreadable setting must not stop the app


#: The process's decode cache (DLLAB_DECODE_CACHE_MB, default 1024 MB; 0 turns it off).
DECODE_CACHE = DecodeCache(_cache_bytes())


def decode_items(paths: Sequence[Path], size: int, *, progress: Progress | None = None,
                 workers: int | None = None, cache: DecodeCache | None = DECODE_CACHE):
    """Decode each file once (load_image rules) at size×size.

    Returns (uint8 tensor (N_ok, 3, size, size), indices into `paths` that decoded, [(path, reason)]
    for those that did not). Threads share the work: Pillow and OpenCV release the GIL. Files
    already in `cache` (same path, size and modification time) are not decoded again.
    """
    build = cache.new_build() if cache is not None else 0

    def one(path: Path):
        key = DecodeCache.key(path, size) if cache is not None else None
        hit = cache.get(key, build) if cache is not None else None
        if hit is not None:
            return hit, None
        try:
            img = resize_crop(load_image(path), size)                       # (size, size, 3)
        except ImageError as exc:
            return None, str(exc)
        if cache is not None:
            cache.put(key, img, build)
        return img, None

    n = len(paths)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    ok, bad = [], []
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, (img, reason) in enumerate(pool.map(one, paths)):
            if img is None:
                bad.append((paths[i], reason))
            else:
                out[len(ok)] = img
                ok.append(i)
            if progress is not None and (i % 256 == 0 or i == n - 1):
                progress((i + 1) / n, f"Decoded {i + 1:,} of {n:,} images")
    images = torch.from_numpy(out[:len(ok)]).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S)
    return images, ok, bad


class CachedImages:
    """A torch Dataset over decoded uint8 images (N, 3, S, S) held in memory."""

    def __init__(self, images, labels):
        self.images = images          # (N, 3, S, S) uint8
        self.labels = labels          # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


class BatchCollate:
    """Stacks items into a batch and applies a batch transform (picklable, for worker processes)."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, batch):
        x = torch.stack([b[0] for b in batch])                           # (B, 3, S, S) uint8
        y = torch.stack([b[1] for b in batch])                           # (B,) int64
        return self.transform(x), y


@dataclass
class DataLoaders:
    """Train and valid loaders plus what is needed to read their batches back.

    Batches are (x float32 (B, 3, size, size) normalised with mean/std, y int64 (B,)). `valid` is
    never shuffled: batch order follows `valid_items`, so prediction i belongs to valid_items[i].
    """

    train: object
    valid: object
    classes: list[str]
    train_items: list[tuple[Path, int]]
    valid_items: list[tuple[Path, int]]
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    cfg: DataConfig
    skipped: list[tuple[Path, str]] = field(default_factory=list)   # files that did not decode

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _device_type(device) -> str:
    return str(getattr(device, "type", device)).split(":", 1)[0]


def build_dataloaders(folder: str | os.PathLike, cfg: DataConfig | None = None, *,
                      device="cpu", progress: Progress | None = None) -> DataLoaders:
    """Decode the folder once, split it (load_items) and wrap it in torch DataLoaders.

    Files that do not decode are left out and listed in `.skipped`. Workers and pinned memory
    follow cfg, or the device when cfg leaves them None (none on CPU: decoded images are in memory
    and worker processes would only compete with training for the cores).
    """
    from torch.utils.data import DataLoader

    cfg = cfg or DataConfig()
    items = load_items(folder, valid_pct=cfg.valid_pct, seed=cfg.seed)
    paths = [p for p, _ in items.train] + [p for p, _ in items.valid]
    images, ok, bad = decode_items(paths, cfg.size, progress=progress)
    labels_all = [y for _, y in items.train] + [y for _, y in items.valid]
    n_train = len(items.train)
    ok_train = [i for i in ok if i < n_train]
    ok_valid = [i for i in ok if i >= n_train]
    train_items = [items.train[i] for i in ok_train]
    valid_items = [items.valid[i - n_train] for i in ok_valid]
    if not train_items:
        raise DataError("None of the training images could be decoded; run verify_images on the "
                        "folder to see why.")
    labels = torch.tensor([labels_all[i] for i in ok], dtype=torch.int64)
    train_ds = CachedImages(images[:len(ok_train)], labels[:len(ok_train)])
    valid_ds = CachedImages(images[len(ok_train):], labels[len(ok_train):])

    kind = _device_type(device)
    workers = cfg.num_workers if cfg.num_workers is not None else \
        (0 if kind in ("cpu", "mps") else max(0, min(8, (os.cpu_count() or 1) - 1)))
    pin = cfg.pin_memory if cfg.pin_memory is not None else kind == "cuda"
    extra = {"persistent_workers": True} if workers > 0 else {}
    gen = torch.Generator().manual_seed(int(cfg.seed))
    train = DataLoader(train_ds, batch_size=cfg.bs, shuffle=True, generator=gen,
                       # a last batch of one image would break BatchNorm statistics
                       drop_last=len(train_ds) > cfg.bs, num_workers=workers, pin_memory=pin,
                       collate_fn=BatchCollate(train_transforms(cfg)), **extra)
    valid = DataLoader(valid_ds, batch_size=cfg.bs, shuffle=False, num_workers=workers,
                       pin_memory=pin, collate_fn=BatchCollate(valid_transforms(cfg)), **extra)
    return DataLoaders(train=train, valid=valid, classes=list(items.classes),
                       train_items=train_items, valid_items=valid_items, size=cfg.size,
                       mean=tuple(cfg.mean), std=tuple(cfg.std), cfg=cfg, skipped=bad)


__all__ = ["DecodeCache", "DECODE_CACHE", "decode_items", "CachedImages", "BatchCollate",
           "DataLoaders", "build_dataloaders"]
