"""Unpacking a zip of class folders safely: every entry is checked before anything is written.

Refused as a whole: unsafe names (absolute, drive letters, backslashes, `..`, control characters,
names longer than the filesystem allows), links and special files, encrypted entries, duplicates,
overlapping entries (zip bombs), too many files or too many bytes. Extraction goes through a
temporary folder renamed into place; a name the filesystem still refuses, or a full disk, is a
DataError too, and the previous data set stays.
"""
from __future__ import annotations

import io
import os
import re
import stat
import unicodedata
import zipfile
import zlib
from pathlib import Path

from engine.data.errors import DataError
from engine.data.files import building_folder, is_junk

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What Linux filesystems accept (NAME_MAX, and PATH_MAX less room for the data folder's own path):
# a longer entry name would fail half-way through extraction, so it is refused before it starts.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024


def _zip_name_problem(info: zipfile.ZipInfo) -> str | None:
    """Why an entry's name is unsafe to extract (None when it is fine)."""
    name = info.orig_filename
    if "\x00" in name or _CONTROL.search(name):
        return "has control characters in its name"
    if "\\" in name:
        return "uses backslashes in its path"
    if name.startswith("/"):
        return "has an absolute path"
    if _DRIVE.match(name) or ":" in name:
        return "names a drive or uses a colon"
    if ".." in name.split("/"):
        return "climbs out of its folder with '..'"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in name.split("/")):
        return f"has a file or folder name longer than {MAX_NAME_BYTES} bytes"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"has a path longer than {MAX_PATH_BYTES} bytes"
    return None


def _zip_type_problem(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & 0x1:
        return "is encrypted"
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:   # Unix attributes present
        if stat.S_ISLNK(mode):
            return "is a link"
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and stat.S_IFMT(mode):
            return "is a special file (device, pipe or socket)"
    if info.external_attr & 0x400:   # Windows reparse point: a link or junction
        return "is a link"
    return None


def _local_header_len(info: zipfile.ZipInfo) -> int:
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    try:
        return 30 + len(info.orig_filename.encode(encoding))
    except UnicodeEncodeError:
        return 30 + len(info.orig_filename.encode("utf-8"))


def _os_reason(exc: OSError) -> str:
    """A few words on why the filesystem refused to write an entry."""
    import errno
    if exc.errno == errno.ENAMETOOLONG:
        return "a file or folder name is longer than the server's filesystem allows"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the server's disk is full"
    if exc.errno == errno.EILSEQ:
        return "a name uses characters the server's filesystem refuses"
    return exc.strerror or type(exc).__name__


def _declared_size(info: zipfile.ZipInfo) -> int:
    """What the zip's directory claims an entry unpacks to: a quick first check, never trusted."""
    return info.file_size


def _write_plan(zf: zipfile.ZipFile, plan: list[tuple[zipfile.ZipInfo, list[str]]], dest: Path,
                max_bytes: int) -> None:
    """Write the checked entries into a temporary folder that replaces dest at the end."""
    with building_folder(dest) as tmp:
        try:
            total = 0
            for info, parts in plan:
                target = tmp.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as fin, open(target, "xb") as fout:
                    while chunk := fin.read(1 << 16):
                        total += len(chunk)
                        if total > max_bytes:
                            raise DataError(f"The zip unpacks to more than "
                                            f"{max_bytes / 1e6:,.0f} MB (the limit), so "
                                            f"nothing was extracted.")
                        fout.write(chunk)
        except DataError:
            raise          # a ValueError too: kept apart from the damaged-zip errors below
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
                FileExistsError, ValueError):
            raise DataError("The zip is damaged or uses a feature the app cannot unpack, so "
                            "nothing was extracted.") from None


