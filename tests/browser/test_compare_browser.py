"""Runs side by side in a real browser: two of the lesson's experiments, one click each, then both
runs' curves on one chart each and the table of the settings that differ."""
from __future__ import annotations

import pytest

from tests.browser.conftest import wait_for_app_idle

pytestmark = pytest.mark.browser


def test_two_experiments_then_runs_side_by_side(page, app_url):
    # One epoch each on the digits: the experiments keep the page's other settings.
    page.goto(f"{app_url}/train?epochs=1")
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=90_000)
    wait_for_app_idle(page, 60_000)
    page.get_by_role("button", name="Too few epochs").click()
    page.get_by_text("Experiment Too few epochs (too_few_epochs). Expected:").wait_for(
        timeout=120_000)
    wait_for_app_idle(page)
    page.get_by_text("Train at least two runs").wait_for(timeout=30_000)
    page.get_by_role("button", name="Learning rate too high").click()
    page.get_by_text("Experiment Learning rate too high (lr_too_high). Expected:").wait_for(
        timeout=120_000)
    wait_for_app_idle(page)

    section = page.get_by_text("7 · Runs side by side")
    section.wait_for(timeout=30_000)
    charts = page.locator('[data-testid="stPlotlyChart"]')
    page.get_by_text("Loss per epoch (train solid, valid dashed)").wait_for(timeout=30_000)
    page.get_by_text("Error rate per epoch (validation)").wait_for(timeout=30_000)
    assert charts.count() >= 2
    table = page.locator(".st-key-train-compare_table")
    table.get_by_text("final error rate").wait_for(timeout=30_000)
    rows = table.locator("tr")
    labels = [rows.nth(i).locator("th").first.inner_text().strip() for i in range(rows.count())]
    assert "lr" in labels and "epochs" not in labels, labels
    lr_row = table.locator("tr", has=page.locator("th", has_text="lr")).inner_text()
    assert "1" in lr_row and "0.01" in lr_row, lr_row
    # Both runs' traces are in the legend: two runs, train and valid each.
    page.get_by_text("· valid").first.wait_for(timeout=10_000)
    assert page.locator("text=Traceback").count() == 0
