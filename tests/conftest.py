"""Shared test set-up: the repository root on sys.path and small image fixtures."""
from __future__ import annotations

import os
import sys
from pathlib import Path

# As app.py does: idle OpenMP threads must not spin while tests share two cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
