"""engine.fsutil: a file or folder appears complete or not at all; a failure keeps the old one."""
from __future__ import annotations

import os
import stat
import threading

import pytest

from engine import fsutil
from engine.fsutil import (NotAFolderError, atomic_dir, atomic_file, atomic_text_file,
                           atomic_write_bytes, atomic_write_text)


def _listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


class Boom(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Files


def test_write_creates_the_folder_and_the_file(tmp_path):
    path = tmp_path / "a" / "b" / "x.bin"
    assert atomic_write_bytes(path, b"\x00\x01") == path
    assert path.read_bytes() == b"\x00\x01"
    assert atomic_write_text(tmp_path / "t.json", "é\n") == tmp_path / "t.json"
    assert (tmp_path / "t.json").read_bytes() == "é\n".encode("utf-8")
    assert _listing(path.parent) == ["x.bin"]                       # no temporary file left


def test_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _listing(tmp_path) == ["x.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("old")
    with pytest.raises(Boom):
        with atomic_file(path) as out:
            out.write(b"half of the new")
            raise Boom()
    assert path.read_text() == "old" and _listing(tmp_path) == ["x.txt"]


def test_a_failed_rename_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "x.txt"
    path.write_text("old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and _listing(tmp_path) == ["x.txt"]


def test_a_reader_never_sees_the_new_file_before_it_is_complete(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("old")
    with atomic_file(path) as out:
        out.write(b"new")
        assert path.read_text() == "old"
        hidden = [n for n in _listing(tmp_path) if n != "x.txt"]
        assert len(hidden) == 1 and hidden[0].startswith(".x.txt.") and hidden[0].endswith(".part")
    assert path.read_text() == "new"


def test_a_text_file_is_written_whole_or_not_at_all(tmp_path):
    import csv

    path = tmp_path / "log.csv"
    with atomic_text_file(path, newline="") as f:
        csv.writer(f).writerows([["epoch", "loss"], [1, "0.5"]])
        assert not path.exists()
    assert path.read_bytes() == b"epoch,loss\r\n1,0.5\r\n" and _listing(tmp_path) == ["log.csv"]
    with pytest.raises(Boom):
        with atomic_text_file(path) as f:
            f.write("half")
            raise Boom()
    assert path.read_bytes() == b"epoch,loss\r\n1,0.5\r\n" and _listing(tmp_path) == ["log.csv"]


def test_mode_sets_the_permissions(tmp_path):
    private = atomic_write_bytes(tmp_path / "p", b"x", mode=0o600)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    umask = os.umask(0o022)
    os.umask(umask)
    plain = atomic_write_bytes(tmp_path / "q", b"x")
    assert stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask   # as open() would make it


def test_a_fixed_temporary_name_overwrites_a_leftover(tmp_path):
    path = tmp_path / "big.tar.gz"
    (tmp_path / ".big.tar.gz.part").write_bytes(b"left by a killed process")
    atomic_write_bytes(path, b"whole", unique=False, fsync=False)
    assert path.read_bytes() == b"whole" and _listing(tmp_path) == ["big.tar.gz"]


def test_no_overwrite_refuses_an_existing_file_and_drops_the_new_copy(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        atomic_write_bytes(path, b"second", overwrite=False, lock=threading.Lock())
    assert path.read_bytes() == b"first" and _listing(tmp_path) == ["x.png"]
    atomic_write_bytes(tmp_path / "y.png", b"new", overwrite=False)
    assert (tmp_path / "y.png").read_bytes() == b"new"


def test_threads_writing_the_same_name_agree_on_one_winner(tmp_path):
    path = tmp_path / "same.bin"
    lock, results = threading.Lock(), []

    def write(i: int) -> None:
        try:
            atomic_write_bytes(path, b"x" * 1000, overwrite=False, lock=lock, fsync=False)
            results.append("wrote")
        except FileExistsError:
            results.append("refused")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["refused"] * 7 + ["wrote"]
    assert _listing(tmp_path) == ["same.bin"]


# --------------------------------------------------------------------------------------------
# Folders


def test_atomic_dir_builds_the_folder_and_its_parents(tmp_path):
    dest = tmp_path / "sets" / "new"
    with atomic_dir(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.name.startswith(".new.part-")
        assert not dest.exists()                               # not visible while being built
        (tmp / "cls").mkdir()
        (tmp / "cls" / "a.txt").write_text("a")
    assert _tree(dest) == {"cls/a.txt": b"a"} and _listing(dest.parent) == ["new"]


def test_atomic_dir_replaces_an_existing_folder(tmp_path):
    dest = tmp_path / "set"
    (dest / "old").mkdir(parents=True)
    (dest / "old" / "a.txt").write_text("old")
    with atomic_dir(dest) as tmp:
        (tmp / "b.txt").write_text("new")
    assert _tree(dest) == {"b.txt": b"new"}
    assert _listing(tmp_path) == ["set"]                        # the old copy is gone too


def test_a_failed_build_keeps_the_old_folder_and_leaves_nothing(tmp_path):
    dest = tmp_path / "set"
    dest.mkdir()
    (dest / "a.txt").write_text("old")
    with pytest.raises(Boom):
        with atomic_dir(dest) as tmp:
            (tmp / "half.txt").write_text("half")
            raise Boom()
    assert _tree(dest) == {"a.txt": b"old"} and _listing(tmp_path) == ["set"]
    with pytest.raises(Boom):
        with atomic_dir(tmp_path / "fresh"):
            raise Boom()
    assert _listing(tmp_path) == ["set"]


def test_a_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    dest = tmp_path / "set"
    dest.mkdir()
    (dest / "a.txt").write_text("old")
    real_rename = os.rename

    def rename(src, dst):
        if ".part-" in str(src):
            raise OSError("rename refused")
        return real_rename(src, dst)

    monkeypatch.setattr(fsutil.os, "rename", rename)
    with pytest.raises(OSError, match="rename refused"):
        with atomic_dir(dest) as tmp:
            (tmp / "b.txt").write_text("new")
    assert _tree(dest) == {"a.txt": b"old"} and _listing(tmp_path) == ["set"]


def test_a_file_in_the_way_is_refused_and_kept(tmp_path):
    dest = tmp_path / "set"
    dest.write_text("a file")
    with pytest.raises(NotAFolderError):
        with atomic_dir(dest) as tmp:
            (tmp / "a.txt").write_text("new")
    assert dest.read_text() == "a file" and _listing(tmp_path) == ["set"]


def test_keep_leaves_a_folder_made_meanwhile(tmp_path):
    dest = tmp_path / "digits"
    with atomic_dir(dest, existing="keep") as tmp:
        (tmp / "mine.txt").write_text("mine")
        dest.mkdir()                                          # another process finished first
        (dest / "theirs.txt").write_text("theirs")
    assert _tree(dest) == {"theirs.txt": b"theirs"} and _listing(tmp_path) == ["digits"]
    with atomic_dir(tmp_path / "new", existing="keep") as tmp:
        (tmp / "mine.txt").write_text("mine")
    assert _tree(tmp_path / "new") == {"mine.txt": b"mine"}


def test_error_never_replaces_a_folder_with_content(tmp_path):
    dest = tmp_path / "run"
    dest.mkdir()
    (dest / "run.json").write_text("{}")
    with pytest.raises(OSError):
        with atomic_dir(dest, existing="error") as tmp:
            (tmp / "run.json").write_text('{"new": 1}')
    assert _tree(dest) == {"run.json": b"{}"} and _listing(tmp_path) == ["run"]
    with atomic_dir(tmp_path / "other", existing="error") as tmp:
        (tmp / "run.json").write_text("{}")
    assert _tree(tmp_path / "other") == {"run.json": b"{}"}


def test_an_unknown_existing_rule_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="replace, keep or error"):
        with atomic_dir(tmp_path / "x", existing="merge"):
            pass
    assert _listing(tmp_path) == []
