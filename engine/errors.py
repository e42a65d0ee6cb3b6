"""Errors shared by several engine modules; each message is a sentence for the user."""
from __future__ import annotations


class TrainingError(ValueError):
    """A training request that cannot run as asked; the message is a sentence for the user."""


__all__ = ["TrainingError"]
