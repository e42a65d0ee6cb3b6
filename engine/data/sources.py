"""Ready-made data sets as class folders: scikit-learn's digits, and Oxford-IIIT Pet (downloaded
once).

Both are built through a temporary folder renamed into place, so a crash leaves no half set.
The Pet download stops within about WATCH_S seconds of a cancel request, whatever the server does.
"""
from __future__ import annotations

import http.client
import os
import queue
import shutil
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from engine.data.errors import DataError
from engine.data.files import Progress, building_folder
from engine.fsutil import atomic_file
from engine.paths import data_dir

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
    # "keep": when another process finished first, its copy stays and this one is dropped.
    with building_folder(dest, existing="keep") as tmp:
        for cls in range(10):
            (tmp / str(cls)).mkdir()
        for i, (img, label) in enumerate(zip(pixels, bunch.target)):
            ok, png = cv2.imencode(".png", img)    # grey (8, 8); OpenCV encodes ~2x faster than Pillow
            if not ok:
                raise DataError("The digits could not be written as PNG files.")
            (tmp / str(int(label)) / f"{i:04d}.png").write_bytes(png.tobytes())
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


#: check() raises (engine.jobs.JobCancelled) once the work should stop; called often.
Check = Callable[[], None]
WATCH_S = 0.2            # seconds between looks at the cancel request while the network is slow
STALL_S = 60.0           # seconds a read may wait for the server before the download fails


def _no_check() -> None:
    return None


class _Reader(threading.Thread):
    """Opens a URL and reads its body in chunks (whatever has arrived, up to 64 KiB) onto a
    bounded queue, on its own thread, so the thread that writes the file can look at a cancel
    request however long a connect or a read blocks. Once `stop` is set it hands nothing more
    over and ends when its read returns (the socket timeout bounds that)."""

    def __init__(self, url: str):
        super().__init__(daemon=True, name="dllab-pets-reader")
        self.url = url
        self.out: queue.Queue = queue.Queue(maxsize=64)     # at most 4 MiB waiting
        self.stop = threading.Event()

    def _put(self, item: tuple[str, Any]) -> None:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=WATCH_S)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        import urllib.request
        try:
            with urllib.request.urlopen(self.url, timeout=STALL_S) as resp:
                self._put(("length", int(resp.headers.get("Content-Length") or 0)))
                while not self.stop.is_set():
                    chunk = resp.read1(1 << 16)
                    self._put(("data", chunk))
                    if not chunk:
                        return
        except BaseException as exc:  # handed to the writing thread, which raises it
            self._put(("error", exc))


def _stream(url: str, out: BinaryIO, check: Check, on_data: Callable[[int, int], None]) -> None:
    """Write url's body to out, calling check() at least every WATCH_S seconds and
    on_data(bytes so far, Content-Length or 0) after each chunk."""
    reader = _Reader(url)
    reader.start()
    length, done = 0, 0
    try:
        while True:
            check()
            try:
                kind, value = reader.out.get(timeout=WATCH_S)
            except queue.Empty:
                continue
            if kind == "error":
                raise value
            if kind == "length":
                length = value
                continue
            if not value:
                return
            out.write(value)
            done += len(value)
            on_data(done, length)
    finally:
        reader.stop.set()


def _extract(archive: Path, dest: Path, check: Check) -> None:
    """Unpack a tar archive member by member (tarfile's "data" filter refuses members that would
    land outside dest, as torchvision's extract_archive does), calling check() before each."""
    import tarfile
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            check()
            tar.extract(member, dest, filter="data")


def _download_pets(base: Path, progress: Progress | None, check: Check = _no_check) -> None:
    from torchvision.datasets.utils import check_integrity

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
            try:
                # A fixed temporary name (`.<name>.part`): a download cut off by a killed process
                # is overwritten by the next try instead of leaving 800 MB behind. The checksum
                # below is the integrity check, so no fsync.
                def on_data(done: int, length: int, name: str = name, before: float = before,
                            weight: float = weights[k]) -> None:
                    length = length or PETS_FILES.get(name, 0)
                    if progress is not None:
                        share = min(done / length, 1.0) if length else 0.0
                        progress(min(before + weight * share, 1.0),
                                 f"Downloading {name}: {done / 1e6:,.1f} of "
                                 f"{length / 1e6:,.1f} MB")

                with atomic_file(archive, fsync=False, unique=False) as out:
                    _stream(url, out, check, on_data)
            except (OSError, http.client.HTTPException) as exc:
                raise DataError(f"Oxford-IIIT Pet could not be downloaded ({exc.__class__.__name__}); "
                                f"check the internet connection or use the digits.") from None
            if not check_integrity(str(archive), md5):
                archive.unlink()
                raise DataError(f"The downloaded {name} is damaged (checksum mismatch); try again.")
        if progress is not None:
            progress(min(before + weights[k], 1.0), f"Unpacking {name}")
        _extract(archive, base, check)
        archive.unlink()   # the unpacked copy is what is used; keep the disk use single


def pets_folder(dest: str | os.PathLike | None = None, *, labels: str = "breeds",
                root: str | os.PathLike | None = None, download: bool = True,
                official_split: bool = False, progress: Progress | None = None,
                check_cancelled: Check | None = None) -> Path:
    """Oxford-IIIT Pet as class folders: 37 breeds (`labels="breeds"`) or Cat/Dog ("species").

    Read through torchvision's OxfordIIITPet from `root` (default <data dir>/downloads, which holds
    `oxford-iiit-pet/images` and `annotations`); when that copy is missing and `download` is true it
    is downloaded first (size: PETS_DOWNLOAD_BYTES), reporting progress(fraction, message). Images
    are hard-linked (copied where links are impossible) into `dest` (default <data dir>/pets-<labels>)
    as `<class>/<file>.jpg`; with `official_split`, torchvision's trainval/test become train/ and
    valid/. Built through a temporary folder; an existing dest is returned as it is.
    `check_cancelled()` is called at least every WATCH_S seconds while downloading and before each
    file while unpacking and linking; what it raises (engine.jobs.JobCancelled) ends the call,
    leaving no half-written archive or set behind.
    """
    check = check_cancelled or _no_check
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
        _download_pets(base, progress, check)

    from torchvision.datasets import OxfordIIITPet

    with building_folder(dest) as tmp:
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
                check()
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
    return dest


__all__ = ["digits_folder", "PETS_FILES", "PETS_DOWNLOAD_BYTES", "PETS_LABELS",
           "pets_download_size", "pets_folder"]
