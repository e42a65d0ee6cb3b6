"""Data sets for the training engine: sources, intake, checking, split, transforms and loaders.

Every source ends as a folder of class folders holding image files (`<root>/<class>/<file>`, or
`<root>/train/<class>/…` and `<root>/valid/<class>/…`), so cleaning and relabelling work the same
for all of them. Sources: scikit-learn's digits (offline default), Oxford-IIIT Pet, a zip, an
existing folder, and URL lists (`download_images`, from engine.download).
"""
from __future__ import annotations

import hashlib
import math
import io
import os
import re
import shutil
import stat
import tempfile
import time
import unicodedata
import uuid
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from engine.download import (DownloadReport, class_name_from_url_file, download_images,  # noqa: F401
                             read_url_file)
from engine.images import ImageError, load_image
from engine.paths import data_dir

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: File suffixes taken as images when a folder is listed (content is still checked on decoding).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
VALID_NAMES = ("valid", "val", "validation")
# Files that archivers and desktops add; skipped, never treated as data.
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}

Progress = Callable[[float, str], None]


class DataError(ValueError):
    """A data set that cannot be used as given; the message is a sentence for the user."""


# --------------------------------------------------------------------------------------------
# Config


@dataclass
class DataConfig:
    """How a folder becomes training batches. Defaults suit the digits on a CPU."""

    size: int = 64                  # image side in pixels, after resize and crop (square)
    bs: int = 64                    # batch size (images per step), train and valid
    valid_pct: float = 0.2          # share of each class held out when there is no valid/ folder
    seed: int = 42                  # seed of the split and of the train shuffle order
    augment: bool = True            # random flip/rotate/zoom/lighting on training images
    flip: bool = True               # horizontal flips (turn off for digits and text)
    max_rotate: float = 10.0        # largest rotation, degrees either way
    max_zoom: float = 1.1           # largest zoom-in factor (1.0 = none)
    max_lighting: float = 0.2       # largest brightness and contrast change, as a fraction
    pad_mode: str = "reflection"    # what rotation shows past the edges: reflection|zeros|border
    num_workers: int | None = None  # loader worker processes; None = choose per device
    pin_memory: bool | None = None  # page-locked batches; None = only on CUDA
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel mean of [0, 1] pixels
    std: tuple[float, float, float] = IMAGENET_STD    # per-channel std of [0, 1] pixels

    def __post_init__(self) -> None:
        if int(self.size) < 8:
            raise DataError(f"The image size must be at least 8 pixels, not {self.size}.")
        if int(self.bs) < 1:
            raise DataError(f"The batch size must be at least 1, not {self.bs}.")
        if self.pad_mode not in ("reflection", "zeros", "border"):
            raise DataError(f"Unknown pad_mode {self.pad_mode!r}; choose reflection, zeros or border.")
        if not 0.0 <= float(self.valid_pct) < 1.0:
            raise DataError(f"The validation share must be from 0 to below 1, not {self.valid_pct}.")


# --------------------------------------------------------------------------------------------
# Small file-system helpers


def _atomic_dir(dest: Path) -> Path:
    """A fresh temporary folder next to dest (same file system, so a rename moves it into place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.part-", dir=dest.parent))


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Put tmp where dest is. The old dest is renamed aside first and removed only afterwards."""
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest.name} exists and is a file, not a folder; choose another name.")
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


