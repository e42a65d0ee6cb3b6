"""Reading a number typed by a user or carried by a link, in time bounded by the text's length.

Exact arithmetic on an unchecked text is a denial of service: `Fraction("1e999999999")` builds an
integer of a billion digits while holding the interpreter lock, so one link stops the whole server,
and `int` refuses more than 4,300 digits with a ValueError no page expects. So every number from
a user or a link passes through here: its length is checked first (one `len`), then its form (a
regular expression without nested repetition, linear in the length), then the size of its
exponent, and only then is any arithmetic done, on integers of at most a few hundred digits.
"""
from __future__ import annotations

import re
from fractions import Fraction

MAX_NUMBER_CHARS = 40   # longest number text read: sign, digits, point and exponent together
MAX_EXPONENT = 400      # |written exponent| allowed; a float ends near 1e±308, and 40 digits move
                        # a value by at most 40 more places, so nothing usable is refused
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?")


class NumberError(ValueError):
    """A text that is not a number the app reads; the message is a sentence for the user, and
    `reason` says which check refused it: "length", "form" or "exponent"."""

    def __init__(self, message: str, reason: str = "form"):
        super().__init__(message)
        self.reason = reason


def excerpt(text: str, limit: int = 24) -> str:
    """The start of a text, for quoting it in a sentence without echoing a megabyte back."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "…"


def check_length(text: str, *, limit: int = MAX_NUMBER_CHARS) -> str:
    """text stripped, or NumberError when it is longer than `limit` characters."""
    text = str(text)
    if len(text) > 4 * limit or len(text.strip()) > limit:   # the first test keeps strip() cheap
        raise NumberError(f"“{excerpt(text.strip())}” is too long for a number: use at most "
                          f"{limit} characters.", "length")
    return text.strip()


def read_float(text: str) -> float:
    """float(text) after the length check; NaN and ±inf come back as floats for the caller's
    range check. Raises NumberError when the text is too long or not a number."""
    raw = check_length(text)
    try:
        return float(raw)
    except ValueError:
        raise NumberError(f"“{raw}” is not a number.") from None


def read_int(text: str) -> int:
    """int(text) after the length check (at most 40 digits, far below Python's own limit)."""
    raw = check_length(text)
    try:
        return int(raw)
    except ValueError:
        raise NumberError(f"“{raw}” is not a whole number.") from None


def read_decimal(text: str) -> Fraction:
    """A decimal such as `-1`, `0.25` or `1e-2`, exactly, as a Fraction.

    Raises NumberError when the text is too long, is not of that form, or its exponent is beyond
    ±MAX_EXPONENT — all decided before Fraction sees it, so no arithmetic is unbounded.
    """
    raw = check_length(text)
    match = _DECIMAL.fullmatch(raw)
    if match is None:
        raise NumberError(f"“{raw}” is not a number.")
    if match.group(1) is not None and abs(int(match.group(1))) > MAX_EXPONENT:
        raise NumberError(f"“{raw}” has an exponent beyond ±{MAX_EXPONENT}; write the number "
                          "with a smaller power of ten.", "exponent")
    return Fraction(raw)


__all__ = ["MAX_NUMBER_CHARS", "MAX_EXPONENT", "NumberError", "excerpt", "check_length",
           "read_float", "read_int", "read_decimal"]
