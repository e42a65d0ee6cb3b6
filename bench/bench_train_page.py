"""Training throughput with the Train page open and drawing, against the same training without it.

Baseline: engine.jobs.run_jobs.train_job in this process with no page (the code path of
`python -m engine.train`: Learner.fit_one_cycle on the same loaders). Page: a real `streamlit run`
with Chromium showing /train while the same settings train, redrawing every second. Throughput is
training images per second over the epochs' own timers (training + validation, as in the epoch
table), so server start-up and browser loading are not counted. Median of `repeat` runs each.

    .venv/bin/python -m bench.bench_train_page            # prints the table

Chromium runs on the same machine here, so on a 2-core box the browser's own drawing competes with
training; in a classroom the browser runs on each student's computer.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import niced_chromium, print_rows, row

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 3


def _images_per_s(epochs: list[dict], n_train: int) -> float:
    return n_train * len(epochs) / sum(e["seconds"] for e in epochs)


def baseline(folder: str, repeat: int) -> tuple[float, int]:
    from engine.data.summary import class_counts
    from engine.jobs import JobRunner
    from engine.jobs.run_jobs import train_job
    from engine.settings import RunSettings

    n_train = sum(class_counts(folder)["train"])
    runner = JobRunner()
    rates = []
    for _ in range(repeat):
        # owner "" (positional: submit takes its own owner=): nothing is saved
        job = runner.submit("bench", train_job, RunSettings(folder=folder, epochs=EPOCHS), "")
        job.wait()
        rates.append(_images_per_s(job.result["epochs"], n_train))
    runner.shutdown()
    return statistics.median(rates), n_train


def with_page(data_root: str, n_train: int, repeat: int, nice: bool = False) -> float:
    from playwright.sync_api import sync_playwright

    from engine.runs import list_runs, load_run
    from tests.browser.conftest import CHROMIUM_ARGS, free_port, start_streamlit, stop, wait_healthy

    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    port = free_port()
    proc = start_streamlit(port, {"DLLAB_DATA": data_root})
    rates = []
    try:
        wait_healthy(port, proc)
        with sync_playwright() as pw:
            exe = niced_chromium(data_root) if nice else "/usr/bin/chromium"
            browser = pw.chromium.launch(executable_path=exe, headless=True,
                                         args=CHROMIUM_ARGS)
            for _ in range(repeat):
                before = {r.id for r in list_runs()}
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.set_default_timeout(120_000)
                page.goto(f"http://127.0.0.1:{port}/train?epochs={EPOCHS}")
                page.get_by_role("button", name="Train", exact=True).click()
                page.get_by_text("5 · Coach").wait_for()
                new = [r for r in list_runs() if r.id not in before]
                rates.append(_images_per_s(load_run(new[0].id).history["epochs"], n_train))
                page.context.close()
            browser.close()
    finally:
        stop(proc)
    return statistics.median(rates)


def run(repeat: int = 3) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-train-") as root:
        os.environ["DLLAB_DATA"] = root
        from engine.data import digits_folder
        folder = str(digits_folder())
        base, n_train = baseline(folder, repeat)
        page = with_page(root, n_train, repeat)
        page_nice = with_page(root, n_train, repeat, nice=True)
    ratio = page / base
    return [
        row(f"digits training, no page (CLI path), {EPOCHS} epochs", base, "img/s",
            note=f"median of {repeat}"),
        row(f"digits training with /train open in Chromium, {EPOCHS} epochs", page, "img/s",
            baseline="no page", ratio=ratio, target="≥ 0.90×",
            note=f"median of {repeat}; browser on the same 2 cores"),
        row(f"digits training with /train open, browser at low priority, {EPOCHS} epochs",
            page_nice, "img/s", baseline="no page", ratio=page_nice / base, target="≥ 0.90×",
            note=f"median of {repeat}; as if the browser ran on another computer"),
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print_rows(run())