def extract_zip(src: str | os.PathLike | io.IOBase, dest: str | os.PathLike, *,
                max_files: int = 20_000, max_bytes: int = 2 * 1024 ** 3) -> Path:
    """Extract a zip of class folders into `dest`, safely; returns dest.

    Refused as a whole (DataError, nothing written, an existing dest left as it was): absolute
    paths, drive letters, backslashes, `..`, a name over MAX_NAME_BYTES per part or MAX_PATH_BYTES
    in all (or any other the filesystem refuses), links and special files, encrypted entries, the same
    name twice (case and Unicode form ignored), entries whose data overlap (a zip-bomb trick), more
    than `max_files` files, or more than `max_bytes` bytes once unpacked — counted while streaming,
    whatever the headers claim. Extraction goes to a temporary folder that replaces dest only at the
    end. macOS metadata (`__MACOSX/`, `._*`, `.DS_Store`) is skipped, and a single wrapping folder
    around the class folders is removed.
    """
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise DataError("This file is not a zip archive the app can read; make a .zip of the class "
                        "folders and try again.") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > 2 * max_files + 1000:
            raise DataError(f"The zip has {len(infos):,} entries, over the limit of {max_files:,} "
                            f"files, so nothing was extracted.")
        plan: list[tuple[zipfile.ZipInfo, list[str]]] = []
        files: set[str] = set()
        dirs: set[str] = set()
        declared = 0
        for info in infos:
            problem = _zip_name_problem(info) or _zip_type_problem(info)
            if problem:
                raise DataError(f"The zip entry {info.orig_filename!r} {problem}, so the zip was "
                                f"refused and nothing was extracted.")
            parts = [p for p in info.filename.split("/") if p not in ("", ".")]
            if not parts or parts[0] == "__MACOSX" or any(is_junk(p) for p in parts):
                continue
            key = "/".join(unicodedata.normalize("NFC", p).casefold() for p in parts)
            prefixes = ["/".join(key.split("/")[:k]) for k in range(1, len(parts))]
            if info.is_dir():
                if key in files:
                    raise DataError(f"The zip has {info.filename!r} both as a file and a folder, so "
                                    f"it was refused.")
                dirs.add(key)
                dirs.update(prefixes)
                continue
            if key in files or key in dirs or any(p in files for p in prefixes):
                raise DataError(f"The zip has {info.filename!r} more than once (or as both a file "
                                f"and a folder), so it was refused.")
            files.add(key)
            dirs.update(prefixes)
            declared += _declared_size(info)
            plan.append((info, parts))
        if len(plan) > max_files:
            raise DataError(f"The zip has {len(plan):,} files, over the limit of {max_files:,}, so "
                            f"nothing was extracted.")
        if not plan:
            raise DataError("The zip holds no files; it should hold one folder of images per class.")
        if declared > max_bytes:
            raise DataError(f"The zip would unpack to {declared / 1e6:,.0f} MB, over the "
                            f"{max_bytes / 1e6:,.0f} MB limit, so nothing was extracted.")
        # Several directory entries pointing at the same compressed bytes make a tiny zip unpack to
        # gigabytes (overlapping-entry bombs): each entry's data must end before the next begins.
        spans = sorted((i.header_offset, i.header_offset + _local_header_len(i) + i.compress_size)
                       for i in infos)
        for (start_a, end_a), (start_b, _) in zip(spans, spans[1:]):
            if end_a > start_b:
                raise DataError("The zip's entries overlap one another (a zip-bomb trick), so it was "
                                "refused.")
        if spans and spans[-1][1] > zf.start_dir:
            raise DataError("The zip's entries overlap its directory (a zip-bomb trick), so it was "
                            "refused.")
        # A single wrapping folder ("bears/teddy/1.jpg") is dropped so the class folders are on top.
        tops = {parts[0] for _, parts in plan}
        if len(tops) == 1 and all(len(parts) >= 3 for _, parts in plan):
            plan = [(info, parts[1:]) for info, parts in plan]

        try:
            _write_plan(zf, plan, dest, max_bytes)
        except OSError as exc:   # the filesystem refused a name or the folder, or the disk is full
            raise DataError(f"The zip could not be unpacked here ({_os_reason(exc)}), so "
                            "nothing was extracted.") from None
    return dest


__all__ = ["extract_zip"]
