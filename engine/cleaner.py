"""Cleaning a data folder by hand: keep, delete or relabel single images, and undo it exactly.

Nothing is ever unlinked. "Delete" moves the file into a quarantine folder under the data dir
(keeping its path relative to the data folder), "relabel" moves it into the sibling folder of its
new class. Every move is written to a journal (JSON under <data dir>/cleaner/) *before* the files
move, so `undo` can put each file back where it was, byte for byte, and an interrupted apply can be
rolled back. Only the session that owns a run may change the data behind it.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Mapping

from engine.data import VALID_NAMES
from engine.fsutil import atomic_write_text
from engine.paths import data_dir

KEEP = "keep"
DELETE = "delete"
MOVE = "move:"           # a relabel decision is "move:<class name>"
JOURNAL_ID = re.compile(r"[A-Za-z0-9_-]{16}")   # always used with fullmatch (no "\n" after it)
SPLIT_NAMES = ("train",) + VALID_NAMES


class CleanError(ValueError):
    """A cleaning request that cannot be carried out; the message is a sentence for the user."""


def relabel(class_name: str) -> str:
    """The decision that moves an image to `class_name`."""
    return MOVE + class_name


def parse_decision(decision: str) -> tuple[str, str | None]:
    """("keep" | "delete" | "move", new class or None) for a decision string."""
    if decision in (KEEP, DELETE):
        return decision, None
    if isinstance(decision, str) and decision.startswith(MOVE):
        return "move", decision[len(MOVE):]
    raise CleanError(f"Unknown cleaning decision {decision!r}; use keep, delete or move:<class>.")


@dataclass
class Move:
    """One file moved by the cleaner."""

    src: str                      # where the file was (absolute)
    dst: str                      # where it is now (absolute)
    action: str                   # "delete" (to quarantine) | "move" (to another class)
    to_class: str | None = None   # the new class of a relabelled file


@dataclass
class Journal:
    """What one apply did, enough to undo it."""

    id: str
    folder: str                   # the data folder that was cleaned
    owner: str                    # the session that applied it (only it may undo)
    run_id: str
    created: float
    quarantine: str               # where deleted files went
    moves: list[Move]
    made_dirs: list[str] = field(default_factory=list)   # class folders the apply had to create
    state: str = "applying"       # "applying" | "applied" | "undone"
    skipped: list[str] = field(default_factory=list)     # chosen files already gone (not moved)

    @property
    def n_deleted(self) -> int:
        return sum(m.action == DELETE for m in self.moves)

    @property
    def n_relabelled(self) -> int:
        return sum(m.action == "move" for m in self.moves)

    def summary(self) -> str:
        """One sentence saying what happened, for the page (and one more when chosen files had
        already gone)."""
        text = (f"{self.n_deleted} image{'s' * (self.n_deleted != 1)} moved to quarantine, "
                f"{self.n_relabelled} relabelled.")
        if self.skipped:
            n = len(self.skipped)
            text += (f" {n} chosen image{'s were' if n != 1 else ' was'} no longer there (moved "
                     "or cleaned meanwhile) and left out.")
        return text


def journals_dir() -> Path:
    path = data_dir() / "cleaner"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _save(journal: Journal) -> None:
    # Written to a temporary file and renamed, so a journal on disk is always complete; private
    # (0o600) as it always was.
    path = journals_dir() / f"{journal.id}.json"
    atomic_write_text(path, json.dumps(asdict(journal), indent=1), mode=0o600)


def load_journal(journal_id: str) -> Journal:
    """A saved journal by id (the id is checked before any path is built from it)."""
    if not isinstance(journal_id, str) or not JOURNAL_ID.fullmatch(journal_id):
        raise CleanError("This is not a valid cleaning journal id.")
    path = journals_dir() / f"{journal_id}.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        d["moves"] = [Move(**m) for m in d["moves"]]
        return Journal(**d)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CleanError("That cleaning step's journal is missing or damaged, so it cannot be "
                         "undone automatically.") from exc


def data_root(paths: list[str] | list[Path]) -> Path:
    """The data folder that image paths (…/<class>/<file> or …/<train|valid>/<class>/<file>) belong
    to, as the run store records them."""
    roots = set()
    for p in paths:
        p = Path(p)
        root = p.parent.parent
        if root.name.lower() in SPLIT_NAMES and (root.parent / "train").is_dir():
            root = root.parent
        roots.add(root)
    if len(roots) != 1:
        raise CleanError("The run's images do not come from one data folder, so they cannot be "
                         "cleaned here.")
    return roots.pop()


def _check_owner(owner: str | None, run_owner: str | None) -> None:
    from engine.runs import same_owner   # bytes, so an odd owner is a refusal, not a TypeError
    if not owner or not run_owner or not same_owner(owner, run_owner):
        raise CleanError("This run was shared with you, so its data cannot be changed from here; "
                         "train your own run to clean its data.")


def _check_class(name: str, classes: list[str]) -> None:
    # The class list comes from the run; the name check keeps a forged decision from naming a
    # path ("../x", "a/b", ".hidden") even if such a string were somehow in that list.
    bad = not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name \
        or name.startswith(".")
    if bad or name not in classes:
        raise CleanError(f"{name!r} is not one of this run's classes; choose one of "
                         f"{', '.join(classes)}.")


def _free_name(target: Path, taken: set[Path]) -> Path:
    """target, or target with a short random suffix when a file of that name is already there."""
    while target.exists() or target in taken:
        target = target.with_name(f"{target.stem}-{secrets.token_hex(3)}{target.suffix}")
    return target


def vanished(decisions: Mapping[str, str]) -> list[str]:
    """The files of `decisions` (other than keep) that are no longer plain files where the run saw
    them: moved by another tab, quarantined on the Train page, replaced by a folder or a link."""
    from engine.data.files import is_regular_file
    return [raw for raw, decision in decisions.items()
            if decision != KEEP and not is_regular_file(raw)]


def plan(folder: str | os.PathLike, decisions: Mapping[str, str], classes: list[str],
         quarantine: Path) -> list[Move]:
    """The moves that carry out `decisions` ({file path: decision}); nothing changes on disk.

    Every file must be an existing image file inside `folder` (no links), in a class folder."""
    root = Path(folder).resolve()
    moves: list[Move] = []
    taken: set[Path] = set()
    for raw, decision in decisions.items():
        action, new_class = parse_decision(decision)
        if action == KEEP:
            continue
        src = Path(raw)
        if src.is_symlink() or not src.is_file():
            raise CleanError(f"{src.name} is no longer where the run saw it (moved or cleaned "
                             "already); reload the page.")
        src = src.resolve()
        if root not in src.parents or src.parent == root:
            raise CleanError(f"{src.name} is not inside a class folder of {root.name}, so the "
                             "cleaner will not touch it.")
        if action == DELETE:
            dst = _free_name(quarantine / src.relative_to(root), taken)
            moves.append(Move(str(src), str(dst), DELETE))
        else:
            assert new_class is not None
            _check_class(new_class, classes)
            if new_class == src.parent.name:
                continue  # already in that class: nothing to move
            dst = _free_name(src.parent.parent / new_class / src.name, taken)
            moves.append(Move(str(src), str(dst), "move", new_class))
        taken.add(Path(moves[-1].dst))
    return moves


def apply_decisions(folder: str | os.PathLike, decisions: Mapping[str, str], *, classes: list[str],
                    owner: str | None, run_owner: str | None, run_id: str = "",
                    skip_vanished: bool = False) -> Journal:
    """Carry out keep / delete / relabel decisions on a data folder; returns the journal.

    Refuses (CleanError, nothing moved) when `owner` is not the run's owner. Deleted files go to
    <data dir>/quarantine/<folder>-clean-<time>-<id>/; relabelled ones to their new class folder.
    If any move fails, the ones already made are moved back before the error is raised. A chosen
    file that is already gone (a stale choice: `vanished`) refuses the whole apply, unless
    `skip_vanished`: then it is left out and named in the journal's `skipped`, so a choice made
    before another tab (or the Train page's quarantine) moved the file never blocks the others.
    """
    _check_owner(owner, run_owner)
    root = Path(folder).resolve()
    if not root.is_dir():
        raise CleanError(f"The data folder {root.name} no longer exists.")
    gone = vanished(decisions) if skip_vanished else []
    left_out = set(gone)
    decisions = {raw: d for raw, d in decisions.items() if raw not in left_out}
    jid = secrets.token_urlsafe(12)
    quarantine = data_dir() / "quarantine" / f"{root.name}-clean-{time.strftime('%Y%m%d-%H%M%S')}-{jid[:6]}"
    moves = plan(root, decisions, list(classes), quarantine)
    journal = Journal(id=jid, folder=str(root), owner=str(owner), run_id=run_id, created=time.time(),
                      quarantine=str(quarantine), moves=moves, skipped=list(gone))
    if not moves:
        journal.state = "applied"
        return journal
    _save(journal)  # before the first move: an interrupted apply can still be found and undone
    done: list[Move] = []
    try:
        for m in moves:
            dst = Path(m.dst)
            if not dst.parent.is_dir():
                # Record every folder we create, top first, so undo can remove them again.
                missing = [p for p in [dst.parent, *dst.parent.parents] if not p.exists()]
                dst.parent.mkdir(parents=True)
                if m.action == "move":
                    journal.made_dirs.extend(str(p) for p in reversed(missing))
            shutil.move(m.src, m.dst)  # a rename on the same disk; copy-then-remove across disks
            done.append(m)
    except OSError as exc:
        for m in reversed(done):
            shutil.move(m.dst, m.src)
        _remove_empty(journal.made_dirs)
        journal.state = "undone"
        _save(journal)
        raise CleanError(f"Moving {Path(m.src).name} failed ({exc.strerror or exc}); nothing was "
                         "changed.") from exc
    journal.state = "applied"
    _save(journal)
    return journal


def _remove_empty(dirs: list[str]) -> None:
    for d in reversed(dirs):
        try:
            os.rmdir(d)  # only ever removes an empty folder
        except OSError:
            pass


def undo(journal_id: str, *, owner: str | None) -> Journal:
    """Put every file of one apply back where it was. Refuses, moving nothing, when a file is
    missing from where the cleaner left it or its old place has been taken meanwhile."""
    journal = load_journal(journal_id)
    _check_owner(owner, journal.owner)
    if journal.state == "undone":
        raise CleanError("This cleaning step has already been undone.")
    # An interrupted apply may have moved only some files: undo those that did move.
    todo = [m for m in journal.moves if Path(m.dst).exists() or journal.state == "applied"]
    for m in todo:
        if not Path(m.dst).is_file():
            raise CleanError(f"{Path(m.dst).name} is no longer where the cleaner put it, so the "
                             "step cannot be undone exactly; nothing was moved back.")
        if Path(m.src).exists():
            raise CleanError(f"A file named {Path(m.src).name} is back in its old place, so undoing "
                             "would overwrite it; nothing was moved back.")
    for m in reversed(todo):
        Path(m.src).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(m.dst, m.src)
    _remove_empty(journal.made_dirs)
    _remove_empty([journal.quarantine] + [str(p) for p in _dirs_below(Path(journal.quarantine))])
    journal.state = "undone"
    _save(journal)
    return journal


def _dirs_below(folder: Path) -> list[Path]:
    """Sub-folders of folder, deepest last (so _remove_empty, which goes in reverse, empties them
    bottom-up)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()),
                  key=lambda p: len(p.parts))


def training_files(root: str | os.PathLike, class_name: str,
                   exclude: Collection[str] = ()) -> list[str]:
    """Image files of one class that a run trained on, sorted: its folder (train/<class> when the
    data set has train/ and valid/), minus `exclude` (the run's validation files). Hidden files,
    symbolic links and anything that is not a plain file (a FIFO named *.png) are left out, as
    the loaders leave them out."""
    from engine.data import IMAGE_SUFFIXES

    root = Path(root)
    folder = root / "train" / class_name if (root / "train").is_dir() else root / class_name
    if not folder.is_dir():
        return []
    from engine.data.files import is_regular_file

    skip = set(exclude)
    return sorted(str(p) for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                  and is_regular_file(p) and str(p) not in skip)


def hardest_first(rows: Iterable[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
    """(path, loss, predicted class) rows whose file still exists (cleaning moves files away),
    largest loss first; equal losses keep their order."""
    return sorted((r for r in rows if os.path.exists(r[0])), key=lambda r: -r[1])


__all__ = ["KEEP", "DELETE", "MOVE", "CleanError", "Move", "Journal", "relabel", "parse_decision",
           "journals_dir", "load_journal", "data_root", "vanished", "plan", "apply_decisions", "undo",
           "training_files", "hardest_first"]
