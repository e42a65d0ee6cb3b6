"""Deep Learning Lab's engine: all computation, free of any UI (it never imports streamlit)."""
import os

# Every entry point (app.py, the CLIs, the tests, the benchmarks) imports engine before torch, so
# this one line covers them all: on a CPU shared with other work, OpenMP threads that spin while
# they wait made training several times slower (digits: 15 s -> 116 s on 2 busy cores); passive
# waiting costs nothing measurable. It only takes effect before torch loads; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
