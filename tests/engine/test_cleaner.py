"""engine.cleaner: delete = quarantine, relabel = move, undo = exact, and no file ever disappears."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine import cleaner

OWNER = "session-a"


@pytest.fixture
def data(tmp_path, monkeypatch):
    """<tmp>/app is the data dir; <tmp>/app/shapes has three class folders of small files."""
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path / "app"))
    root = tmp_path / "app" / "shapes"
    for cls in ("circle", "square", "triangle"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            # Distinct bytes per file, so a swap or a truncation would show in the hashes.
            (root / cls / f"{i}.png").write_bytes(f"{cls}-{i}".encode() * (10 + i))
    return root


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under folder."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def all_images(app: Path) -> list[str]:
    """Content hashes of every image anywhere under the data dir (journals excluded)."""
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in app.rglob("*.png"))


def apply(root, decisions, owner=OWNER, run_owner=OWNER):
    return cleaner.apply_decisions(root, {str(root / k): v for k, v in decisions.items()},
                             classes=["circle", "square", "triangle"], owner=owner,
                             run_owner=run_owner, run_id="r" * 22)


def test_apply_moves_and_quarantines_then_undo_restores_exactly(data):
    app = data.parent
    before, images_before = snapshot(data), all_images(app)
    bytes_before = sum(p.stat().st_size for p in app.rglob("*.png"))
    j = apply(data, {"circle/0.png": cleaner.DELETE, "circle/1.png": cleaner.relabel("square"),
                     "square/2.png": cleaner.KEEP, "triangle/2.png": cleaner.relabel("triangle")})
    assert j.state == "applied" and j.n_deleted == 1 and j.n_relabelled == 1
    assert "1 image moved to quarantine, 1 relabelled" in j.summary()
    after = snapshot(data)
    assert "circle/0.png" not in after and "circle/1.png" not in after
    moved = [k for k in after if k.startswith("square/1-")]  # square/1.png was taken: renamed
    assert len(moved) == 1 and after[moved[0]] == before["circle/1.png"]
    assert after["square/1.png"] == before["square/1.png"]
    assert after["square/2.png"] == before["square/2.png"]          # kept
    assert after["triangle/2.png"] == before["triangle/2.png"]      # already that class
    quarantined = Path(j.quarantine) / "circle" / "0.png"
    assert hashlib.sha256(quarantined.read_bytes()).hexdigest() == before["circle/0.png"]
    assert Path(j.quarantine).is_relative_to(app / "quarantine")
    # Never deleted: the same images, the same bytes, somewhere under the data dir.
    assert all_images(app) == images_before
    assert sum(p.stat().st_size for p in app.rglob("*.png")) == bytes_before

    cleaner.undo(j.id, owner=OWNER)
    assert snapshot(data) == before
    assert not Path(j.quarantine).exists()          # only the empty quarantine folders are gone
    assert cleaner.load_journal(j.id).state == "undone"
    with pytest.raises(cleaner.CleanError, match="already been undone"):
        cleaner.undo(j.id, owner=OWNER)


def test_a_shared_run_refuses_changes(data):
    before = snapshot(data)
    for owner in ("someone-else", "", None):
        with pytest.raises(cleaner.CleanError, match="shared with you"):
            apply(data, {"circle/0.png": cleaner.DELETE, "square/0.png": cleaner.relabel("circle")},
                  owner=owner)
    assert snapshot(data) == before
    assert not (data.parent / "quarantine").exists()
    j = apply(data, {"circle/0.png": cleaner.DELETE})
    with pytest.raises(cleaner.CleanError, match="shared with you"):
        cleaner.undo(j.id, owner="someone-else")
    assert "circle/0.png" not in snapshot(data)


def test_relabel_into_a_missing_class_folder_and_name_clash_and_train_valid_layout(tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path / "app"))
    root = tmp_path / "app" / "pets"
    for split in ("train", "valid"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
    (root / "valid" / "cat" / "a.png").write_bytes(b"cat a")
    (root / "train" / "dog" / "a.png").write_bytes(b"dog a")
    (root / "train" / "cat" / "a.png").write_bytes(b"train cat a")
    (root / "valid" / "dog").rmdir()                 # no valid/dog yet
    before = snapshot(root)
    j = cleaner.apply_decisions(root, {str(root / "valid/cat/a.png"): cleaner.relabel("dog"),
                                 str(root / "train/dog/a.png"): cleaner.relabel("cat")},
                          classes=["cat", "dog"], owner=OWNER, run_owner=OWNER)
    after = snapshot(root)
    assert after["valid/dog/a.png"] == before["valid/cat/a.png"]   # stays in valid/
    clash = [k for k in after if k.startswith("train/cat/a-")]     # train/cat/a.png was taken
    assert len(clash) == 1 and after[clash[0]] == before["train/dog/a.png"]
    assert after["train/cat/a.png"] == before["train/cat/a.png"]
    cleaner.undo(j.id, owner=OWNER)
    assert snapshot(root) == before
    assert not (root / "valid" / "dog").exists()   # the folder the apply created is gone again
    assert cleaner.data_root([root / "valid/cat/a.png"]) == root


def test_bad_decisions_move_nothing(data, tmp_path):
    before = snapshot(data)
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"x")
    cases = [
        ({"circle/0.png": cleaner.relabel("../evil")}, "not one of this run's classes"),
        ({"circle/0.png": cleaner.relabel("hexagon")}, "not one of this run's classes"),
        ({"circle/0.png": "burn"}, "Unknown cleaning decision"),
        ({"circle/9.png": cleaner.DELETE}, "no longer where the run saw it"),
    ]
    for decisions, message in cases:
        with pytest.raises(cleaner.CleanError, match=message):
            apply(data, {"square/0.png": cleaner.DELETE, **decisions})
    with pytest.raises(cleaner.CleanError, match="not inside a class folder"):
        cleaner.apply_decisions(data, {str(outside): cleaner.DELETE}, classes=["circle"], owner=OWNER,
                          run_owner=OWNER)
    assert snapshot(data) == before and outside.exists()
    with pytest.raises(cleaner.CleanError):
        cleaner.load_journal("../../etc/passwd")


def test_undo_refuses_when_a_file_was_taken_back_by_hand(data):
    j = apply(data, {"circle/0.png": cleaner.DELETE, "circle/1.png": cleaner.relabel("square")})
    (data / "circle" / "0.png").write_bytes(b"a new file with the old name")
    with pytest.raises(cleaner.CleanError, match="overwrite"):
        cleaner.undo(j.id, owner=OWNER)
    assert (data / "square" / "1.png").exists()      # nothing was moved back
    assert (Path(j.quarantine) / "circle" / "0.png").exists()


def test_nothing_to_do_writes_no_journal(data):
    j = apply(data, {"circle/0.png": cleaner.KEEP})
    assert j.moves == [] and not list(cleaner.journals_dir().glob("*.json"))


@pytest.mark.parametrize("owner,run_owner", [("é" * 22, "a" * 22), ("a" * 22, "ü" * 22),
                                             ("a" * 22, "\udcff" * 22)])
def test_an_odd_owner_is_refused_in_a_sentence_not_a_type_error(owner, run_owner):
    with pytest.raises(cleaner.CleanError, match="shared with you"):
        cleaner._check_owner(owner, run_owner)


# Issue 18, defect 9: a choice made for a file that has gone since -----------------------------


def _gone_by_deletion(path: Path) -> None:
    path.unlink()


def _gone_to_another_class(path: Path) -> None:
    path.rename(path.parent.parent / "square" / f"moved-{path.name}")


def _replaced_by_a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _replaced_by_a_link(path: Path) -> None:
    target = path.with_name("elsewhere.bin")
    path.rename(target)
    path.symlink_to(target)


def _replaced_by_a_fifo(path: Path) -> None:
    import os
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize("vanish", [_gone_by_deletion, _gone_to_another_class,
                                    _replaced_by_a_folder, _replaced_by_a_link,
                                    _replaced_by_a_fifo], ids=lambda f: f.__name__[1:])
def test_a_stale_choice_is_left_out_and_never_blocks_the_others(data, vanish):
    """The page applies with skip_vanished: the others are carried out, the stale one is named
    in the journal and its summary, undo puts back exactly what moved, and a later apply works."""
    stale = data / "circle" / "0.png"
    vanish(stale)
    before = snapshot(data)
    decisions = {"circle/0.png": cleaner.DELETE, "circle/1.png": cleaner.relabel("triangle"),
                 "square/0.png": cleaner.DELETE}
    strict = pytest.raises(cleaner.CleanError, match="no longer where the run saw it")
    with strict:
        apply(data, decisions)                                        # the API stays strict ...
    assert snapshot(data) == before
    j = cleaner.apply_decisions(data, {str(data / k): v for k, v in decisions.items()},
                                classes=["circle", "square", "triangle"], owner=OWNER,
                                run_owner=OWNER, skip_vanished=True)  # ... the page's call skips
    assert j.skipped == [str(stale)] and (j.n_deleted, j.n_relabelled) == (1, 1)
    assert "1 chosen image was no longer there" in j.summary()
    assert cleaner.load_journal(j.id).skipped == [str(stale)]
    assert "circle/1.png" not in snapshot(data) and "square/0.png" not in snapshot(data)
    cleaner.undo(j.id, owner=OWNER)
    assert snapshot(data) == before
    again = cleaner.apply_decisions(data, {str(data / "square/1.png"): cleaner.DELETE},
                                    classes=["circle", "square", "triangle"], owner=OWNER,
                                    run_owner=OWNER, skip_vanished=True)
    assert again.n_deleted == 1 and again.skipped == []


def test_only_stale_choices_move_nothing_and_write_no_journal(data):
    for name in ("0.png", "1.png"):
        (data / "circle" / name).unlink()
    j = cleaner.apply_decisions(data, {str(data / "circle/0.png"): cleaner.DELETE,
                                       str(data / "circle/1.png"): cleaner.relabel("square")},
                                classes=["circle", "square", "triangle"], owner=OWNER,
                                run_owner=OWNER, skip_vanished=True)
    assert j.moves == [] and len(j.skipped) == 2 and "2 chosen images were no longer there" in \
        j.summary()
    assert not list(cleaner.journals_dir().glob("*.json"))


def test_an_old_journal_without_skipped_still_loads_and_undoes(data):
    import json
    j = apply(data, {"circle/0.png": cleaner.DELETE})
    path = cleaner.journals_dir() / f"{j.id}.json"
    raw = json.loads(path.read_text())
    del raw["skipped"]
    path.write_text(json.dumps(raw))
    assert cleaner.load_journal(j.id).skipped == []
    cleaner.undo(j.id, owner=OWNER)
    assert (data / "circle" / "0.png").exists()


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", " ", "\n\n"], ids=repr)
def test_a_journal_id_with_anything_after_it_is_refused(data, suffix):
    j = apply(data, {"circle/0.png": cleaner.DELETE})
    assert cleaner.load_journal(j.id).id == j.id
    with pytest.raises(cleaner.CleanError, match="not a valid cleaning journal id"):
        cleaner.load_journal(j.id + suffix)
