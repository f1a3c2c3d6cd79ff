"""Pre-signed download URLs in the style of Alibaba Cloud OSS.

``?Expires=<unix>&OSSAccessKeyId=<id>&Signature=<base64 HMAC-SHA1>``, the signature covering the expiry and
the object's path as OSS's does (``GET\\n\\n\\n<expires>\\n/<bucket>/<key>``). HEAD is accepted with the
same signature, since clients read the true size of a video from a HEAD.

The mainland form keeps ``%2F`` inside the path (the object key holds a ``/`` that is escaped in the URL): the
signature covers the separator as sent, so a client that rewrites ``%2F`` into ``/`` is refused, as OSS
refuses it. The global form has no query at all; its validity rides in an opaque path segment instead
(``path_token``), so such a URL still stops working after its lifetime without saying when.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from urllib.parse import quote, urlencode

__all__ = ["ACCESS_KEY_ID", "SLASH", "UrlSigner"]

ACCESS_KEY_ID = "LTAI5tEmulatorAccessKey0"
_BUCKET = "minimax-files-emulator"
SLASH = "%2F"  # the separator between id and name in the mainland form


def _path_segment(filename: str) -> str:
    """The name as one URL path segment; "." and ".." are escaped too, or clients would resolve them away."""
    quoted = quote(filename, safe="")
    return quoted.replace(".", "%2E") if quoted.strip(".") == "" else quoted


class UrlSigner:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def _signature(self, expires: int, file_id: int, filename: str, separator: str = "/") -> str:
        to_sign = f"GET\n\n\n{expires}\n/{_BUCKET}/{file_id}{separator}{filename}"
        digest = hmac.new(self._secret, to_sign.encode("utf-8", "surrogatepass"), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def sign(self, base_url: str, prefix: str, file_id: int, filename: str, ttl: float, *,
             separator: str = "/") -> str:
        """The full URL for ``file_id``; it expires at ``now + ttl`` rounded down to a whole second.

        Rounding down means the URL is never valid for longer than ``ttl``.
        """
        expires = math.floor(time.time() + ttl)
        query = urlencode(
            {"Expires": expires, "OSSAccessKeyId": ACCESS_KEY_ID,
             "Signature": self._signature(expires, file_id, filename, separator)}
        )
        return f"{base_url}/{prefix}/{file_id}{separator}{_path_segment(filename)}?{query}"

    def unsigned(self, base_url: str, prefix: str, file_id: int, filename: str, ttl: float) -> str:
        """A URL with no query: ``<base>/<prefix>/<token>/<file_id>/<name>``, refused after ``ttl``."""
        expires = math.floor(time.time() + ttl)
        digest = base64.b64decode(self._signature(expires, file_id, filename))[:12]
        token = (expires.to_bytes(8, "big") + digest).hex()
        return f"{base_url}/{prefix}/{token}/{file_id}/{_path_segment(filename)}"

    def check_token(self, token: str, file_id: int, filename: str) -> tuple[str, str] | None:
        """None when an unsigned URL's token is valid now, else OSS's (error code, message)."""
        try:
            raw = binascii.unhexlify(token)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 20:
            return "AccessDenied", "Access denied."
        expires = int.from_bytes(raw[:8], "big")
        expected = base64.b64decode(self._signature(expires, file_id, filename))[:12]
        if not hmac.compare_digest(expected, raw[8:]):
            return "AccessDenied", "Access denied."
        if time.time() > expires:
            return "AccessDenied", "Request has expired."
        return None

    def check(self, file_id: int, filename: str, params: dict[str, str], separator: str = "/"
              ) -> tuple[str, str] | None:
        """None when the query is valid now, else OSS's (error code, message) for the refusal."""
        try:
            expires = int(params["Expires"])
            signature = params["Signature"]
        except (KeyError, ValueError):
            return "AccessDenied", "Anonymous access is forbidden for this operation."
        if time.time() > expires:
            return "AccessDenied", "Request has expired."
        expected = self._signature(expires, file_id, filename, separator)
        if params.get("OSSAccessKeyId") != ACCESS_KEY_ID or not hmac.compare_digest(expected, signature):
            return "SignatureDoesNotMatch", (
                "The request signature we calculated does not match the signature you provided."
            )
        return None
