"""Data downloads the Train page runs in the background, as job functions `fn(ctx, ...)` for
engine.jobs.JobRunner: the Oxford-IIIT Pet set, and lists of image addresses per class (the
lesson's bears). Each returns a DownloadResult whose folder becomes the page's data set.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from engine.events import DownloadResult, FailedURL


def pets_job(ctx: Any, labels: str) -> DownloadResult:
    """Download (once) and arrange Oxford-IIIT Pet by `labels` ("species" or "breeds")."""
    from engine.data import pets_folder
    path = pets_folder(labels=labels, progress=lambda f, m: ctx.progress(f, m))
    return {"kind": "download", "folder": str(path), "name": f"pets-{labels}", "flip": True,
            "writable": False}


def safe_class_name(name: str, index: int) -> str:
    """A class name as a folder name: letters, digits, "_", "-" and spaces, at most 40 of them
    (so a name holding markup or a path cannot reach the disk or a page as written)."""
    return re.sub(r"[^\w\- ]", "", name).strip()[:40] or f"class{index}"


def urls_job(ctx: Any, lists: Mapping[str, Sequence[str]], dest: str | Path) -> DownloadResult:
    """Download each class's addresses into dest/<class>; every refused or failed address is
    listed with its reason, and each class gets a one-line summary."""
    from engine.download import download_images
    reports: list[str] = []
    failed: list[FailedURL] = []
    for k, (cls, urls) in enumerate(lists.items()):
        safe = safe_class_name(cls, k)
        ctx.progress(k / len(lists), f"Downloading {safe}")
        rep = download_images(urls, Path(dest) / safe)
        reports.append(f"{safe}: " + rep.summary())
        failed += [{"class": safe, "url": url, "reason": why} for url, why in rep.failed]
        ctx.check_cancelled()
    return {"kind": "download", "folder": str(dest), "name": "my images", "flip": True,
            "writable": True, "report": reports, "failed": failed}


__all__ = ["pets_job", "urls_job", "safe_class_name"]
