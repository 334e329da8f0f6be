"""The one rule for waiting on DataRobot's long jobs.

Image builds, dependency builds, model tests and deployments all wait the same
way: poll every ``release.timeouts.poll_interval`` seconds until the job
reaches a final status or its deadline (``release.timeouts.<phase>``) passes;
report progress through ``logging`` (stderr) when the status changes and at
least every ``PROGRESS_EVERY`` seconds; and on the deadline raise
``WaitTimeout`` quoting the job's last status. The job keeps running on the
server, and the state file knows it, so a rerun resumes the wait instead of
starting the job again.

The few SDK calls that wait inside themselves (deployment creation, model
replacement, settings updates) get the same deadline through ``sdk_wait``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import monotonic, sleep
from typing import TypeVar

from datarobot.errors import (
    AsyncFailureError,
    AsyncProcessUnsuccessfulError,
    AsyncTimeoutError,
)

from drtool.errors import RemoteError, WaitTimeout
from drtool.settings import TimeoutSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds between two progress lines while the status stays the same.
PROGRESS_EVERY = 60.0
MESSAGE_LIMIT = 500


@dataclass(frozen=True)
class Deadline:
    """How long one phase may take, and under which config key that is set."""

    seconds: float
    interval: float
    key: str

    @classmethod
    def of(cls, timeouts: TimeoutSettings, phase: str) -> Deadline:
        """Return the deadline of ``phase``, a field of ``release.timeouts``."""
        return cls(
            seconds=float(getattr(timeouts, phase)),
            interval=max(float(timeouts.poll_interval), 0.0),
            key=f"release.timeouts.{phase}",
        )

    @property
    def whole_seconds(self) -> int:
        """The deadline as the SDK's ``max_wait`` takes it (whole seconds)."""
        return max(1, math.ceil(self.seconds))


def wait_for(
    what: str,
    poll: Callable[[], T],
    status: Callable[[T], str],
    is_final: Callable[[T], bool],
    deadline: Deadline,
) -> T:
    """Poll until ``is_final`` says so and return the last answer.

    ``status`` turns an answer into the text shown in progress lines and in
    the timeout error, e.g. ``processing``.
    """
    started = monotonic()
    progress = _Progress(what, started)
    while True:
        answer = poll()
        if is_final(answer):
            log.info("%s: %s after %s", what, status(answer), _elapsed(started))
            return answer
        now = monotonic()
        if now - started >= deadline.seconds:
            raise _timeout(what, status(answer), deadline)
        progress.report(status(answer), now)
        sleep(min(deadline.interval, deadline.seconds - (now - started)))


@contextmanager
def sdk_wait(what: str, deadline: Deadline) -> Iterator[int]:
    """Wrap an SDK call that waits inside itself; yield its ``max_wait``.

    The SDK's own timeout becomes ``WaitTimeout``, and a job the server ended
    in error becomes ``RemoteError``; both quote the server's last answer.
    """
    log.info("%s: waiting up to %.0f s", what, deadline.seconds)
    try:
        yield deadline.whole_seconds
    except AsyncTimeoutError as exc:
        raise _timeout(what, _short(exc), deadline) from None
    except (AsyncProcessUnsuccessfulError, AsyncFailureError) as exc:
        raise RemoteError(
            f"DataRobot ended the job of {what} in error: {_short(exc)}"
        ) from None


class _Progress:
    """Logs a line when the status changes, else every ``PROGRESS_EVERY`` s."""

    def __init__(self, what: str, started: float) -> None:
        self.what = what
        self.started = started
        self.last_status = ""
        self.last_line = -math.inf

    def report(self, status: str, now: float) -> None:
        if status == self.last_status and now - self.last_line < PROGRESS_EVERY:
            return
        log.info("%s: %s (%s so far)", self.what, status, _elapsed(self.started))
        self.last_status = status
        self.last_line = now


def _timeout(what: str, last_status: str, deadline: Deadline) -> WaitTimeout:
    return WaitTimeout(
        f"{what} had not finished after {deadline.seconds:.0f} s ({deadline.key} "
        f"in config.yaml); its last status: {last_status}. It goes on in "
        f"DataRobot: run `drtool release` again to resume waiting, or raise "
        f"{deadline.key}."
    )


def _elapsed(started: float) -> str:
    seconds = int(monotonic() - started)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _short(exc: BaseException) -> str:
    return str(exc)[:MESSAGE_LIMIT]
