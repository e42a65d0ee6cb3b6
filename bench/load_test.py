"""Load: N concurrent Chromium contexts (one browser) drive the Kernel and SGD pages of one real
`streamlit run` on 127.0.0.1; reports the median and p95 time from an interaction to the updated
output, the errors, and the server's resident memory before, at peak during, and after the sessions
closed and Streamlit's disconnected-session TTL passed.

Kernel page: edit a kernel cell, wait until the output image's source changes and it has loaded.
SGD page: type new learning rates to compare, wait until a chart shows the new value.
Bounded: N contexts, EDITS interactions per page each, LIMIT seconds in all; the server is stopped.

Run: .venv/bin/python -m bench.load_test [--contexts 30] [--edits 3] [--limit 600]
     (or .venv/bin/python -m bench.run_all load_test, which writes BENCHMARKS.md)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import time
from pathlib import Path

from bench.common import print_rows, row
from tests.browser.conftest import ARTIFACTS, CHROMIUM_ARGS, free_port, start_streamlit, stop, wait_healthy

TTL_S = 10          # server.disconnectedSessionTTL for this run (the classroom default is 120 s)
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
OUTPUT_SRC = ("() => { const i = [...document.querySelectorAll('[data-testid=stImage]')]"
              ".find(e => e.innerText.startsWith('output')); const g = i && i.querySelector('img');"
              " return g && g.complete ? g.src : null }")
OUTPUT_CHANGED = ("s => { const i = [...document.querySelectorAll('[data-testid=stImage]')]"
                  ".find(e => e.innerText.startsWith('output')); const g = i && i.querySelector('img');"
                  " return g && g.src !== s && g.complete }")
COMPARE = "Learning rates to compare (two to four, comma-separated)"


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB, from /proc (no psutil needed)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))] if xs else float("nan")


async def one_student(browser, base: str, k: int, edits: int, times: dict, errors: list) -> None:
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    pg = await context.new_page()
    pg.set_default_timeout(90_000)
    try:
        await pg.goto(f"{base}/kernels")
        await pg.wait_for_function(OUTPUT_SRC)
        await pg.wait_for_function(IDLE)
        cell = pg.get_by_label("row 1, column 1")
        for e in range(edits):
            before = await pg.evaluate(OUTPUT_SRC)
            t0 = time.perf_counter()
            await cell.fill(str((k * edits + e) % 9 + 2))   # never the preset's 1, never the last value
            await cell.press("Enter")
            await pg.wait_for_function(OUTPUT_CHANGED, arg=before)
            times["kernels"].append(time.perf_counter() - t0)
            await pg.wait_for_function(IDLE)
        await pg.goto(f"{base}/sgd")
        box = pg.get_by_test_id("stTextInputField").and_(pg.get_by_label(COMPARE))
        await box.wait_for()
        await pg.wait_for_function(IDLE)
        for e in range(edits):
            lr = f"0.0{k:02d}{e + 1}"
            t0 = time.perf_counter()
            await box.fill(f"{lr}, 0.2")
            await box.press("Enter")
            await pg.wait_for_function(
                "v => [...document.querySelectorAll('.js-plotly-plot')].some(e => e.textContent.includes(v))",
                arg=lr)
            times["sgd"].append(time.perf_counter() - t0)
            await pg.wait_for_function(IDLE)
        if await pg.locator("text=Traceback").count():
            errors.append(f"context {k}: a traceback on the page")
    except Exception as exc:  # counted and reported, the others go on
        errors.append(f"context {k}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    finally:
        await context.close()


async def drive(base: str, pid: int, contexts: int, edits: int, limit: float) -> dict:
    from playwright.async_api import async_playwright

    times: dict[str, list[float]] = {"kernels": [], "sgd": []}
    errors: list[str] = []
    peak = [rss_mb(pid)]

    async def sample():
        while True:
            peak[0] = max(peak[0], rss_mb(pid))
            await asyncio.sleep(0.5)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        sampler = asyncio.create_task(sample())
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(one_student(browser, base, k, edits, times, errors))
                 for k in range(contexts)]
        done, pending = await asyncio.wait(tasks, timeout=limit)
        for t in pending:
            t.cancel()
        errors += [f"{len(pending)} contexts still running at the {limit:.0f} s limit"] if pending else []
        wall = time.perf_counter() - t0
        sampler.cancel()
        await browser.close()
    return {"times": times, "errors": errors, "peak": peak[0], "wall": wall}


def run(contexts: int = 30, edits: int = 3, limit: float = 600.0) -> list[dict]:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    proc = start_streamlit(port, {"STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL": str(TTL_S)})
    try:
        wait_healthy(port, proc)
        base = f"http://127.0.0.1:{port}"
        # one visitor first, so "before" is a warm server (torch, OpenCV, Plotly loaded)
        asyncio.run(drive(base, proc.pid, 1, 1, 180))
        time.sleep(TTL_S + 5)
        before = rss_mb(proc.pid)
        load1 = os.getloadavg()[0]
        res = asyncio.run(drive(base, proc.pid, contexts, edits, limit))
        time.sleep(TTL_S + 20)          # sessions closed; the TTL passes; Streamlit cleans them up
        after = rss_mb(proc.pid)
        load2 = os.getloadavg()[0]
    finally:
        stop(proc)
    k, s = res["times"]["kernels"], res["times"]["sgd"]
    both = k + s
    note = f"{contexts} contexts × {edits} edits per page; load avg {load1:.1f} before, {load2:.1f} after"
    rows = [row("kernel cell edit → new output, median", statistics.median(k) if k else float("nan"), "s",
                note=f"{len(k)} edits"),
            row("kernel cell edit → new output, p95", p95(k), "s", target="≤ 1 s"),
            row("SGD compare edit → updated chart, median", statistics.median(s) if s else float("nan"), "s",
                note=f"{len(s)} edits"),
            row("SGD compare edit → updated chart, p95", p95(s), "s", target="≤ 1 s"),
            row("all interactions, p95", p95(both), "s", target="≤ 1 s",
                note="met" if both and p95(both) <= 1 else "missed"),
            row("errors", len(res["errors"]), "count", target="0",
                note="; ".join(res["errors"][:3])),
            row("server RSS before (warm, idle)", before, "MB"),
            row("server RSS peak during", res["peak"], "MB"),
            row(f"server RSS after close + {TTL_S} s TTL + 20 s", after, "MB",
                ratio=after / before if before else None, baseline="before"),
            row("wall time of the load", res["wall"], "s", note=note)]
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", type=int, default=30)
    ap.add_argument("--edits", type=int, default=3)
    ap.add_argument("--limit", type=float, default=600.0)
    a = ap.parse_args()
    print_rows(run(a.contexts, a.edits, a.limit))
