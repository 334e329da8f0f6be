"""Where the DataRobot API token and endpoint come from, and the SDK client.

The token is never a command-line argument (it would show in ``ps`` and in
shell history). It is looked for, first found wins:

1. the environment variable ``DATAROBOT_API_TOKEN``;
2. a ``.env`` file beside config.yaml (``KEY=VALUE`` lines);
3. the SDK's own config file: ``$DATAROBOT_CONFIG_FILE``, else
   ``~/.config/datarobot/drconfig.yaml`` (keys ``token`` and ``endpoint``).

The endpoint: ``DATAROBOT_ENDPOINT``, then ``.env``, then ``datarobot.endpoint``
of config.yaml, then drconfig.yaml, else DataRobot's managed cloud.

The token lives in a ``Token`` whose ``repr`` and ``str`` never show it; only
``reveal()`` does, and only the client's Authorization header calls it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from datarobot.client import set_client
from datarobot.rest import RESTClientObject
from urllib3.util.retry import Retry

from drtool.errors import ConfigError
from drtool.settings import Settings

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "DATAROBOT_API_TOKEN"
ENDPOINT_VARIABLE = "DATAROBOT_ENDPOINT"
CONFIG_FILE_VARIABLE = "DATAROBOT_CONFIG_FILE"
SSL_VERIFY_VARIABLE = "DATAROBOT_SSL_VERIFY"
DEFAULT_DRCONFIG = Path("~/.config/datarobot/drconfig.yaml")
DEFAULT_ENDPOINT = "https://app.datarobot.com/api/v2"
DOTENV_NAME = ".env"
API_SUFFIX = "/api/v2"

# Only requests that change nothing are repeated: a create that timed out may
# have happened, so repeating it blindly could make a second object. Busy and
# gateway answers (429, 502, 503, 504) are retried with backoff; a connection
# that could not be opened is retried for every method, since nothing was sent.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRY_ATTEMPTS = 5
RETRY_BACKOFF = 0.5


class Token:
    """An API token that never shows itself in output, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself, for the Authorization header only."""
        return self._value

    def __repr__(self) -> str:
        return "Token(<hidden>)"

    def __str__(self) -> str:
        return "<hidden>"

    def __format__(self, spec: str) -> str:
        return "<hidden>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Token) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        # Pickling would write the secret wherever the pickle goes.
        raise TypeError("a Token cannot be pickled")


@dataclass(frozen=True)
class Credentials:
    """An endpoint, a token, and where each was found (for messages)."""

    endpoint: str
    token: Token
    endpoint_source: str
    token_source: str
    # False, True or a CA bundle's path, as requests takes it.
    ssl_verify: bool | str = True

    @property
    def ui_base(self) -> str:
        return ui_base(self.endpoint)


@dataclass(frozen=True)
class _Source:
    """What one place holds: its kind, a name for messages, and its values."""

    kind: str  # "environment", "dotenv" or "drconfig"
    name: str
    token: str | None = None
    endpoint: str | None = None
    ssl_verify: bool | str | None = None


def find_credentials(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """Return the credentials to use, or None when no token is found anywhere."""
    sources = _sources(settings, os.environ if environ is None else environ)
    token_source = next((s for s in sources if s.token), None)
    if token_source is None or token_source.token is None:
        return None
    endpoint, endpoint_source = _endpoint(settings, sources)
    _warn_on_mismatch(token_source, endpoint, endpoint_source)
    return Credentials(
        endpoint=endpoint.rstrip("/"),
        token=Token(token_source.token),
        endpoint_source=endpoint_source,
        token_source=token_source.name,
        ssl_verify=_ssl_verify(sources),
    )


def require_credentials(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> Credentials:
    """Return the credentials to use; say where to put a token when there is none."""
    found = find_credentials(settings, environ)
    if found is None:
        raise ConfigError(
            f"no DataRobot API token found. Set {TOKEN_VARIABLE} (and "
            f"{ENDPOINT_VARIABLE}) in the environment, or put them in "
            f"{settings.root / DOTENV_NAME}, or in the SDK's "
            f"{DEFAULT_DRCONFIG} (keys token and endpoint). Never pass a token "
            f"on the command line."
        )
    return found


def get_client(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    *,
    credentials: Credentials | None = None,
) -> RESTClientObject:
    """Build the DataRobot SDK client from the credentials and install it.

    Every SDK call made afterwards in this process uses it. No request is
    made here: the SDK's own ``dr.Client`` would ask the server for its
    version first, which a dry run or a test does not want. ``credentials``
    skips looking them up again.
    """
    credentials = credentials or require_credentials(settings, environ)
    client = _SafeRetryClient(
        auth=credentials.token.reveal(),
        endpoint=credentials.endpoint,
        connect_timeout=settings.datarobot.connect_timeout,  # type: ignore[arg-type]
        verify=credentials.ssl_verify,  # type: ignore[arg-type]
        max_retries=safe_retry(),
    )
    set_client(client)
    return client


def safe_retry() -> Retry:
    """Return the retry rule: idempotent methods only, on busy or gateway errors."""
    return Retry(
        total=RETRY_ATTEMPTS,
        connect=RETRY_ATTEMPTS,
        read=0,
        status=RETRY_ATTEMPTS,
        backoff_factor=RETRY_BACKOFF,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=SAFE_METHODS,
        respect_retry_after_header=True,
        # The last answer reaches the SDK, which raises its usual ServerError
        # or ClientError instead of a bare requests.RetryError.
        raise_on_status=False,
    )


def ui_base(endpoint: str) -> str:
    """Return the DataRobot web app's address for an API endpoint."""
    base = endpoint.rstrip("/")
    if base.endswith(API_SUFFIX):
        base = base[: -len(API_SUFFIX)]
    return base


