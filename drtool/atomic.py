"""Write files so that a reader sees the old content or the new, never half.

Each file is first written to a temporary file in its own folder (so the final
rename stays on one file system and is atomic), flushed and fsynced, then
renamed over its target with ``os.replace``. Temporary files are named
``.<target name>.<random>.tmp``; only a hard kill (SIGKILL, power loss) can
leave one behind.

Two ways in:

- ``atomic_writer(path)``: one file::

      with atomic_writer(path) as handle:
          json.dump(document, handle)

- ``AtomicFiles``: several files that appear together or not at all::

      with AtomicFiles() as files:
          left = files.open(folder / "a.csv")
          right = files.open(folder / "b.csv")
          ...  # an exception here leaves a.csv and b.csv as they were

  Every file is written and fsynced before the first one is renamed, so an
  error while writing (a bad input line, a full disk, Ctrl-C) changes none of
  the targets. The renames themselves are separate system calls: a crash of
  the machine in the microseconds between two of them can leave some targets
  new and others old. POSIX offers no atomic rename of several files.

A new file gets the permissions ``open()`` would give it (0o666 less the
umask); a replaced file keeps its own. Text handles are UTF-8 with
``newline=""`` by default, as the csv module wants.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str = "utf-8",
    newline: str | None = "",
) -> Iterator[IO[Any]]:
    """Yield a handle whose content replaces ``path`` atomically on success.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes). If the block raises, the
    temporary file is removed and ``path`` is left as it was.
    """
    with AtomicFiles() as files:
        yield files.open(path, mode, encoding=encoding, newline=newline)


@dataclass
class _Pending:
    """One file being written: its target, its temporary file, the handle."""

    target: Path
    temporary: Path
    handle: IO[Any]


class AtomicFiles:
    """A set of files written to temporaries and renamed together on success.

    Use it as a context manager: leaving the block normally commits every file
    opened with ``open``; leaving it by an exception (including Ctrl-C)
    discards them all. ``commit`` and ``discard`` may also be called directly;
    after either, the set is closed and ``open`` refuses.
    """

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._closed = False

    def __enter__(self) -> AtomicFiles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def open(
        self,
        path: str | os.PathLike[str],
        mode: str = "w",
        *,
        encoding: str = "utf-8",
        newline: str | None = "",
        buffering: int = -1,
    ) -> IO[Any]:
        """Return a handle on a new temporary file that will replace ``path``."""
        if self._closed:
            raise ValueError("this AtomicFiles was already committed or discarded")
        if mode not in ("w", "wb"):
            raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
        target = Path(path)
        if any(p.target == target for p in self._pending):
            raise ValueError(f"{target} is already open in this AtomicFiles")

        temporary, fd = _create_temporary(target)
        try:
            if mode == "wb":
                handle: IO[Any] = os.fdopen(fd, "wb", buffering=buffering)
            else:
                handle = os.fdopen(
                    fd, "w", buffering=buffering, encoding=encoding, newline=newline
                )
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        self._pending.append(_Pending(target, temporary, handle))
        return handle

    def commit(self) -> None:
        """Make every file durable, then rename each over its target."""
        if self._closed:
            raise ValueError("this AtomicFiles was already committed or discarded")
        try:
            # Everything on disk first: a failure here still changes no target.
            for pending in self._pending:
                _flush_to_disk(pending.handle)
            for pending in self._pending:
                os.replace(pending.temporary, pending.target)
        except BaseException:
            self.discard()
            raise

        # The renames are durable only once their folders are synced too.
        for folder in {p.target.parent for p in self._pending}:
            _sync_folder(folder)
        self._closed = True

    def discard(self) -> None:
        """Close and remove every temporary file; leave the targets alone."""
        self._closed = True
        for pending in self._pending:
            with contextlib.suppress(OSError, ValueError):
                pending.handle.close()
            # After a partial commit some temporaries were already renamed.
            pending.temporary.unlink(missing_ok=True)


def _create_temporary(target: Path) -> tuple[Path, int]:
    """Create an empty temporary file beside ``target``; return it and its fd."""
    while True:
        name = f".{target.name}.{secrets.token_hex(6)}.tmp"
        temporary = target.with_name(name)
        try:
            # 0o666: the kernel applies the umask, as open() would.
            fd = os.open(temporary, _OPEN_FLAGS, 0o666)
        except FileExistsError:
            continue
        break
    try:
        # Replacing a file keeps its permissions, as writing it in place would.
        if os.chmod in os.supports_fd:
            os.chmod(fd, stat.S_IMODE(os.stat(target).st_mode))
    except FileNotFoundError:
        pass
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    return temporary, fd


def _flush_to_disk(handle: IO[Any]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _sync_folder(folder: Path) -> None:
    # Best effort: some systems (Windows, some network file systems) cannot
    # open or fsync a folder; the rename has happened either way.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
