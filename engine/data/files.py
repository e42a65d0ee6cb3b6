"""What the parts of engine.data share about files: which ones count as images, which are junk,
the progress callback, and building a data folder atomically (engine.fsutil, with DataError)."""
from __future__ import annotations

import os
import stat
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


def is_regular_file(path: str | os.PathLike) -> bool:
    """A plain file, not a link (never followed), a FIFO, a socket or a device: opening a FIFO
    named cat.png would wait forever for a writer, so only these are ever read as images."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def image_files(folder: Path) -> list[Path]:
    """Image files under folder, sorted: regular files with an image suffix, skipping hidden
    entries, links (never followed) and anything that is not a plain file (FIFOs, sockets,
    devices)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d) and d != "__MACOSX")
        for name in filenames:
            path = Path(dirpath) / name
            if is_junk(name) or path.suffix.lower() not in IMAGE_SUFFIXES \
                    or not is_regular_file(path):
                continue
            out.append(path)
    return sorted(out)


def server_folders(root: str | os.PathLike) -> list[str]:
    """Names of the data sets an administrator put under root (<data dir>/folders): real
    sub-folders only. A symbolic link there is not listed, since it could point anywhere on the
    server, outside the data directory."""
    root = Path(root)
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    return [p.name for p in entries
            if not is_junk(p.name) and not p.is_symlink() and p.is_dir()]


def server_folder(root: str | os.PathLike, name: str) -> Path:
    """The data set `name` under root, checked as server_folders lists it (a plain name, a real
    folder, not a link, inside root once resolved); DataError otherwise."""
    root = Path(root)
    path = root / str(name)
    if name in server_folders(root) and path.resolve().parent == root.resolve():
        return path
    raise DataError(f"There is no data set folder named {name!r} under {root.name}/ (a link "
                    "to somewhere else on the server is not used); choose another.")


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
           "building_folder", "is_regular_file", "server_folders", "server_folder"]
