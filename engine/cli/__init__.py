"""Command-line entry points (`python -m engine.train`, `python -m engine.lr_find`); nothing in the
engine, ui/ or pages/ imports these modules."""
