"""Benchmarks: each module has run() -> list of rows; `python -m bench.run_all` writes BENCHMARKS.md."""
import os

# As app.py and engine/train.py do, before anything imports torch: idle OpenMP threads must sleep,
# not spin, or a measurement on a shared 2-core machine says more about spinning than about us.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
