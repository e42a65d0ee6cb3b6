"""Checking a data folder: which files do not decode, and moving them to a quarantine folder."""
from __future__ import annotations

import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.data.errors import DataError
from engine.data.files import image_files
from engine.images import ImageError, load_image
from engine.paths import data_dir


def _check_one(path: Path) -> str | None:
    try:
        load_image(path)
        return None
    except ImageError as exc:
        return str(exc)


def verify_images(folder: str | os.PathLike, *, delete: bool = False,
                  quarantine: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """Files under `folder` that do not decode by engine.images.load_image rules, as (path, reason).

    With `delete`, each bad file is moved (never unlinked) to `quarantine` (default
    <data dir>/quarantine/<folder name>-<time>), keeping its path relative to `folder`, so a mistake
    can be undone by moving it back.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"There is no folder at {folder}.")
    paths = image_files(folder)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        reasons = list(pool.map(_check_one, paths))
    bad = [(p, r) for p, r in zip(paths, reasons) if r is not None]
    if delete and bad:
        qroot = Path(quarantine) if quarantine is not None else \
            data_dir() / "quarantine" / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        for path, _ in bad:
            target = qroot / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target = target.with_name(f"{target.stem}-{uuid.uuid4().hex[:6]}{target.suffix}")
            shutil.move(str(path), str(target))
    return bad


__all__ = ["verify_images"]