def _is_junk(name: str) -> bool:
    return name.lower() in _JUNK_NAMES or name.startswith("._") or name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    """Image files under folder, sorted, skipping hidden entries and links (never followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not _is_junk(d) and d != "__MACOSX")
        for name in filenames:
            path = Path(dirpath) / name
            if _is_junk(name) or path.suffix.lower() not in IMAGE_SUFFIXES or path.is_symlink():
                continue
            out.append(path)
    return sorted(out)


# --------------------------------------------------------------------------------------------
# Source 1: scikit-learn's digits


def digits_folder(dest: str | os.PathLike | None = None) -> Path:
    """scikit-learn's 1,797 handwritten digits (8×8, classes "0".."9") as PNG class folders.

    Written once into `dest` (default: <data dir>/digits) through a temporary folder and a rename,
    so a crash leaves no half set; a second call returns at once and rewrites nothing.
    """
    dest = Path(dest) if dest is not None else data_dir() / "digits"
    if dest.is_dir():
        return dest
    import cv2
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Values are ink intensities 0..16; stretched to 0..255 (white digit on black).
    pixels = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # (N, 8, 8)
    tmp = _atomic_dir(dest)
    try:
        for cls in range(10):
            (tmp / str(cls)).mkdir()
        for i, (img, label) in enumerate(zip(pixels, bunch.target)):
            ok, png = cv2.imencode(".png", img)    # grey (8, 8); OpenCV encodes ~2x faster than Pillow
            if not ok:
                raise DataError("The digits could not be written as PNG files.")
            (tmp / str(int(label)) / f"{i:04d}.png").write_bytes(png.tobytes())
        if dest.is_dir():   # another process finished first: keep its copy
            shutil.rmtree(tmp)
            return dest
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# --------------------------------------------------------------------------------------------
# Source 2: Oxford-IIIT Pet

#: Download sizes (bytes) of the two archives torchvision's OxfordIIITPet fetches (the same
#: figures TensorFlow Datasets records in its checksums for these files).
PETS_FILES = {"images.tar.gz": 791_918_971, "annotations.tar.gz": 19_173_078}
PETS_DOWNLOAD_BYTES = sum(PETS_FILES.values())
PETS_LABELS = ("breeds", "species")


def pets_download_size() -> str:
    """A sentence with the download size, to show before the download starts."""
    return (f"Oxford-IIIT Pet is a download of about {PETS_DOWNLOAD_BYTES / 1e6:,.0f} MB "
            f"(7,390 photos of 37 breeds), made once.")


def _pets_resources() -> list[tuple[str, str]]:
    """(url, md5) of the archives, taken from torchvision so they stay in step with it."""
    from torchvision.datasets import OxfordIIITPet
    return [(url, md5) for url, md5 in OxfordIIITPet._RESOURCES]


def _download_pets(base: Path, progress: Progress | None) -> None:
    import urllib.request

    from torchvision.datasets.utils import check_integrity, extract_archive

    resources = _pets_resources()
    base.mkdir(parents=True, exist_ok=True)
    # Each archive's share of the progress bar follows its known size (images are 97 % of it).
    sizes = [PETS_FILES.get(url.rsplit("/", 1)[-1], 1) for url, _ in resources]
    weights = [sz / sum(sizes) for sz in sizes]
    for k, (url, md5) in enumerate(resources):
        name = url.rsplit("/", 1)[-1]
        archive = base / name
        before = sum(weights[:k])
        if not check_integrity(str(archive), md5):
            part = base / f".{name}.part"
            try:
                with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
                    length = int(resp.headers.get("Content-Length") or 0) or PETS_FILES.get(name, 0)
                    done = 0
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            share = min(done / length, 1.0) if length else 0.0
                            progress(min(before + weights[k] * share, 1.0),
                                     f"Downloading {name}: {done / 1e6:,.1f} of "
                                     f"{length / 1e6:,.1f} MB")
            except OSError as exc:
                part.unlink(missing_ok=True)
                raise DataError(f"Oxford-IIIT Pet could not be downloaded ({exc.__class__.__name__}); "
                                f"check the internet connection or use the digits.") from None
            os.replace(part, archive)
            if not check_integrity(str(archive), md5):
                archive.unlink()
                raise DataError(f"The downloaded {name} is damaged (checksum mismatch); try again.")
        if progress is not None:
            progress(min(before + weights[k], 1.0), f"Unpacking {name}")
        extract_archive(str(archive), str(base))
        archive.unlink()   # the unpacked copy is what is used; keep the disk use single


def pets_folder(dest: str | os.PathLike | None = None, *, labels: str = "breeds",
                root: str | os.PathLike | None = None, download: bool = True,
                official_split: bool = False, progress: Progress | None = None) -> Path:
    """Oxford-IIIT Pet as class folders: 37 breeds (`labels="breeds"`) or Cat/Dog ("species").

    Read through torchvision's OxfordIIITPet from `root` (default <data dir>/downloads, which holds
    `oxford-iiit-pet/images` and `annotations`); when that copy is missing and `download` is true it
    is downloaded first (size: PETS_DOWNLOAD_BYTES), reporting progress(fraction, message). Images
    are hard-linked (copied where links are impossible) into `dest` (default <data dir>/pets-<labels>)
    as `<class>/<file>.jpg`; with `official_split`, torchvision's trainval/test become train/ and
    valid/. Built through a temporary folder; an existing dest is returned as it is.
    """
    if labels not in PETS_LABELS:
        raise DataError(f"Unknown pet labels {labels!r}; choose one of: {', '.join(PETS_LABELS)}.")
    dest = Path(dest) if dest is not None else data_dir() / f"pets-{labels}"
    if dest.is_dir():
        return dest
    root = Path(root) if root is not None else data_dir() / "downloads"
    base = root / "oxford-iiit-pet"
    if not ((base / "images").is_dir() and (base / "annotations").is_dir()):
        if not download:
            raise DataError(f"There is no copy of Oxford-IIIT Pet in {root}; allow the download "
                            f"(about {PETS_DOWNLOAD_BYTES / 1e6:,.0f} MB) or use the digits.")
        _download_pets(base, progress)

    from torchvision.datasets import OxfordIIITPet

    tmp = _atomic_dir(dest)
    try:
        for split, folder in (("trainval", "train"), ("test", "valid")):
            try:
                ds = OxfordIIITPet(str(root), split=split, download=False)
            except (RuntimeError, OSError, ValueError) as exc:
                raise DataError(f"The Oxford-IIIT Pet copy in {root} is incomplete ({exc}); delete "
                                f"it and download it again.") from None
            # torchvision keeps file paths and labels in these lists; reading them avoids decoding
            # every photo just to learn its label.
            targets = ds._labels if labels == "breeds" else ds._bin_labels
            for src, target in zip(ds._images, targets):
                if not Path(src).is_file():
                    continue   # listed but absent: a handful are missing from some mirrors
                # Breed names as torchvision spells them ("American Bulldog"), taken from the file
                # name itself: ds.classes is indexed by position and shifts if a split lacks a breed.
                name = " ".join(part.title() for part in Path(src).stem.rsplit("_", 1)[0].split("_")) \
                    if labels == "breeds" else ds.bin_classes[target]
                cls_dir = (tmp / folder if official_split else tmp) / name
                cls_dir.mkdir(parents=True, exist_ok=True)
                out = cls_dir / Path(src).name
                try:
                    os.link(src, out)
                except OSError:
                    shutil.copy2(src, out)
        if progress is not None:
            progress(1.0, "Oxford-IIIT Pet is ready")
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# --------------------------------------------------------------------------------------------
# Source 3a: a zip of class folders

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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


def _declared_size(info: zipfile.ZipInfo) -> int:
    """What the zip's directory claims an entry unpacks to: a quick first check, never trusted."""
    return info.file_size


