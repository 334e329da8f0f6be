"""Where predictions are sent: only the URL and the headers differ by target."""

from __future__ import annotations

from dataclasses import dataclass, field

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"


@dataclass(frozen=True)
class Target:
    """A prediction endpoint: its URL, its headers and a name for messages.

    ``secret_headers`` carry credentials. They are sent, never shown: ``repr``
    and ``describe`` leave them out.
    """

    name: str
    url: str
    secret_headers: dict[str, str] = field(default_factory=dict, repr=False)

    def headers(self) -> dict[str, str]:
        """Return every header of a prediction request."""
        return {"Content-Type": CSV_CONTENT_TYPE, **self.secret_headers}

    def describe(self) -> str:
        return f"{self.name} ({self.url})"


def local_target(server_url: str) -> Target:
    """Return the target of a DRUM server at ``server_url``."""
    base = server_url.rstrip("/")
    if "://" not in base:
        base = f"http://{base}"
    # The trailing slash matters: without it DRUM answers 308 and the client
    # posts the body a second time.
    return Target(name="local DRUM server", url=f"{base}/predictUnstructured/")
