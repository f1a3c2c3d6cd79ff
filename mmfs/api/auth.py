"""Where the API key may go: onto requests a scope covers, and off every other request.

The client's scope is the API origin (scheme, host, port); the downloader's is the one ``retrieve_content``
endpoint (origin and path). Either way the auth object is asked per request, so a redirect or a download
URL on another host never carries the key, and ``repr`` never shows it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase

__all__ = ["ContentAuth", "OriginAuth", "url_origin"]


def url_origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), port)


def _endpoint_of(url: str) -> tuple[str, str, int | None, str]:
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return ("", "", None, "")
    return (parts.scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/"))


class _ScopedBearer(AuthBase):
    """``Authorization: Bearer <key>`` on a request whose URL ``covers`` accepts; stripped from any other."""

    def __init__(self, key: str) -> None:
        self._key = key

    def covers(self, url: str) -> bool:
        raise NotImplementedError

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.covers(request.url or ""):
            request.headers["Authorization"] = f"Bearer {self._key}"
        else:
            request.headers.pop("Authorization", None)
        return request

    def __repr__(self) -> str:
        return f"<{type(self).__name__} (key hidden)>"


class OriginAuth(_ScopedBearer):
    """The key, for every URL of the API origin."""

    def __init__(self, key: str, origin: tuple[str, str, int | None]) -> None:
        super().__init__(key)
        self._origin = origin

    def covers(self, url: str) -> bool:
        return url_origin(url) == self._origin


class ContentAuth(_ScopedBearer):
    """The key, for exactly one endpoint URL (scheme, host, port and path; any query); stripped elsewhere."""

    def __init__(self, key: str, endpoint: str) -> None:
        super().__init__(key)
        self._endpoint = _endpoint_of(endpoint)

    def covers(self, url: str) -> bool:
        return _endpoint_of(url) == self._endpoint
