"""The one exception tree of drtool, and the exit code of each branch.

Every message says what happened and what to do next. The CLI prints
``Error: <message>`` on stderr and exits with ``exit_code``; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class DrtoolError(Exception):
    """Base of every error drtool expects and explains."""

    exit_code = 1


class ConfigError(DrtoolError):
    """config.yaml, an option or a credential is wrong or missing."""


class InputError(DrtoolError):
    """A data file given to drtool is malformed (data.txt, a CSV, an image)."""


class PartialFailure(DrtoolError):
    """The command finished, but some rows failed; the output says which."""

    exit_code = 3


class ServerStartError(DrtoolError):
    """A local DRUM server did not become ready."""


class RemoteError(DrtoolError):
    """DataRobot (or a prediction server) answered with an error status."""


class ConnectionFailure(DrtoolError):
    """No answer came back: connection refused, reset or timed out."""


class AuthError(RemoteError):
    """The API token was rejected (401 or 403)."""


class WaitTimeout(DrtoolError):
    """A server-side job did not finish before its deadline; rerun to resume."""

    exit_code = 5


class BuildFailed(DrtoolError):
    """An image or dependency build on DataRobot failed."""

    exit_code = 6


class ModelTestFailed(DrtoolError):
    """DataRobot's custom model test failed; nothing was deployed."""

    exit_code = 4


class LockedError(DrtoolError):
    """Another drtool run holds the state file."""


class Interrupted(DrtoolError):
    """The user pressed Ctrl-C; what was finished is kept."""

    exit_code = 130
