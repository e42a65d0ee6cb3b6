"""engine.system: handing freed memory back to the system (what keeps a classroom server's resident
size near its baseline after the students leave)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from engine.system import release_free_memory, start_memory_sweeper, sweep_memory

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's (Linux)")

# A fresh interpreter fills ~200 MB of the C heap with 2 KB blocks, keeps one block in 64 (so no
# page at the heap's top is free and glibc's own trimming cannot shrink it), frees the rest, and
# prints its resident size before and after release_free_memory().
CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from engine.system import release_free_memory

    def rss_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    blocks = [bytes(2048) for _ in range(100_000)]
    keep = blocks[::64]
    del blocks
    before = rss_mb()
    ok = release_free_memory()
    print(ok, before, rss_mb(), len(keep))
""")


@glibc
def test_release_gives_freed_heap_pages_back():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
                         check=True).stdout.split()
    ok, before, after = out[0] == "True", float(out[1]), float(out[2])
    assert ok
    # ~195 MB of the blocks were freed; without the trim glibc keeps nearly all of it resident.
    assert before - after > 100, (before, after)


def test_sweeper_thread_sweeps_in_the_background_until_stopped():
    import gc
    import threading

    stop = threading.Event()
    before = gc.get_stats()[2]["collections"]
    thread = start_memory_sweeper(0.05, stop)
    try:
        assert thread.daemon and thread.name == "dllab-memory-sweep"
        t0 = time.time()     # a full collection in a big test process can take a second
        while gc.get_stats()[2]["collections"] < before + 2 and time.time() - t0 < 30:
            time.sleep(0.05)
        assert thread.is_alive()
        assert gc.get_stats()[2]["collections"] >= before + 2     # full collections ran
    finally:
        stop.set()      # a sweep every 50 ms would slow every later test in this process
        thread.join(timeout=10)
    assert not thread.is_alive()


class Node:
    def __init__(self, payload: bytearray) -> None:
        self.payload, self.other = payload, None


def test_sweep_frees_reference_cycles_the_server_leaves_to_it():
    """A closed session's page module and its functions refer to each other; with Streamlit's
    after-run collection off, such a cycle (here: two nodes holding 20 MB) stays until a sweep."""
    import gc
    import weakref

    gc.collect()
    gc.disable()          # as if the allocation thresholds had not been reached yet
    try:
        a, b = Node(bytearray(20 * 2**20)), Node(bytearray(0))
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        assert alive() is not None         # nothing but a full collection frees a cycle
        trimmed = sweep_memory()
        assert alive() is None
        assert isinstance(trimmed, bool)
    finally:
        gc.enable()


# The heap probe in a fresh interpreter (it starts tracemalloc for the whole process): readings
# follow a 20 MB allocation up and back down, and carry the session count it is given.
PROBE_CHILD = textwrap.dedent("""
    import json, sys, time
    from engine.system import start_heap_probe

    log = sys.argv[1]
    count = iter(range(10**6))
    start_heap_probe(log, lambda: next(count), period_s=0.05)

    def last():
        time.sleep(0.3)
        return json.loads(open(log).read().splitlines()[-1])

    base = last()
    big = bytearray(20 * 2**20)
    held = last()
    del big
    freed = last()
    print(base["heap"], held["heap"], freed["heap"], held["sessions"] > base["sessions"])
""")


def test_heap_probe_logs_the_traced_heap_and_the_session_count(tmp_path):
    log = tmp_path / "heap.jsonl"
    out = subprocess.run([sys.executable, "-c", PROBE_CHILD, str(log)], capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    base, held, freed, counted = int(out[0]), int(out[1]), int(out[2]), out[3] == "True"
    assert held - base > 19 * 2**20 and held - freed > 19 * 2**20, (base, held, freed)
    assert counted
