"""Data downloads the Train page runs in the background, as job functions `fn(ctx, ...)` for
engine.jobs.JobRunner: the Oxford-IIIT Pet set, and lists of image addresses per class (the
lesson's bears). Each returns a DownloadResult whose folder becomes the page's data set.

Both stop within about a second of Cancel (or of the runner's unwatched-job timeout): the job hands
its context's cancel request down to the code that waits on the network. A URL download builds a
fresh set each time, so a second download never adds classes to the first one's; class names that
would share a folder are refused before anything is fetched.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from engine.data.errors import DataError
from engine.events import DownloadResult, FailedURL

#: One class's list as the page collects it: (name as typed, its addresses, where it came from —
#: "class 2", "urls_teddy.txt" — for the sentence that names a clash).
ClassList = tuple[str, Sequence[str], str]


def pets_job(ctx: Any, labels: str) -> DownloadResult:
    """Download (once) and arrange Oxford-IIIT Pet by `labels` ("species" or "breeds")."""
    from engine.data import pets_folder
    path = pets_folder(labels=labels, progress=lambda f, m: ctx.progress(f, m),
                       check_cancelled=ctx.check_cancelled)
    return {"kind": "download", "folder": str(path), "name": f"pets-{labels}", "flip": True,
            "writable": False}


def safe_class_name(name: str, index: int) -> str:
    """A class name as a folder name: letters, digits, "_", "-" and spaces, at most 40 of them
    (so a name holding markup or a path cannot reach the disk or a page as written)."""
    return re.sub(r"[^\w\- ]", "", name).strip()[:40] or f"class{index}"


def class_lists(entries: Iterable[ClassList]) -> dict[str, list[str]]:
    """{folder name: addresses} for the classes a user gave, in order; entries without addresses
    are left out. DataError (a sentence) when a class with addresses has no name, when one class
    is given twice, or when two names become the same folder (they differ only in punctuation,
    spaces at the ends, letter case, or after 40 characters) — merging them silently would train
    on a class the user never made."""
    out: dict[str, list[str]] = {}
    seen: dict[str, tuple[str, str]] = {}    # folded folder name -> (name as given, origin)
    for index, (name, urls, origin) in enumerate(entries):
        urls = [u.strip() for u in urls if u and u.strip()]
        if not urls:
            continue
        name = (name or "").strip()
        if not name:
            raise DataError(f"The addresses of {origin} have no class name; type one.")
        safe = safe_class_name(name, index)
        key = safe.casefold()
        if key in seen:
            first, where = seen[key]
            if first == name:
                raise DataError(f"The class “{name}” is given twice ({where} and {origin}); put "
                                "its addresses in one list, or rename one of them.")
            raise DataError(f"The class names “{first}” ({where}) and “{name}” ({origin}) would "
                            f"both become the folder “{safe}”; give them names that differ in "
                            "letters or digits.")
        seen[key] = (name, origin)
        out[safe] = urls
    return out


def _asks_to_stop(ctx: Any) -> bool:
    """ctx.check_cancelled() as a yes/no question (download_images polls it from its threads)."""
    from engine.jobs.runner import JobCancelled
    try:
        ctx.check_cancelled()
    except JobCancelled:
        return True
    return False


def urls_job(ctx: Any, lists: Mapping[str, Sequence[str]], dest: str | Path) -> DownloadResult:
    """Download each class's addresses into a fresh set at dest/<class> (built aside and put in
    place at the end, so the previous set stays whole until then, and stays as it was on Cancel);
    every refused or failed address is listed with its reason, and each class gets a one-line
    summary."""
    from engine.download import download_images
    from engine.fsutil import atomic_dir
    classes = class_lists((name, urls, f"class {k + 1}")
                          for k, (name, urls) in enumerate(lists.items()))
    reports: list[str] = []
    failed: list[FailedURL] = []
    with atomic_dir(dest) as tmp:
        for k, (safe, urls) in enumerate(classes.items()):
            ctx.progress(k / len(classes), f"Downloading {safe}")
            rep = download_images(urls, tmp / safe, cancelled=lambda: _asks_to_stop(ctx))
            ctx.check_cancelled()
            reports.append(f"{safe}: " + rep.summary())
            failed += [{"class": safe, "url": url, "reason": why} for url, why in rep.failed]
    return {"kind": "download", "folder": str(dest), "name": "my images", "flip": True,
            "writable": True, "report": reports, "failed": failed}


__all__ = ["pets_job", "urls_job", "safe_class_name", "class_lists", "ClassList"]
