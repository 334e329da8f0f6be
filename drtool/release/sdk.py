"""Common ground of the release's SDK calls: errors, lookups and UI links.

Every SDK call of a release runs inside ``Remote.errors(doing)``, which turns
the SDK's and requests' exceptions into drtool's, naming the step and the
endpoint. A rejected token says which endpoint rejected which token source,
and nothing of the token or of the server's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from datarobot.errors import ClientError, ServerError
from datarobot.rest import RESTClientObject

from drtool.credentials import Credentials
from drtool.errors import AuthError, ConnectionFailure, DrtoolError, RemoteError

T = TypeVar("T")

MESSAGE_LIMIT = 500


@dataclass(frozen=True)
class Remote:
    """The DataRobot a release talks to: its client and how to name it."""

    client: RESTClientObject
    credentials: Credentials

    @property
    def endpoint(self) -> str:
        return self.credentials.endpoint

    @property
    def ui(self) -> str:
        return self.credentials.ui_base

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn the SDK's errors raised inside into drtool's."""
        try:
            yield
        except (ClientError, ServerError, requests.RequestException) as exc:
            raise translate(exc, doing, self.credentials) from None

    def fetch(self, doing: str, call: Callable[[], T]) -> T | None:
        """Return ``call()``, or None when the server answers 404."""
        try:
            with self.errors(doing):
                return call()
        except _NotFound:
            return None


class _NotFound(RemoteError):
    """A 404: the object does not exist (or no longer does)."""


def translate(exc: BaseException, doing: str, credentials: Credentials) -> DrtoolError:
    """Return the drtool error for an SDK or network error during ``doing``."""
    endpoint = credentials.endpoint
    if isinstance(exc, ClientError):
        return _client_error(exc, doing, credentials)
    if isinstance(exc, ServerError):
        return RemoteError(
            f"DataRobot at {endpoint} failed while {doing}: {_short(exc)}. Try "
            f"again later; a rerun resumes where this one stopped."
        )
    if isinstance(exc, requests.exceptions.RetryError):
        return RemoteError(
            f"DataRobot at {endpoint} kept answering busy while {doing}. Try "
            f"again later; a rerun resumes."
        )
    return ConnectionFailure(
        f"no answer from {endpoint} while {doing} ({type(exc).__name__}). "
        f"Check the endpoint and the network; a rerun resumes."
    )


def exact(items: Iterable[T], attribute: str, wanted: str) -> list[T]:
    """Return the items whose ``attribute`` equals ``wanted`` exactly.

    DataRobot's searches match substrings of names and descriptions.
    """
    return [item for item in items if getattr(item, attribute, None) == wanted]


def ui_link(ui: str, kind: str, ids: dict[str, str]) -> str:
    """Return the DataRobot web page of an object, or '' when its id is unknown.

    Page addresses: custom environments and models as DataRobot's own DRUM
    and datarobotx print them; registered models as the NextGen registry
    shows them; deployments as the SDK's ``Deployment.get_uri``.
    """
    pages = {
        "environment": "model-registry/custom-environments/{environment}",
        "model": "model-registry/custom-models/{model}",
        "registered_model": "registry/registered-models/{registered_model}/info",
        "deployment": "deployments/{deployment}/overview",
    }
    try:
        return f"{ui}/{pages[kind].format(**ids)}"
    except KeyError:
        return ""


def _client_error(
    exc: ClientError, doing: str, credentials: Credentials
) -> DrtoolError:
    status = exc.status_code
    if status in (401, 403):
        # The SDK's own message and the body may echo request details: not shown.
        return AuthError(
            f"{credentials.endpoint} rejected the API token from "
            f"{credentials.token_source} (HTTP {status}) while {doing}."
        )
    if status == 404:
        return _NotFound(
            f"DataRobot found nothing while {doing} (HTTP 404): it was deleted "
            f"meanwhile? A rerun recreates what is gone."
        )
    body: Any = exc.json if isinstance(exc.json, dict) else {}
    message = body.get("message") or _short(exc)
    details = body.get("errors")
    extra = f" Details: {_short(details)}." if details else ""
    if status == 429:
        message = "too many requests; wait a while and run again"
    return RemoteError(f"DataRobot refused {doing} (HTTP {status}): {message}.{extra}")


def _short(value: object) -> str:
    return str(value)[:MESSAGE_LIMIT]
