"""The URL table: every kernels row round-trips through its text form; bad text is refused."""
from __future__ import annotations

import pytest

from ui import urlstate


def test_every_row_round_trips():
    for p in urlstate.table("kernels"):
        value = p.default if p.default is not None else ["1/16"] * 9
        assert p.decode(p.encode(value)) == value


@pytest.mark.parametrize("url,text", [("grey", "yes"), ("ws", "7"), ("x", "abc"), ("layers", "9"),
                                      ("k", "1,2,3"), ("preset", "nope"), ("x", "-5")])
def test_bad_values_raise_value_error(url, text):
    row = next(p for p in urlstate.table("kernels") if p.url == url)
    with pytest.raises(ValueError):
        row.decode(text)


def test_url_keys_are_unique():
    for page in ("kernels",):
        keys = [p.url for p in urlstate.table(page)]
        assert len(keys) == len(set(keys))


# Issue 18, defect 9: a link's size and batch size are exactly the widget's choices ----------------


def _train_row(url: str) -> urlstate.Param:
    return next(p for p in urlstate.table("train") if p.url == url)


def test_the_train_links_size_and_batch_size_are_the_widgets_choices():
    """Every value the widget offers reads back from a link (old share links carry only these);
    anything else is refused, so urlstate.load announces it instead of the widget silently
    falling back to its first choice (/train?size=100&bs=100 used to become 16 and 8)."""
    from engine.settings import BATCH_SIZES, SIZES
    for url, choices in (("size", SIZES), ("bs", BATCH_SIZES)):
        row = _train_row(url)
        assert tuple(row.choices) == tuple(choices)
        for value in choices:
            assert row.decode(row.encode(value)) == value
        for text in ("100", "0", "-16", "1024", "513", "7", "17", "64.0", "0x40", "1e2", ""):
            if text.lstrip("-").isdigit() and int(text) in choices:
                continue
            with pytest.raises(ValueError):
                row.decode(text)
    assert _train_row("size").default in SIZES and _train_row("bs").default in BATCH_SIZES


def test_an_unusable_size_is_announced_by_load():
    problems = urlstate.load("train", {"size": "100", "bs": "100", "epochs": "3"})
    assert len(problems) == 2
    assert all("ignored (not one of the choices)" in p for p in problems)
    assert {"“size”", "“bs”"} == {p.split("value for ")[1].split(" was")[0] for p in problems}
