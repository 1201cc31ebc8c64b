"""Helpers shared by the command-line tools: one-line errors with exit status 2, atomic writes."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Callable

from .data.errors import DataError

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input that is not a data file or checkpoint problem; the message is one line."""


def bad_input_types():
    from .checkpoint import CheckpointError
    return (DataError, UsageError, CheckpointError)


def run(main: Callable[[], int]) -> int:
    """Call ``main``; on bad input print ``error: <file>: <problem>`` on stderr and return 2."""
    try:
        return main()
    except bad_input_types() as e:
        msg = " ".join(str(e).split())  # one line, whatever the exception carried
        print(f"error: {msg}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT


def atomic_write(path: str, write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path`` (no partial files)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON atomically (NaN written as null)."""
    def clean(o):
        if isinstance(o, float) and o != o:
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(clean(obj), f, indent=2)
            f.write("\n")

    atomic_write(path, write, ".json")
