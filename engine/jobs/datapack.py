"""A data set folder as one packed blob that travels to a Ray worker, keyed by its content, and the
worker's cache of unpacked data sets.

A worker may be on another machine, so it never reads the server's disk: the server packs the
folder once (an uncompressed tar whose headers carry no times, owners or modes, so the bytes and
their key depend only on the file names and contents), and a worker unpacks it into
<cache>/<key>/ the first time it sees that key. The next job on the same data finds the folder there
and never fetches the blob. Nothing here imports Ray.

Settings (environment variables, read on the worker):
  DLLAB_RAY_CACHE      where workers keep unpacked data sets (default <temp dir>/dllab-ray-cache-<uid>)
  DLLAB_RAY_CACHE_MB   total size kept; the least recently used data sets go first (default 10240)
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.fsutil import atomic_dir

#: A key is the SHA-256 of the packed bytes, in hex; nothing else may name a cache folder.
KEY_CHARS = frozenset("0123456789abcdef")


class PackError(ValueError):
    """A data set that cannot be packed or unpacked; the message is a sentence for the user."""


@dataclass(frozen=True)
class Pack:
    """One packed data set: its key (content hash), the tar bytes, and what it holds."""

    key: str
    data: bytes
    n_files: int


def signature(folder: str | os.PathLike) -> tuple[tuple[str, int, int], ...]:
    """(relative path, size, mtime) of every regular file: cheap to read, and it changes whenever
    a file is added, removed or rewritten, so a server can keep a folder's pack until it does."""
    root = Path(folder)
    if not root.is_dir():
        raise PackError(f"There is no data folder at {root}; choose the data set again.")
    out = []
    for path in sorted(_files(root)):
        st = path.stat()
        out.append((path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _files(root: Path) -> list[Path]:
    """Every regular file under root; symbolic links are left out (they could point anywhere)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not (base / d).is_symlink())
        found += [base / f for f in filenames if (base / f).is_file() and not (base / f).is_symlink()]
    return found


def pack_folder(folder: str | os.PathLike, max_bytes: int | None = None) -> Pack:
    """The folder's files as one tar in memory, in name order, with neutral headers (mode 0644, no
    owner, time 0): the same files give the same bytes and the same key on any machine."""
    root = Path(folder)
    paths = sorted(_files(root), key=lambda p: p.relative_to(root).as_posix())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.size, info.mode, info.mtime, info.type = path.stat().st_size, 0o644, 0, tarfile.REGTYPE
            with open(path, "rb") as f:
                tar.addfile(info, f)
            if max_bytes is not None and buf.tell() > max_bytes:
                raise PackError(f"The data set in {root.name} is over {max_bytes / 2**20:,.0f} MB, "
                                "more than a Ray job may send to a worker (DLLAB_RAY_PACK_MB).")
    data = buf.getvalue()
    return Pack(key=hashlib.sha256(data).hexdigest(), data=data, n_files=len(paths))


def cache_root() -> Path:
    """Where this worker keeps unpacked data sets (private to the user: 0700)."""
    default = Path(tempfile.gettempdir()) / f"dllab-ray-cache-{os.getuid()}"
    root = Path(os.environ.get("DLLAB_RAY_CACHE") or default)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def cached(key: str) -> Path | None:
    """The unpacked folder of key when this worker has it (and marks it as just used)."""
    folder = cache_root() / _check_key(key)
    if not folder.is_dir():
        return None
    os.utime(folder)   # least recently used goes first when the cache is trimmed
    return folder


def unpack(key: str, data: bytes) -> Path:
    """Unpack data into <cache>/<key>/ (atomically: a half-written folder is never seen; when two
    jobs on one machine unpack the same key at once, the first one's folder is kept) and check that
    the bytes are the ones the key names."""
    _check_key(key)
    if hashlib.sha256(data).hexdigest() != key:
        raise PackError("The data set arrived damaged (its content does not match its key); "
                        "start the job again.")
    dest = cache_root() / key
    with atomic_dir(dest, existing="keep") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            # The "data" filter refuses absolute names, "..", links out of the folder and devices.
            tar.extractall(tmp, filter="data")
    trim(keep=key)
    return dest


def trim(keep: str | None = None, max_bytes: int | None = None) -> list[str]:
    """Remove the least recently used data sets until the cache fits DLLAB_RAY_CACHE_MB; returns
    the keys removed (never `keep`, the one a job is about to use)."""
    if max_bytes is None:
        max_bytes = int(float(os.environ.get("DLLAB_RAY_CACHE_MB", "10240")) * 2**20)
    root = cache_root()
    entries = []
    for child in root.iterdir():
        if child.is_dir() and set(child.name) <= KEY_CHARS and len(child.name) == 64:
            size = sum(f.stat().st_size for f in child.rglob("*") if f.is_file())
            entries.append((child.stat().st_mtime, child.name, size))
    total = sum(size for _, _, size in entries)
    removed = []
    for _, name, size in sorted(entries):
        if total <= max_bytes:
            break
        if name == keep:
            continue
        shutil.rmtree(root / name, ignore_errors=True)
        total -= size
        removed.append(name)
    return removed


def _check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) != 64 or not set(key) <= KEY_CHARS:
        raise PackError("A data set key must be 64 hexadecimal characters.")
    return key


__all__ = ["Pack", "PackError", "signature", "pack_folder", "cache_root", "cached", "unpack", "trim"]
