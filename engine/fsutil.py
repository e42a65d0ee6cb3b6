"""Writing files and folders atomically: a reader sees the old version or the new one, never half.

Everything is first written under a hidden temporary name next to its destination (same folder,
so the same file system) and then renamed into place; a failure removes the temporary copy and
leaves whatever was at the destination untouched.

    with atomic_dir(dest) as tmp:            # a folder: fill tmp, it becomes dest on success
        (tmp / "a.txt").write_text("...")
    atomic_write_bytes(path, blob)           # a file in one piece
    with atomic_file(path) as out:           # a file written in chunks
        out.write(chunk)
    with atomic_text_file(path) as f:        # the same, as text (csv.writer(f), …)
        f.write("...")
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import BinaryIO, Iterator, Literal, TextIO

#: What atomic_dir does when dest already exists at the moment of the rename.
Existing = Literal["replace", "keep", "error"]


class NotAFolderError(NotADirectoryError):
    """atomic_dir's destination exists and is a file, so a folder cannot take its place."""


def _temp_name(path: Path, unique: bool) -> Path:
    # Hidden (leading dot), so folder listings that skip dot-files never see a half-written file.
    tag = f".{uuid.uuid4().hex}" if unique else ""
    return path.with_name(f".{path.name}{tag}.part")


@contextmanager
def atomic_file(path: str | os.PathLike, *, fsync: bool = True, mode: int = 0o666,
                unique: bool = True, overwrite: bool = True,
                lock: threading.Lock | None = None) -> Iterator[BinaryIO]:
    """An open binary file that becomes `path` when the block ends without an exception.

    fsync: flush the data to disk before the rename (a crash then cannot leave an empty file).
    mode: permission bits before the umask, as open() uses; 0o600 keeps the file private.
    unique: a random temporary name, so threads writing the same path never share one; with
        False the name is fixed (`.<name>.part`), so a leftover from a killed process is
        overwritten by the next try instead of piling up (for very large downloads).
    overwrite: False refuses an existing `path` with FileExistsError (the new copy is dropped);
        `lock`, when given, is held around that check and the rename, so threads sharing it
        agree on which one wrote the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, unique)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if unique else os.O_TRUNC)
    fd = os.open(tmp, flags | getattr(os, "O_BINARY", 0), mode)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        with lock if lock is not None else nullcontext():
            if not overwrite and path.exists():
                raise FileExistsError(f"{path} already exists.")
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_text_file(path: str | os.PathLike, *, encoding: str = "utf-8",
                     newline: str | None = None, **options) -> Iterator[TextIO]:
    """atomic_file for text: an open text stream (encoding and newline as open() takes them)."""
    with atomic_file(path, **options) as raw:
        text = io.TextIOWrapper(raw, encoding=encoding, newline=newline)
        yield text
        text.flush()
        text.detach()   # atomic_file still has to fsync, close and rename the file underneath


def atomic_write_bytes(path: str | os.PathLike, data: bytes, **options) -> Path:
    """Write `data` to `path` atomically (options as atomic_file); returns the path."""
    with atomic_file(path, **options) as out:
        out.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8",
                      **options) -> Path:
    """Write `text` to `path` atomically (options as atomic_file); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding), **options)


def replace_dir(tmp: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Put folder tmp where dest is. An old dest is renamed aside first and removed only after the
    new one is in place; if that rename fails, the old one is put back."""
    tmp, dest = Path(tmp), Path(dest)
    if dest.exists() and not dest.is_dir():
        raise NotAFolderError(f"{dest} exists and is a file, not a folder.")
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}") if dest.exists() else None
    if old is not None:
        os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError:
        if old is not None:
            os.rename(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(dest: str | os.PathLike, *, existing: Existing = "replace") -> Iterator[Path]:
    """A fresh temporary folder next to `dest` that becomes `dest` when the block ends without an
    exception; on an exception it is removed and `dest` is left as it was.

    existing: what happens to a `dest` that exists when the block ends —
        "replace": the new folder takes its place (replace_dir; NotAFolderError if it is a file);
        "keep": the existing folder wins and the new one is dropped (another process got there
            first with the same content);
        "error": a plain rename, which fails (OSError) when dest is a file or a folder with
            anything in it.
    """
    if existing not in ("replace", "keep", "error"):
        raise ValueError(f"Unknown existing={existing!r}; choose replace, keep or error.")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.part-", dir=dest.parent))
    try:
        yield tmp
        if existing == "keep" and dest.is_dir():
            shutil.rmtree(tmp)
        elif existing == "error":
            os.rename(tmp, dest)
        else:
            replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["Existing", "NotAFolderError", "atomic_file", "atomic_text_file", "atomic_write_bytes",
           "atomic_write_text", "replace_dir", "atomic_dir"]
