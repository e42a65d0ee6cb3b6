"""What the parts of engine.data share about files: which ones count as images, which are junk,
the progress callback, and building a data folder atomically (engine.fsutil, with DataError)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from engine.data.errors import DataError
from engine.fsutil import Existing, NotAFolderError, atomic_dir

#: File suffixes taken as images when a folder is listed (content is still checked on decoding).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
VALID_NAMES = ("valid", "val", "validation")
# Files that archivers and desktops add; skipped, never treated as data.
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}

#: progress(fraction done in [0, 1], message) — how long work reports where it is.
Progress = Callable[[float, str], None]


def is_junk(name: str) -> bool:
    """Hidden files and folders and the metadata archivers and desktops add."""
    return name.lower() in _JUNK_NAMES or name.startswith("._") or name.startswith(".")


def image_files(folder: Path) -> list[Path]:
    """Image files under folder, sorted, skipping hidden entries and links (never followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d) and d != "__MACOSX")
        for name in filenames:
            path = Path(dirpath) / name
            if is_junk(name) or path.suffix.lower() not in IMAGE_SUFFIXES or path.is_symlink():
                continue
            out.append(path)
    return sorted(out)


@contextmanager
def building_folder(dest: Path, *, existing: Existing = "replace") -> Iterator[Path]:
    """engine.fsutil.atomic_dir, with a dest that is a file refused as a DataError sentence."""
    try:
        with atomic_dir(dest, existing=existing) as tmp:
            yield tmp
    except NotAFolderError:
        raise DataError(f"{dest.name} exists and is a file, not a folder; choose another "
                        f"name.") from None


__all__ = ["IMAGE_SUFFIXES", "VALID_NAMES", "Progress", "is_junk", "image_files",
           "building_folder"]