def extract_zip(src: str | os.PathLike | io.IOBase, dest: str | os.PathLike, *,
                max_files: int = 20_000, max_bytes: int = 2 * 1024 ** 3) -> Path:
    """Extract a zip of class folders into `dest`, safely; returns dest.

    Refused as a whole (DataError, nothing written, an existing dest left as it was): absolute
    paths, drive letters, backslashes, `..`, links and special files, encrypted entries, the same
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
            if not parts or parts[0] == "__MACOSX" or any(_is_junk(p) for p in parts):
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

        tmp = _atomic_dir(dest)
        try:
            total = 0
            for info, parts in plan:
                target = tmp.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as fin, open(target, "xb") as fout:
                    while chunk := fin.read(1 << 16):
                        total += len(chunk)
                        if total > max_bytes:
                            raise DataError(f"The zip unpacks to more than {max_bytes / 1e6:,.0f} MB "
                                            f"(the limit), so nothing was extracted.")
                        fout.write(chunk)
            _replace_dir(tmp, dest)
        except DataError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
                FileExistsError, ValueError):
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError("The zip is damaged or uses a feature the app cannot unpack, so nothing "
                            "was extracted.") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


# --------------------------------------------------------------------------------------------
# Checking


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
    paths = _image_files(folder)
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


# --------------------------------------------------------------------------------------------
# Listing and split


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
        if child.is_dir() and not child.is_symlink() and not _is_junk(child.name) \
                and child.name != "__MACOSX":
            files = _image_files(child)
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


# --------------------------------------------------------------------------------------------
# Transforms. Each file is resized and cropped once, when it is decoded (OpenCV, like
# engine.images); augmentation and normalisation then run on whole uint8 batches
# (torchvision.transforms.v2), with random parameters drawn per image. Per-image transform calls
# cost more than the training step itself on a 2-core CPU; one call per batch costs almost nothing.


def resize_crop(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): shorter side to `size`, then the centre square."""
    import cv2
    h, w = image.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    # Area averaging when shrinking keeps detail; bilinear when enlarging (the 8x8 digits).
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=interp)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(out[top:top + size, left:left + size])


