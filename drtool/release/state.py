"""The release state file: what `drtool release` made, recorded step by step.

``.drtool-state.json`` beside config.yaml holds, per DataRobot object, its id
and what it was made from (content hashes, settings), so a rerun knows what
exists and what changed. Every record is written at once and atomically
(temporary file, fsync, rename): an interruption leaves the previous complete
file, never half of one. It never holds the token.

Format 1::

    {
      "format": 1,
      "endpoint": "https://app.datarobot.com/api/v2",
      "updated": "2025-01-31T12:00:00+00:00",
      "objects": {
        "environment": {"id": "...", "name": "..."},
        "environment_version": {"id": "...", "environment_id": "...",
            "context_sha256": "...", "files": {"Dockerfile": "<sha256>"},
            "build_status": "success"},
        "model": {"id": "...", "name": "...", "kind": "typed-unstructured"},
        "model_version": {"id": "...", "model_id": "...",
            "files_sha256": "...", "files": {...}, "settings": {...},
            "environment_version_id": "..."},
        "dependency_build": {"model_version_id": "...", "status": "success"},
        "model_test": {"id": "...", "model_version_id": "...",
            "status": "succeeded"},
        "registered_model": {"id": "...", "name": "..."},
        "registered_model_version": {"id": "...", "registered_model_id": "...",
            "model_version_id": "..."},
        "deployment": {"id": "...", "label": "...", "model_package_id": "...",
            "association_id_column": "id"}
      }
    }

Objects are recorded for one endpoint: ids of another DataRobot mean nothing
here, so a state file written for another endpoint is set aside (the run
starts from what the server has).

A lock file beside it (``.drtool-state.json.lock``) keeps a second run off the
same state: it holds the owner's process id and host; a lock whose process is
gone on this host is stale and taken over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from drtool.atomic import atomic_writer
from drtool.errors import ConfigError, LockedError
from drtool.settings import Settings

log = logging.getLogger(__name__)

STATE_FORMAT = 1
LOCK_SUFFIX = ".lock"

Record = dict[str, Any]


@dataclass
class State:
    """The recorded objects of one state file; ``record`` writes through."""

    path: Path
    endpoint: str = ""
    objects: dict[str, Record] = field(default_factory=dict)

    def get(self, name: str) -> Record | None:
        """Return the record of object ``name``, or None."""
        found = self.objects.get(name)
        return dict(found) if found else None

    def id_of(self, name: str) -> str:
        """Return the recorded id of object ``name``, or ''."""
        return str((self.objects.get(name) or {}).get("id") or "")

    def record(self, name: str, /, **values: Any) -> None:
        """Replace the record of ``name`` and write the file now (if it changed)."""
        if self.objects.get(name) != values:
            self.objects[name] = values
            self.save()

    def update(self, name: str, /, **values: Any) -> None:
        """Add ``values`` to the record of ``name`` and write the file now."""
        self.record(name, **{**self.objects.get(name, {}), **values})

    def forget(self, *names: str) -> None:
        """Drop the records of ``names`` (made for something now replaced)."""
        dropped = [n for n in names if self.objects.pop(n, None) is not None]
        if dropped:
            self.save()

    def save(self) -> None:
        """Write the state atomically."""
        document = {
            "format": STATE_FORMAT,
            "endpoint": self.endpoint,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            "objects": self.objects,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(self.path) as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
            handle.write("\n")


def load_state(path: Path, endpoint: str) -> State:
    """Read the state file for ``endpoint``; a missing file is an empty state."""
    document = _read(path)
    if document is None:
        return State(path=path, endpoint=endpoint)
    recorded_endpoint = str(document.get("endpoint") or "")
    objects = document.get("objects") or {}
    if not isinstance(objects, dict):
        raise ConfigError(f"{path}: 'objects' must be a mapping; {_REMEDY}")
    if endpoint and recorded_endpoint and recorded_endpoint != endpoint:
        log.warning(
            "%s records objects on %s, not on %s; they are ignored, and the "
            "next record replaces them.",
            path,
            recorded_endpoint,
            endpoint,
        )
        objects = {}
    return State(path=path, endpoint=endpoint or recorded_endpoint, objects=objects)


def recorded_deployment_id(settings: Settings) -> str:
    """Return the deployment id the last release recorded, or ''."""
    document = _read(settings.state_file)
    if document is None:
        return ""
    deployment = (document.get("objects") or {}).get("deployment") or {}
    return str(deployment.get("id") or "")


_REMEDY = (
    "delete it to start afresh; drtool finds its objects again by name on the next run."
)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}.") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON; {_REMEDY}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path} is not a drtool state file; {_REMEDY}")
    found = document.get("format")
    if found != STATE_FORMAT:
        raise ConfigError(
            f"{path} has format {found!r}; this drtool reads format "
            f"{STATE_FORMAT}. Upgrade drtool, or {_REMEDY}"
        )
    return document


class StateLock:
    """Hold the lock file of a state file, as a context manager.

    The lock file is created whole (written aside, then hard-linked into
    place, which fails if it exists), so no reader ever sees it empty.
    """

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + LOCK_SUFFIX)
        self.owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock; take over a stale one; else raise ``LockedError``."""
        if self._try_create():
            return
        holder = _read_lock(self.path)
        if not _is_stale(holder):
            raise LockedError(_locked_message(self.path, holder))
        log.warning("Taking over the stale lock %s (%s).", self.path, holder)
        self.path.unlink(missing_ok=True)
        if not self._try_create():
            raise LockedError(_locked_message(self.path, _read_lock(self.path)))

    def release(self) -> None:
        """Remove the lock file if it is still this process's."""
        if _read_lock(self.path) == self.owner:
            self.path.unlink(missing_ok=True)

    def _try_create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, draft = tempfile.mkstemp(dir=self.path.parent, prefix=".drtool-lock-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.owner, handle)
            os.link(draft, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(draft)


def _read_lock(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _is_stale(holder: dict[str, Any]) -> bool:
    """Tell whether the lock's process is gone (only knowable on this host)."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _locked_message(path: Path, holder: dict[str, Any]) -> str:
    who = (
        f"process {holder.get('pid')} on {holder.get('host')}, since "
        f"{holder.get('started')}"
        if holder
        else "another process"
    )
    return (
        f"another drtool release is running on this state ({who}). Wait for it "
        f"to finish. If no such process runs any more, delete {path}."
    )
