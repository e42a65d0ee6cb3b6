"""Issue 18, defect 9: ids and tokens are checked with a full match.

`re.match(r"^[A-Za-z0-9_-]{22}$", x)` accepts x with a newline after it, because `$` also matches
before a final "\\n". Every id and token the app checks (run ids in links and folder names,
cleaning-journal ids, owner tokens) must be matched whole; these tests try the characters that
slip past `$` or that a link can carry, and scan the code for an anchored pattern used instead.
"""
from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui import state

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ["\n", "\r\n", "\n\n", " ", "\x00", "\t", "/", "\u2028"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One real run (a small CNN, one epoch) in a data dir of this module."""
    from tests.pages.test_explore import make_fake_run
    data = tmp_path_factory.mktemp("dllab")
    mp = pytest.MonkeyPatch()
    mp.setenv("DLLAB_DATA", str(data))
    run_id, _ = make_fake_run(data, owner="owner-token-a")
    yield run_id, data
    mp.undo()


@pytest.fixture
def env(stored, monkeypatch):
    run_id, data = stored
    monkeypatch.setenv("DLLAB_DATA", str(data))
    return run_id, data


@pytest.mark.parametrize("suffix", SUFFIXES, ids=repr)
def test_a_run_id_with_anything_after_it_is_refused(env, suffix):
    from engine.runs import RUN_ID, RunError, load_run, read_info
    run_id, _ = env
    assert load_run(run_id).info.id == run_id
    assert not RUN_ID.fullmatch(run_id + suffix)
    for reader in (read_info, load_run):
        with pytest.raises(RunError, match="not a valid run id"):
            reader(run_id + suffix)


def test_a_run_folder_named_with_a_trailing_newline_is_not_listed(env):
    """A folder named "<id>\\n" (possible on Linux) is not a run, whatever its run.json says."""
    from engine.runs import list_runs, runs_dir
    run_id, _ = env
    twin = runs_dir() / (run_id + "\n")
    shutil.copytree(runs_dir() / run_id, twin)
    try:
        assert [i.id for i in list_runs("owner-token-a")] == [run_id]
    finally:
        shutil.rmtree(twin)


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " "], ids=repr)
def test_an_explorer_link_with_a_trailing_newline_is_one_sentence(env, suffix):
    run_id, _ = env
    at = AppTest.from_file(str(ROOT / "pages" / "explore.py"), default_timeout=120)
    at.session_state[state.SESSION_OWNER] = "someone-else"
    at.query_params["run"] = run_id + suffix
    at.run()
    assert not at.exception, at.exception
    assert any("not a valid run id" in e.value for e in at.error), [e.value for e in at.error]
    assert state.E_SHARED not in at.session_state or not at.session_state[state.E_SHARED]


@pytest.mark.parametrize("suffix", SUFFIXES, ids=repr)
def test_owner_tokens_are_matched_whole(suffix, tmp_path, monkeypatch):
    from engine.paths import session_dir
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path))
    token = "A" * 22
    assert session_dir(token).name == token
    with pytest.raises(ValueError):
        session_dir(token + suffix)
    assert state._well_formed(token) and not state._well_formed(token + suffix)


def _regex_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, pattern) of every string handed to re.compile / re.match / re.fullmatch /
    re.search."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re" \
                and node.func.attr in ("compile", "match", "fullmatch", "search") and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            out.append((node.lineno, node.args[0].value))
    return out


def test_no_id_or_token_pattern_relies_on_a_dollar_anchor():
    """A whole-string check is a fullmatch; a pattern ending in "$" (which also matches before a
    final newline) is not used to check anything in the app's code."""
    anchored = []
    for path in [ROOT / "app.py", *(ROOT / "engine").rglob("*.py"), *(ROOT / "ui").rglob("*.py"),
                 *(ROOT / "pages").rglob("*.py")]:
        for line, pattern in _regex_literals(ast.parse(path.read_text(encoding="utf-8"))):
            if re.search(r"(?<!\\)\$\)?$", pattern):
                anchored.append(f"{path.relative_to(ROOT)}:{line}: {pattern}")
    assert anchored == []