class BatchAugment(v2.Transform):
    """fastai-style augmentation of a float batch (B, 3, H, W) in [0, 1], new values per image:
    horizontal flip (p 0.5), rotation up to ±max_rotate degrees and zoom-in up to max_zoom
    with a random centre (p 0.75, one resampling, reflection padding by default as fastai; "zeros"
    suits digits on black), brightness and
    contrast within ±max_lighting (p 0.75).
    """

    def __init__(self, *, flip: bool = True, max_rotate: float = 10.0, max_zoom: float = 1.1,
                 max_lighting: float = 0.2, pad_mode: str = "reflection", p_affine: float = 0.75,
                 p_lighting: float = 0.75):
        super().__init__()
        self.pad_mode = pad_mode
        self.flip, self.max_rotate, self.max_zoom = flip, max_rotate, max(1.0, max_zoom)
        self.max_lighting, self.p_affine, self.p_lighting = max_lighting, p_affine, p_lighting

    def make_params(self, flat_inputs: list) -> dict:
        b = flat_inputs[0].shape[0]
        u = lambda lo, hi: torch.empty(b).uniform_(lo, hi)  # noqa: E731
        on = torch.rand(b) < self.p_affine
        angle = torch.where(on, u(-self.max_rotate, self.max_rotate), 0.0) * (math.pi / 180)
        zoom = torch.where(on, u(1.0, self.max_zoom), 1.0)
        room = 1.0 - 1.0 / zoom                    # how far the zoomed window can move
        shift = (torch.rand(b, 2) * 2 - 1) * room[:, None]
        mirror = torch.where(torch.rand(b) < 0.5, -1.0, 1.0) if self.flip else torch.ones(b)
        lit = torch.rand(b) < self.p_lighting
        L = self.max_lighting
        bright = torch.where(lit, u(1 - L, 1 + L), 1.0)
        contrast = torch.where(lit, u(1 - L, 1 + L), 1.0)
        return dict(angle=angle, zoom=zoom, shift=shift, mirror=mirror, bright=bright,
                    contrast=contrast)

    def transform(self, inpt, params: dict):
        x = inpt                                                       # (B, 3, H, W) float
        cos, sin = params["angle"].cos(), params["angle"].sin()
        z, m = params["zoom"], params["mirror"]
        # Output pixel (u, v) samples input at R(angle) @ diag(mirror, 1) @ (u, v) / zoom + shift.
        theta = torch.stack([torch.stack([cos * m / z, -sin / z, params["shift"][:, 0]], -1),
                             torch.stack([sin * m / z, cos / z, params["shift"][:, 1]], -1)],
                            1).to(x.dtype)                             # (B, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=self.pad_mode,
                          align_corners=False)
        x = x * params["bright"].view(-1, 1, 1, 1).to(x.dtype)
        grey = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - grey) * params["contrast"].view(-1, 1, 1, 1).to(x.dtype) + grey
        return x.clamp_(0.0, 1.0)


