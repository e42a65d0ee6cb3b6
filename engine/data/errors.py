"""The one error type of engine.data."""
from __future__ import annotations


class DataError(ValueError):
    """A data set that cannot be used as given; the message is a sentence for the user."""


__all__ = ["DataError"]
