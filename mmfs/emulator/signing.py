"""Pre-signed download URLs in the style of Alibaba Cloud OSS.

``?Expires=<unix>&OSSAccessKeyId=<id>&Signature=<base64 HMAC-SHA1>``, the signature covering the expiry and
the object's path as OSS's does (``GET\\n\\n\\n<expires>\\n/<bucket>/<key>``). HEAD is accepted with the
same signature, since clients read the true size of a video from a HEAD.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from urllib.parse import quote, urlencode

__all__ = ["ACCESS_KEY_ID", "UrlSigner"]

ACCESS_KEY_ID = "LTAI5tEmulatorAccessKey0"
_BUCKET = "minimax-files-emulator"


def _path_segment(filename: str) -> str:
    """The name as one URL path segment; "." and ".." are escaped too, or clients would resolve them away."""
    quoted = quote(filename, safe="")
    return quoted.replace(".", "%2E") if quoted.strip(".") == "" else quoted


class UrlSigner:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def _signature(self, expires: int, file_id: int, filename: str) -> str:
        to_sign = f"GET\n\n\n{expires}\n/{_BUCKET}/{file_id}/{filename}"
        digest = hmac.new(self._secret, to_sign.encode("utf-8", "surrogatepass"), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def sign(self, base_url: str, prefix: str, file_id: int, filename: str, ttl: float) -> str:
        """The full URL for ``file_id``; it expires at ``now + ttl`` rounded down to a whole second.

        Rounding down means the URL is never valid for longer than ``ttl``.
        """
        expires = math.floor(time.time() + ttl)
        query = urlencode(
            {"Expires": expires, "OSSAccessKeyId": ACCESS_KEY_ID,
             "Signature": self._signature(expires, file_id, filename)}
        )
        return f"{base_url}/{prefix}/{file_id}/{_path_segment(filename)}?{query}"

    def check(self, file_id: int, filename: str, params: dict[str, str]) -> tuple[str, str] | None:
        """None when the query is valid now, else OSS's (error code, message) for the refusal."""
        try:
            expires = int(params["Expires"])
            signature = params["Signature"]
        except (KeyError, ValueError):
            return "AccessDenied", "Anonymous access is forbidden for this operation."
        if time.time() > expires:
            return "AccessDenied", "Request has expired."
        expected = self._signature(expires, file_id, filename)
        if params.get("OSSAccessKeyId") != ACCESS_KEY_ID or not hmac.compare_digest(expected, signature):
            return "SignatureDoesNotMatch", (
                "The request signature we calculated does not match the signature you provided."
            )
        return None
