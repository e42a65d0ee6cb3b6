"""Engine pieces the Explorer page relies on: the demo run (engine.demo), the rule of whose data a
session may clean (engine.runs.owns_data), and the cleaner's listing of a class's training files."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine import cleaner
from engine.runs import DEMO_DIR, demo_prefix, list_runs, load_run, owns_data

ALICE, BOB = "A" * 22, "B" * 22


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    return tmp_path


def test_a_session_owns_its_uploads_and_its_demo_copies_only(data):
    mine = data / "sessions" / ALICE / "zip-cats"
    demo = data / DEMO_DIR / f"{demo_prefix(ALICE)}{int(time.time())}"
    for folder in (mine, demo):
        folder.mkdir(parents=True)
    assert owns_data(mine, ALICE) and owns_data(str(demo), ALICE)
    assert owns_data(data / "sessions" / ALICE, ALICE)
    # Someone else's uploads and demo copies, data every session shares, look-alike names.
    assert not owns_data(mine, BOB) and not owns_data(demo, BOB)
    assert not owns_data(data / "digits", ALICE) and not owns_data(data / "shapes", ALICE)
    assert not owns_data(data / "sessions" / (ALICE + "x") / "zip", ALICE)
    assert not owns_data(data / DEMO_DIR, ALICE)
    assert not owns_data(data / DEMO_DIR / demo.name / "sub", ALICE)
    assert not owns_data(data / "elsewhere" / DEMO_DIR / demo.name, ALICE)
    # The demo folder's name does not show the owner token.
    assert ALICE not in demo_prefix(ALICE) and demo_prefix(ALICE) != demo_prefix(BOB)


def test_a_symlink_into_another_sessions_folder_is_not_owned(data):
    theirs = data / "sessions" / BOB / "zip-dogs"
    theirs.mkdir(parents=True)
    link = data / "sessions" / ALICE / "zip-dogs"
    link.parent.mkdir(parents=True)
    link.symlink_to(theirs, target_is_directory=True)
    assert not owns_data(link, ALICE)          # resolved first: it is Bob's folder


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_training_files_of_a_flat_and_a_split_data_set(tmp_path):
    flat = tmp_path / "flat"
    keep = [_touch(flat / "cat" / n) for n in ("b.png", "a.JPG", "c.webp")]
    _touch(flat / "cat" / ".hidden.png")
    _touch(flat / "cat" / "notes.txt")
    _touch(flat / "dog" / "d.png")
    (flat / "cat" / "link.png").symlink_to(flat / "dog" / "d.png")
    valid = str(flat / "cat" / "c.webp")
    assert cleaner.training_files(flat, "cat", exclude=[valid]) == sorted(map(str, keep[:2]))
    assert cleaner.training_files(flat, "cat") == sorted(map(str, keep))
    assert cleaner.training_files(flat, "bird") == []

    split = tmp_path / "split"
    train = _touch(split / "train" / "cat" / "t.png")
    _touch(split / "valid" / "cat" / "v.png")
    assert cleaner.training_files(split, "cat") == [str(train)]


def test_hardest_first_leaves_out_moved_files(tmp_path):
    a, b, c = (_touch(tmp_path / n) for n in ("a.png", "b.png", "c.png"))
    rows = [(str(a), 0.5, 0), (str(b), 2.0, 1), (str(c), 0.5, 2), (str(tmp_path / "gone.png"), 9.0, 0)]
    assert cleaner.hardest_first(rows) == [(str(b), 2.0, 1), (str(a), 0.5, 0), (str(c), 0.5, 2)]
    os.remove(b)
    assert [r[0] for r in cleaner.hardest_first(rows)] == [str(a), str(c)]


def test_the_demo_run_trains_on_a_private_copy(data):
    from engine.demo import make_demo_run

    info = make_demo_run(ALICE, per_class=5, epochs=1)
    assert [r.id for r in list_runs(ALICE)] == [info.id] and list_runs(BOB) == []
    run = load_run(info.id)
    folder = Path(run.settings["folder"])
    assert folder.parent == data / DEMO_DIR and owns_data(folder, ALICE)
    assert not owns_data(folder, BOB)
    assert sorted(p.name for p in folder.iterdir()) == [str(d) for d in range(10)]
    assert all(len(list((folder / str(d)).iterdir())) == 5 for d in range(10))
    assert all(Path(p).is_relative_to(folder) for p, _ in run.items)
    assert run.info.data == "digits demo" and run.info.arch == "simple_cnn" and run.info.epochs == 1
    assert run.settings["epochs"] == 1 and run.settings["method"] == "fit_one_cycle"
    assert run.load_model().meta["size"] == 16
