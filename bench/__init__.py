"""Benchmarks: each module has run() -> list of rows; `python -m bench.run_all` writes BENCHMARKS.md."""
import engine  # noqa: F401  (before any benchmark imports torch: it sets OMP_WAIT_POLICY)
