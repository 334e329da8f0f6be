"""TEMPORARY shim until the dataset helper's atomic module lands."""
from __future__ import annotations
import os, tempfile
from contextlib import contextmanager
from pathlib import Path

@contextmanager
def atomic_writer(path: Path):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
