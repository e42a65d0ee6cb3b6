"""Benchmarks: each module has run() -> list of rows; `python -m bench.run_all` writes BENCHMARKS.md."""