def read_dotenv(path: Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines; ``#`` comments, ``export`` and quotes allowed."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}.") from None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parsed = _dotenv_line(stripped)
        if parsed is None:
            # The line itself may hold a secret, so only its number is shown.
            raise ConfigError(f"{path} line {number}: expected KEY=VALUE.")
        values[parsed[0]] = parsed[1]
    return values


def _dotenv_line(line: str) -> tuple[str, str] | None:
    """Return ``(key, value)`` of a non-blank line, or None if it is malformed."""
    if line.startswith("export "):
        line = line[len("export ") :].lstrip()
    key, equals, value = line.partition("=")
    key = key.strip()
    if not equals or not key.replace("_", "").isalnum():
        return None
    return key, _unquote(value.strip())


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    # An unquoted value ends at a comment that follows a space.
    return value.split(" #", 1)[0].rstrip()


class _SafeRetryClient(RESTClientObject):
    """The SDK client, minus its blind resending of writes.

    The SDK re-sends any request whose connection was reset, POSTs included,
    at least five times whatever ``max_retries`` says; a reset can come after
    the server acted, so a create could happen twice. Writes here go out once;
    reads keep the SDK's resending.
    """

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> Any:
        if method.upper() in SAFE_METHODS:
            return super().request(method, url, *args, **kwargs)
        # The undecorated method: the SDK wraps it with functools.wraps.
        send_once = RESTClientObject.request.__wrapped__  # type: ignore[attr-defined]
        return send_once(self, method, url, *args, **kwargs)


def _sources(settings: Settings, environ: Mapping[str, str]) -> list[_Source]:
    """Return the environment, .env and drconfig.yaml, in precedence order."""
    sources = [
        _Source(
            kind="environment",
            name=f"the environment variable {TOKEN_VARIABLE}",
            token=environ.get(TOKEN_VARIABLE) or None,
            endpoint=environ.get(ENDPOINT_VARIABLE) or None,
            ssl_verify=_as_bool(environ.get(SSL_VERIFY_VARIABLE)),
        )
    ]
    dotenv = settings.root / DOTENV_NAME
    if dotenv.is_file():
        values = read_dotenv(dotenv)
        sources.append(
            _Source(
                kind="dotenv",
                name=str(dotenv),
                token=values.get(TOKEN_VARIABLE) or None,
                endpoint=values.get(ENDPOINT_VARIABLE) or None,
            )
        )
    drconfig = _drconfig_path(environ)
    if drconfig is not None:
        sources.append(_read_drconfig(drconfig))
    return sources


def _endpoint(settings: Settings, sources: list[_Source]) -> tuple[str, str]:
    def of_kind(kind: str) -> list[tuple[str | None, str]]:
        return [(s.endpoint, s.name) for s in sources if s.kind == kind]

    ordered = [
        *((value, ENDPOINT_VARIABLE) for value, _ in of_kind("environment")),
        *of_kind("dotenv"),
        (settings.datarobot.endpoint or None, "datarobot.endpoint of config.yaml"),
        *of_kind("drconfig"),
    ]
    for value, where in ordered:
        if value:
            return _checked_endpoint(value, where), where
    return DEFAULT_ENDPOINT, "the default"


def _checked_endpoint(endpoint: str, where: str) -> str:
    if not endpoint.startswith(("https://", "http://")):
        raise ConfigError(
            f"the DataRobot endpoint {endpoint!r} (from {where}) must be a URL "
            f"such as {DEFAULT_ENDPOINT}."
        )
    if not endpoint.rstrip("/").endswith(API_SUFFIX):
        log.warning(
            "The DataRobot endpoint %s (from %s) does not end in %s, as "
            "DataRobot's API addresses do.",
            endpoint,
            where,
            API_SUFFIX,
        )
    return endpoint


def _warn_on_mismatch(token_source: _Source, endpoint: str, where: str) -> None:
    # A token sent to a server it was not made for reaches the wrong hands.
    paired = token_source.endpoint
    if paired and paired.rstrip("/") != endpoint.rstrip("/"):
        log.warning(
            "The token from %s belongs with %s, but the endpoint in use is %s "
            "(from %s).",
            token_source.name,
            paired,
            endpoint,
            where,
        )


def _drconfig_path(environ: Mapping[str, str]) -> Path | None:
    chosen = environ.get(CONFIG_FILE_VARIABLE)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{CONFIG_FILE_VARIABLE} names {path}, which does not exist."
            )
        return path
    default = DEFAULT_DRCONFIG.expanduser()
    return default if default.is_file() else None


def _read_drconfig(path: Path) -> _Source:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}.") from None
    except yaml.YAMLError:
        # The parser's message quotes the offending line, which may be the token.
        raise ConfigError(f"{path} is not valid YAML.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping with token and endpoint.")
    return _Source(
        kind="drconfig",
        name=str(path),
        token=str(data["token"]) if data.get("token") else None,
        endpoint=str(data["endpoint"]) if data.get("endpoint") else None,
        ssl_verify=data.get("ssl_verify"),
    )


def _ssl_verify(sources: list[_Source]) -> bool | str:
    """Return TLS verification: DATAROBOT_SSL_VERIFY, drconfig's, else on."""
    return next((s.ssl_verify for s in sources if s.ssl_verify is not None), True)


def _as_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() not in {"0", "false", "no", "off"}
