"""The one exception the data loaders raise for bad input."""
from __future__ import annotations

import os


class DataError(Exception):
    """A data file is missing or malformed. ``str(err)`` is one line: ``<path>: <problem>``."""

    def __init__(self, path, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