def batch_augment(cfg: DataConfig) -> BatchAugment:
    """The training augmentation of cfg as a v2 transform on float batches in [0, 1]."""
    return BatchAugment(flip=cfg.flip, max_rotate=cfg.max_rotate, max_zoom=cfg.max_zoom,
                        max_lighting=cfg.max_lighting, pad_mode=cfg.pad_mode)


def train_transforms(cfg: DataConfig):
    """uint8 batch (B, 3, S, S) -> float32 normalised, augmented when cfg.augment."""
    steps = [v2.ToDtype(torch.float32, scale=True)]
    if cfg.augment:
        steps.append(batch_augment(cfg))
    steps.append(v2.Normalize(list(cfg.mean), list(cfg.std)))
    return v2.Compose(steps)


def valid_transforms(cfg: DataConfig):
    """uint8 batch -> float32 normalised; validation images are never augmented."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(cfg.mean), list(cfg.std))])


def denormalize(x, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Normalised float (B, 3, H, W) or (3, H, W) -> uint8 (B, H, W, 3) or (H, W, 3) for display."""
    x = torch.as_tensor(x).detach().float().cpu()
    m = torch.tensor(list(mean)).view(-1, 1, 1)
    s = torch.tensor(list(std)).view(-1, 1, 1)
    img = ((x * s + m).clamp(0, 1) * 255).round().to(torch.uint8)
    return img.movedim(-3, -1).numpy()


# --------------------------------------------------------------------------------------------
# Decoded-image cache and loaders


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


# --------------------------------------------------------------------------------------------
# Showing a batch


def grid_image(images: np.ndarray, labels: Sequence[str], *, ncols: int | None = None,
               tile: int = 112, pad: int = 4) -> np.ndarray:
    """uint8 (B, H, W, 3) images with a caption under each -> one uint8 (H', W', 3) grid image."""
    from PIL import Image, ImageDraw, ImageFont

    b = len(images)
    if b == 0:
        return np.full((tile, tile, 3), 255, np.uint8)
    ncols = ncols or int(np.ceil(np.sqrt(b)))
    nrows = int(np.ceil(b / ncols))
    caption = 16
    cell_w, cell_h = tile + pad, tile + caption + pad
    canvas = Image.new("RGB", (ncols * cell_w + pad, nrows * cell_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for k in range(b):
        r, c = divmod(k, ncols)
        img = Image.fromarray(np.ascontiguousarray(images[k]))
        # Small images (the 8×8 digits) are enlarged without blurring their pixels.
        resample = Image.NEAREST if max(img.size) < tile else Image.BILINEAR
        img = img.resize((tile, tile), resample)
        x, y = pad + c * cell_w, pad + r * cell_h
        canvas.paste(img, (x, y))
        text = str(labels[k]) if k < len(labels) else ""
        while text and draw.textlength(text, font=font) > tile:
            text = text[:-1]
        draw.text((x, y + tile + 2), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()


def show_batch(dls: DataLoaders, *, split: str = "train", n: int = 16, ncols: int | None = None,
               seed: int = 0, tile: int = 112) -> np.ndarray:
    """A grid of `n` images as the model sees them (augmented for "train"), un-normalised and
    captioned with their class, as a uint8 (H, W, 3) array. The loaders' random state is left
    untouched, so showing a batch does not change training.
    """
    if split not in ("train", "valid"):
        raise DataError(f"Unknown split {split!r}; choose 'train' or 'valid'.")
    loader = dls.train if split == "train" else dls.valid
    ds = loader.dataset
    n = min(n, len(ds))
    if n == 0:
        return grid_image(np.zeros((0, tile, tile, 3), np.uint8), [], tile=tile)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        idx = torch.randperm(len(ds))[:n].tolist() if split == "train" else list(range(n))
        x, y = loader.collate_fn([ds[i] for i in idx])                   # (B, 3, S, S), (B,)
    labels = [dls.classes[int(t)] for t in y]
    return grid_image(denormalize(x, dls.mean, dls.std), labels, ncols=ncols, tile=tile)
