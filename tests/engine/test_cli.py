"""The command lines: `python -m engine.train` and `python -m engine.lr_find` on a tiny folder."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.models import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """Two classes of 12 tiny PNGs: dark squares and bright squares."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for cls, base in (("dark", 40), ("bright", 210)):
        (root / cls).mkdir()
        for i in range(12):
            img = np.clip(base + rng.normal(0, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / cls / f"{i}.png")
    return root


def run(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DLLAB_DATA": str(tmp / "data")}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)


def test_train_cli_prints_the_table_and_writes_a_checkpoint(tiny_folder, tmp_path):
    out = tmp_path / "run"
    r = run("engine.train", "--data", str(tiny_folder), "--arch", "simple_cnn", "--no-pretrained",
            "--size", "12", "--bs", "8", "--epochs", "2", "--lr", "1e-2", "--out", str(out), tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("epoch"))
    assert lines[header].split() == ["epoch", "train_loss", "valid_loss", "error_rate", "time"]
    rows = [line.split() for line in lines[header + 1:header + 3]]
    assert [row[0] for row in rows] == ["0", "1"] and all(len(row) == 5 for row in rows)
    assert "validation accuracy" in r.stdout
    ck = load_checkpoint(out / "model.safetensors")
    assert ck.classes == ["bright", "dark"] and ck.meta["size"] == 12
    assert ck.meta["metrics"]["error_rate"] == pytest.approx(float(rows[-1][3]), abs=1e-6)
    with open(out / "valid_preds.csv") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == 4 and set(preds[0]) >= {"path", "target", "pred", "loss", "p_bright", "p_dark"}
    assert all(Path(p["path"]).parent.parent == tiny_folder for p in preds)


def test_train_cli_fine_tune_prints_two_tables(tiny_folder, tmp_path):
    r = run("engine.train", "--data", str(tiny_folder), "--arch", "simple_cnn", "--no-pretrained",
            "--size", "12", "--bs", "8", "--epochs", "1", "--fine-tune", "--out", str(tmp_path / "ft"),
            tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("train_loss") == 2 and "body frozen" in r.stdout


def test_lr_find_cli_prints_each_rule(tiny_folder, tmp_path):
    r = run("engine.lr_find", "--data", str(tiny_folder), "--arch", "simple_cnn", "--no-pretrained",
            "--size", "12", "--bs", "4", "--num-it", "30", "--out", str(tmp_path / "lf"), tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    for rule in ("valley", "slide", "minimum", "steep"):
        assert any(line.startswith(rule) for line in r.stdout.splitlines()), rule
    assert (tmp_path / "lf" / "lr_find.csv").read_text().startswith("lr,smooth_loss,loss")


def test_bad_input_is_one_sentence_not_a_traceback(tmp_path):
    r = run("engine.train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x"),
            tmp=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error: --data must be" in r.stderr
    r = run("engine.train", "--arch", "vgg99", tmp=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr
