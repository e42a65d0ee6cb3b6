"""Listing a data set folder as (path, class index) items, and the seeded train/valid split."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from engine.data.errors import DataError
from engine.data.files import VALID_NAMES, image_files, is_junk


@dataclass
class Items:
    """A data set as lists of (path, class index); classes sorted by name."""

    train: list[tuple[Path, int]]
    valid: list[tuple[Path, int]]
    classes: list[str]
    has_valid_folder: bool = False   # True when valid/ came from the folder, not a random split


def _class_dirs(folder: Path) -> dict[str, list[Path]]:
    out = {}
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.is_symlink() and not is_junk(child.name) \
                and child.name != "__MACOSX":
            files = image_files(child)
            if files:
                out[child.name] = files
    return out


def _split_key(seed: int, rel: str) -> bytes:
    return hashlib.sha256(f"{seed}:{rel}".encode("utf-8")).digest()


def split_items(paths_by_class: dict[str, list[Path]], root: Path, *, valid_pct: float = 0.2,
                seed: int = 42) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]], list[str]]:
    """Seeded split, the same on every run and every machine: each class holds out its files with
    the lowest hash of (seed, path relative to root), round(n × valid_pct) of them (at least one
    when the class has two or more). A file keeps its side when others are added or removed, so
    cleaning a data set never moves training images into validation.
    """
    classes = sorted(paths_by_class)
    train, valid = [], []
    for label, cls in enumerate(classes):
        rels = sorted((p.relative_to(root).as_posix(), p) for p in paths_by_class[cls])
        n = len(rels)
        n_valid = int(round(n * valid_pct)) if valid_pct > 0 else 0
        if valid_pct > 0 and n >= 2:
            n_valid = min(max(n_valid, 1), n - 1)
        ranked = sorted(rels, key=lambda rp: _split_key(seed, rp[0]))
        held = {rp[0] for rp in ranked[:n_valid]}
        for rel, path in rels:
            (valid if rel in held else train).append((path, label))
    key = lambda item: item[0].relative_to(root).as_posix()  # noqa: E731
    return sorted(train, key=key), sorted(valid, key=key), classes


def load_items(folder: str | os.PathLike, *, valid_pct: float = 0.2, seed: int = 42) -> Items:
    """List a data set folder: train/ and valid/ (or val/) sub-folders when present, else class
    folders split by `split_items`. Lists are sorted by path; classes by name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"There is no folder at {folder}.")
    valid_dir = next((folder / n for n in VALID_NAMES if (folder / n).is_dir()), None)
    if (folder / "train").is_dir() and valid_dir is not None:
        train_by = _class_dirs(folder / "train")
        valid_by = _class_dirs(valid_dir)
        classes = sorted(set(train_by) | set(valid_by))
        index = {c: i for i, c in enumerate(classes)}
        train = [(p, index[c]) for c in sorted(train_by) for p in train_by[c]]
        valid = [(p, index[c]) for c in sorted(valid_by) for p in valid_by[c]]
        items = Items(sorted(train), sorted(valid), classes, has_valid_folder=True)
        if not items.valid:
            raise DataError(f"The folder {valid_dir.name}/ holds no images in class folders.")
    else:
        by_class = _class_dirs(folder)
        train, valid, classes = split_items(by_class, folder, valid_pct=valid_pct, seed=seed)
        items = Items(train, valid, classes)
    if len(items.classes) < 2:
        found = f"only {items.classes[0]!r}" if items.classes else "none"
        raise DataError(f"A classifier needs at least two class folders of images in {folder.name}; "
                        f"found {found}.")
    if not items.train:
        raise DataError(f"There are no training images in {folder.name}.")
    return items


__all__ = ["Items", "split_items", "load_items"]
