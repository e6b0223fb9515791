"""The one error type for bad input: the command prints it on one line and exits with code 2."""

from __future__ import annotations


class DataError(Exception):
    """The input cannot be trained on (missing target, empty file, one class...); nothing was written."""
