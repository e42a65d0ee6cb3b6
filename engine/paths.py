"""Where the app keeps its files: data sets, runs, caches. One root, overridable for tests."""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The app's data directory: $DLLAB_DATA if set, else data/ in the repository (git-ignored)."""
    path = Path(os.environ.get("DLLAB_DATA") or ROOT / "data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def session_dir(owner: str) -> Path:
    """<data dir>/sessions/<owner>: where a browser session's uploads and URL sets go."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", owner or ""):
        raise ValueError("A session folder needs a well-formed owner token.")
    path = data_dir() / "sessions" / owner
    path.mkdir(parents=True, exist_ok=True)
    return path
