"""fastai's own numbers for the tests: each script here runs real fastai (from bench/.fastai-pkgs,
`make bench-deps`) and prints JSON; its stored output stands in when fastai is not importable."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
FASTAI_PKGS = ROOT / "bench" / ".fastai-pkgs"


def load_script(script: Path) -> ModuleType:
    """A reference script as a module (for the settings and data it describes)."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def numbers(script: Path, stored: Path, timeout: float) -> dict:
    """The script's output, run now when fastai is importable, else its stored copy; "source"
    says which."""
    if (FASTAI_PKGS / "fastai").is_dir():
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FASTAI_PKGS), str(ROOT)])}
        out = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=timeout)
        if out.returncode == 0:
            return {**json.loads(out.stdout), "source": "fastai, run now"}
    return {**json.loads(stored.read_text()), "source": "stored numbers"}
