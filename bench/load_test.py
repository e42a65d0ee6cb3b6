"""Load: N concurrent Chromium contexts (one browser) drive the Kernel, SGD and Explorer pages of one
real `streamlit run` on 127.0.0.1, like a class of students; reports, per page, the median and p95
time from an interaction to its result, the errors, and the server's resident memory before, at
peak during, and after the sessions closed and Streamlit's disconnected-session TTL passed.

Two times per interaction:
- server: from the browser sending the rerun (the websocket BackMsg) to the server's "script
  finished" message for it: what the classroom server costs, whatever runs the browsers;
- visible: until the new output is on the page (image loaded, chart or text updated), which also
  counts the browser drawing it.
Kernel page: edit a kernel cell, wait for the new output image. SGD page: type new learning rates to
compare, wait for the chart. Explorer: a run shared by link (read-only), Predict tab, type another
validation image number, wait for the new prediction.

By default the browsers run at the lowest CPU priority (nice 19) with a think time of 2-6 s between
interactions, as students on their own computers; --no-nice --think 0 puts all of it on the server's
cores back to back (a stress test, not a classroom). Bounded: N contexts, EDITS interactions per
page, LIMIT seconds in all; the server is stopped at the end.

Run: .venv/bin/python -m bench.load_test [--contexts 30] [--edits 3] [--think 2-6] [--no-nice]
     (or .venv/bin/python -m bench.run_all load_test, which writes BENCHMARKS.md)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import niced_chromium, print_rows, row
from tests.browser.conftest import ARTIFACTS, CHROMIUM_ARGS, free_port, start_streamlit, stop, wait_healthy

TTL_S = 10          # server.disconnectedSessionTTL for this run (the classroom default is 120 s)
AFTER_S = 70        # then long enough for the server's once-a-minute memory trim (app.py) to have run
PAGES = ("kernels", "sgd", "explore")
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
OUTPUT_SRC = ("() => { const i = [...document.querySelectorAll('[data-testid=stImage]')]"
              ".find(e => e.innerText.startsWith('output')); const g = i && i.querySelector('img');"
              " return g && g.complete ? g.src : null }")
OUTPUT_CHANGED = ("s => { const i = [...document.querySelectorAll('[data-testid=stImage]')]"
                  ".find(e => e.innerText.startsWith('output')); const g = i && i.querySelector('img');"
                  " return g && g.src !== s && g.complete }")
PREDICTION = ("() => { const c = [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
              ".find(e => e.innerText.includes('predicted in')); return c ? c.innerText : null }")
PREDICTION_CHANGED = ("s => { const c = [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
                      ".find(e => e.innerText.includes('predicted in')); return c && c.innerText !== s }")
COMPARE = "Learning rates to compare (two to four, comma-separated)"


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB, from /proc (no psutil needed)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def script_times(log: Path, since: float) -> dict[str, list[float]]:
    """Per page, the seconds each run of its script took inside the server (app.py writes the log
    when DLLAB_TIMING_LOG is set), for runs that ended after `since` (a time.time())."""
    out: dict[str, list[float]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            t, page, secs = line.split("\t")
            if float(t) >= since:
                out.setdefault(page, []).append(float(secs))
    return out


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))] if xs else float("nan")


class ServerClock:
    """Times rerun → script finished on one page's websocket (Streamlit's protobuf messages)."""

    def __init__(self) -> None:
        self.armed = False
        self.sent: float | None = None
        self.last: float | None = None
        self.done = asyncio.Event()

    def arm(self) -> None:
        self.armed, self.sent, self.last = True, None, None
        self.done.clear()

    def attach(self, page) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        def sent(payload) -> None:
            if self.armed and self.sent is None and isinstance(payload, bytes):
                try:
                    if BackMsg.FromString(payload).WhichOneof("type") == "rerun_script":
                        self.sent = time.perf_counter()
                except Exception:  # not a BackMsg: ignore
                    pass

        def received(payload) -> None:
            if self.sent is None or self.last is not None or not isinstance(payload, bytes):
                return
            try:
                msg = ForwardMsg.FromString(payload)
            except Exception:
                return
            if msg.WhichOneof("type") == "script_finished" and msg.script_finished in (
                    ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY):
                self.last = time.perf_counter() - self.sent
                self.armed = False
                self.done.set()

        page.on("websocket", lambda ws: (ws.on("framesent", sent), ws.on("framereceived", received)))

    async def result(self, timeout: float = 30.0) -> float | None:
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return self.last


async def timed(pg, clock: ServerClock, act, wait, times: dict, page: str) -> None:
    """Run one interaction: act(), then wait() for the visible result; record both times."""
    clock.arm()
    t0 = time.perf_counter()
    await act()
    await wait()
    times[page]["visible"].append(time.perf_counter() - t0)
    server = await clock.result()
    if server is not None:
        times[page]["server"].append(server)
    await pg.wait_for_function(IDLE)


async def one_student(browser, base: str, run_id: str, k: int, edits: int, think: tuple[float, float],
                      times: dict, errors: list) -> None:
    rng = random.Random(k)
    pause = (lambda: asyncio.sleep(rng.uniform(*think))) if think[1] > 0 else (lambda: asyncio.sleep(0))
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    pg = await context.new_page()
    pg.set_default_timeout(120_000)
    clock = ServerClock()
    clock.attach(pg)
    try:
        await asyncio.sleep(rng.uniform(0, 10) if think[1] > 0 else 0)   # students arrive over ~10 s
        await pg.goto(f"{base}/kernels")
        await pg.wait_for_function(OUTPUT_SRC)
        await pg.wait_for_function(IDLE)
        cell = pg.get_by_label("row 1, column 1")
        for e in range(edits):
            await pause()
            before = await pg.evaluate(OUTPUT_SRC)
            value = str((k * edits + e) % 9 + 2)     # never the preset's 1, never the last value

            async def edit(value=value):
                await cell.fill(value)
                await cell.press("Enter")
            await timed(pg, clock, edit,
                        lambda before=before: pg.wait_for_function(OUTPUT_CHANGED, arg=before),
                        times, "kernels")

        await pg.goto(f"{base}/sgd")
        box = pg.get_by_test_id("stTextInputField").and_(pg.get_by_label(COMPARE))
        await box.wait_for()
        await pg.wait_for_function(IDLE)
        for e in range(edits):
            await pause()
            lr = f"0.0{k:02d}{e + 1}"

            async def compare(lr=lr):
                await box.fill(f"{lr}, 0.2")
                await box.press("Enter")
            await timed(pg, clock, compare, lambda lr=lr: pg.wait_for_function(
                "v => [...document.querySelectorAll('.js-plotly-plot')].some(e => e.textContent.includes(v))",
                arg=lr), times, "sgd")

        await pg.goto(f"{base}/explore?run={run_id}")
        await pg.get_by_role("tab", name="Predict").click()
        await pg.wait_for_function(PREDICTION)
        await pg.wait_for_function(IDLE)
        number = pg.get_by_label("Validation image number")
        for e in range(edits):
            await pause()
            before = await pg.evaluate(PREDICTION)

            async def pick(i=(k * edits + e) % 60 + 1):
                await number.fill(str(i))
                await number.press("Enter")
            await timed(pg, clock, pick,
                        lambda before=before: pg.wait_for_function(PREDICTION_CHANGED, arg=before),
                        times, "explore")
        if await pg.locator("text=Traceback").count():
            errors.append(f"context {k}: a traceback on the page")
    except Exception as exc:  # counted and reported, the others go on
        errors.append(f"context {k}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
        try:
            await pg.screenshot(path=str(ARTIFACTS / f"load-error-{k}.png"))
        except Exception:
            pass
    finally:
        await context.close()


async def drive(base: str, run_id: str, pid: int, contexts: int, edits: int, think: tuple[float, float],
                limit: float, exe: str) -> dict:
    from playwright.async_api import async_playwright

    times = {p: {"visible": [], "server": []} for p in PAGES}
    errors: list[str] = []
    peak = [rss_mb(pid)]

    async def sample():
        while True:
            peak[0] = max(peak[0], rss_mb(pid))
            await asyncio.sleep(0.5)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        sampler = asyncio.create_task(sample())
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(one_student(browser, base, run_id, k, edits, think, times, errors))
                 for k in range(contexts)]
        done, pending = await asyncio.wait(tasks, timeout=limit)
        for t in pending:
            t.cancel()
        errors += [f"{len(pending)} contexts still running at the {limit:.0f} s limit"] if pending else []
        wall = time.perf_counter() - t0
        sampler.cancel()
        await browser.close()
    return {"times": times, "errors": errors, "peak": peak[0], "wall": wall}


def shared_run(data: Path) -> str:
    """A small digits run owned by a 'teacher', saved in the server's data directory: the students
    open it read-only through its ?run= link."""
    os.environ["DLLAB_DATA"] = str(data)
    import torch

    from engine.data import DataConfig, build_dataloaders, digits_folder
    from engine.models import create_model
    from engine.runs import save_run
    from engine.training import Learner

    torch.manual_seed(0)
    folder = digits_folder(data / "digits")
    dls = build_dataloaders(folder, DataConfig(size=16, bs=64, flip=False, seed=42))
    learn = Learner(create_model("simple_cnn", len(dls.classes), pretrained=False), dls, device="cpu",
                    seed=0)
    learn.fit_one_cycle(2, 1e-2)
    info = save_run(learn, owner="teacher-token-for-load0", data_name="digits",
                    settings={"source": "digits", "arch": "simple_cnn", "size": 16, "bs": 64,
                              "epochs": 2, "lr": 1e-2, "method": "fit_one_cycle"},
                    history={"epochs": learn.history}, status="done")
    return info.id


def run(contexts: int = 30, edits: int = 3, think: tuple[float, float] = (2.0, 6.0), nice: bool = True,
        limit: float = 540.0) -> list[dict]:
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        run_id = shared_run(data)
        exe = niced_chromium(tmp) if nice else shutil.which("chromium")
        port = free_port()
        timing = Path(tmp) / "script-times.tsv"
        proc = start_streamlit(port, {"STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL": str(TTL_S),
                                      "DLLAB_DATA": str(data), "DLLAB_TIMING_LOG": str(timing),
                                      # as `make serve`: fewer malloc arenas for the session threads,
                                      # so memory freed after the sessions can go back to the system
                                      "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")})
        try:
            wait_healthy(port, proc)
            base = f"http://127.0.0.1:{port}"
            # one visitor first, so "before" is a warm server (torch, OpenCV, Plotly loaded)
            warm = asyncio.run(drive(base, run_id, proc.pid, 1, 1, (0, 0), 240, exe))
            if warm["errors"]:
                raise RuntimeError(f"the warm-up visit failed: {warm['errors']}")
            time.sleep(TTL_S + 5)
            before = rss_mb(proc.pid)
            load1 = os.getloadavg()[0]
            cpu0, since = cpu_s(proc.pid), time.time()
            res = asyncio.run(drive(base, run_id, proc.pid, contexts, edits, think, limit, exe))
            cpu = cpu_s(proc.pid) - cpu0
            scripts = script_times(timing, since)
            time.sleep(TTL_S + AFTER_S)     # sessions closed; the TTL passes; cleanup and one memory trim
            after = rss_mb(proc.pid)
            load2 = os.getloadavg()[0]
        finally:
            stop(proc)
    how = (f"{contexts} contexts × {edits} interactions per page, think time "
           f"{think[0]:g}–{think[1]:g} s, browsers {'at nice 19' if nice else 'at normal priority'} "
           f"on the same 2 cores; load avg {load1:.1f} before, {load2:.1f} after")
    rows = []
    everything = {"server": [], "visible": []}
    for p in PAGES:
        for kind in ("server", "visible"):
            xs = res["times"][p][kind]
            everything[kind] += xs
            what = {"server": "rerun sent → script finished (server)",
                    "visible": "interaction → new output visible"}[kind]
            rows.append(row(f"{p}: {what}, median / p95", statistics.median(xs) if xs else float("nan"),
                            "s", note=f"p95 {p95(xs):.2f} s over {len(xs)} interactions"))
    for kind in ("server", "visible"):
        xs = everything[kind]
        rows.append(row(f"all pages, {kind}, p95", p95(xs), "s", target="≤ 1 s",
                        note=("met" if xs and p95(xs) <= 1 else "missed") +
                        f"; median {statistics.median(xs) if xs else float('nan'):.2f} s, n={len(xs)}"))
    n = sum(len(everything[k]) for k in ("visible",))
    for page in ("kernels", "sgd", "explore"):
        xs = scripts.get(page, [])
        rows.append(row(f"{page}: one run of the page script inside the server, median", statistics.median(xs)
                        if xs else float("nan"), "s", note=f"p95 {p95(xs):.2f} s over {len(xs)} runs "
                        "(page loads included; from app.py's DLLAB_TIMING_LOG)"))
    rows += [row("server CPU during the load", cpu, "s", note=f"{cpu / max(1, n):.2f} CPU-s per timed "
                 f"interaction, page loads included ({n} interactions, {contexts} page visits × 3); "
                 f"the wall time was {res['wall']:.0f} s"),
             row("errors", len(res["errors"]), "count", target="0", note="; ".join(res["errors"][:3])),
             row("server RSS before (warm, idle)", before, "MB"),
             row("server RSS peak during", res["peak"], "MB"),
             row(f"server RSS after close + {TTL_S} s TTL + {AFTER_S} s", after, "MB",
                 ratio=after / before if before else None, baseline="before", target="≤ 1.05×"),
             row("wall time of the load", res["wall"], "s", note=how)]
    return rows


def _think(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    return float(lo), float(hi or lo)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", type=int, default=30)
    ap.add_argument("--edits", type=int, default=3)
    ap.add_argument("--think", type=_think, default=(2.0, 6.0), help="seconds between interactions, LO-HI")
    ap.add_argument("--no-nice", dest="nice", action="store_false")
    ap.add_argument("--limit", type=float, default=540.0)
    a = ap.parse_args()
    print_rows(run(a.contexts, a.edits, a.think, a.nice, a.limit))
