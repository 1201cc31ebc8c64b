"""The package's exceptions: one base class, one subclass per kind of bad input.

Every error a user can cause derives from :class:`STCFormerError`; the command-line programs
turn it into one line on stderr and exit status 2 (``stcformer.cli.run``). Each subclass also
derives from the builtin exception that code outside the package would expect, so ``except
ValueError`` around ``load_checkpoint`` or ``except RuntimeError`` around a forward keeps working.
"""
from __future__ import annotations

import os


class STCFormerError(Exception):
    """Base of every error the package raises for bad input; the message is one line."""


class UsageError(STCFormerError, ValueError):
    """A bad argument or flag (not a file's contents)."""


class DataError(STCFormerError, ValueError):
    """A data file is missing or malformed. ``str(err)`` is one line: ``<path>: <problem>``."""

    def __init__(self, path, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CheckpointError(STCFormerError, ValueError):
    """A file that cannot be loaded as an STCFormer checkpoint; the message names the file."""


class BackendError(STCFormerError, RuntimeError):
    """An ``stc_attention`` backend was named that cannot run on these tensors (says why)."""


__all__ = ["STCFormerError", "UsageError", "DataError", "CheckpointError", "BackendError"]
