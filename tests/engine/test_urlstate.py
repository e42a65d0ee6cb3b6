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
