"""The emulator's configuration: where it stores files, where it listens, and its switches.

A *switch* is a behaviour that can change while the server runs (``Emulator.configure``, the admin
endpoint ``POST /_emulator/config``, or a CLI flag at start). Each uncertain point of the platform's API
has one, so a client can be tested against every form the platform may take, and the fault switches inject
failures on a schedule. ``SWITCH_HELP`` documents each; ``coerce_switches`` turns loosely typed values
(JSON, command-line strings) into the declared types and refuses unknown names.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmfs.purposes import LIST_UNCERTAIN_PURPOSES, PURPOSES, ZERO_BYTES_PURPOSES

__all__ = [
    "DEMO_API_KEY",
    "FILE_OBJECT_FIELDS",
    "SWITCH_HELP",
    "SWITCH_NAMES",
    "EmulatorConfig",
    "coerce_switches",
    "resolve_api_key",
]

# Shaped like a real key so clients that sanity-check the prefix accept it; obviously not a secret.
DEMO_API_KEY = "sk-api-demo-0000000000000000"

# 9 h: the lifetime live download URLs were seen to have (the docs also say 1 h; set url_ttl to test that).
DEFAULT_URL_TTL = 32400.0


@dataclass
class EmulatorConfig:
    """Everything the emulator needs; every field after ``demo`` is a switch."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    api_key: str | None = None
    demo: bool = False
    # Serve https with a self-signed certificate made at start (``Emulator.ca_path`` is what to trust).
    tls: bool = False
    # --- platform forms (the spec's uncertain points) ---
    file_id_type: str = "number"
    zero_bytes_video: bool = True
    list_generated: bool = True
    lenient_purposes: bool = False
    require_purpose: bool = False
    check_uploads: bool = True
    upload_error_http400: bool = False
    url_ttl: float = DEFAULT_URL_TTL
    ignore_range: bool = False
    redirect_downloads: bool = False
    whatwg_filenames: bool = False
    drop_fields: str = ""
    null_fields: str = ""
    bad_key_status: int = 1004
    hostile_names: bool = False
    upload_status: int = 0
    # --- forms seen by the platform's own clients and gateways ---
    url_form: str = "signed"
    path_prefix: str = ""
    gateway_model: bool = False
    content_json: bool = True
    content_redirect: bool = False
    content_range: bool = False
    unpurposed_list: str = "all"
    fail_status: int = 0
    fail_status_every: int = 0
    # --- faults ---
    latency: float = 0.0
    conn_rate: float = 0.0
    fail_download_every: int = 0
    fail_api_every: int = 0
    http429_every: int = 0
    http502_every: int = 0
    retry_after: int = 1
    drop_every: int = 0
    fail_uploads: int = 0
    upload_fail_mode: str = "error"
    short_uploads: int = 0
    fail_deletes: int = 0
    stall: bool = False
    trickle_bytes: int = 0
    trickle_hold: float = 0.0
    listed_size: str = "true"
    unknown_id: str = "2013"
    backup_download_url: str = ""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535 (0: any free port); got {self.port}")
        values = {name: getattr(self, name) for name in SWITCH_NAMES}
        for name, value in coerce_switches(values).items():
            setattr(self, name, value)

    def switches(self) -> dict[str, Any]:
        """The current switch values, by name."""
        return {name: getattr(self, name) for name in SWITCH_NAMES}


def _names(purposes: frozenset[str]) -> str:
    """Some purposes in the table's order, as prose: "a, b and c"."""
    names = [p for p in PURPOSES if p in purposes]
    return " and ".join(filter(None, (", ".join(names[:-1]), names[-1])))


SWITCH_HELP: dict[str, str] = {
    "file_id_type": "file_id as a JSON 'number' (live answers) or 'string' (other endpoints, the docs)",
    "zero_bytes_video": f"report bytes=0 for purpose {_names(ZERO_BYTES_PURPOSES)}, as the platform does",
    "list_generated": f"list accepts the purposes the docs leave uncertain: {_names(LIST_UNCERTAIN_PURPOSES)}",
    "lenient_purposes": "accept every known purpose on every endpoint (strict per-endpoint enums otherwise)",
    "require_purpose": "refuse list and delete without a purpose (the platform's own client omits it)",
    "check_uploads": "check format (extension) and size at upload",
    "upload_error_http400": "answer a refused upload with HTTP 400 instead of HTTP 200 + status 2013",
    "url_ttl": "seconds a download_url stays valid",
    "ignore_range": "downloads ignore Range and always answer 200 with the whole body",
    "redirect_downloads": "download_url points at a CDN path that answers 302 to the signed URL",
    "whatwg_filenames": "decode %22, %0D and %0A in an upload's filename, the escapes browsers and urllib3 "
    "apply (off: kept literally, as common server-side multipart parsers do)",
    "drop_fields": "comma-separated FileObject fields left out of every answer (fields may be missing)",
    "null_fields": "comma-separated FileObject fields answered as null",
    "bad_key_status": "status code for a missing or wrong key (1004; 2049 is the other documented one)",
    "hostile_names": "list answers rename each file after its rank by id: a lone surrogate, a raw invalid "
    "UTF-8 byte, an RTL override, NUL, '..', '/', empty, 300 bytes, duplicates (see emulator/hostile.py)",
    "upload_status": "answer every upload with HTTP 200 + this status, storing nothing (0 = off; "
    "e.g. 1008 balance, 1026 sensitive, 2056 usage limit)",
    "url_form": "download_url form: 'signed' (OSS query: Expires, OSSAccessKeyId, Signature), 'unsigned' "
    "(the global CDN form: no query at all, still refused with 403 once url_ttl has passed) or 'oss_slash' "
    "(the mainland form: signed, with %2F inside the path)",
    "path_prefix": "the API answers only under this path, as gateways proxy it (e.g. /minimaxi; '' = at the root)",
    "gateway_model": "every API call must carry model=minimax-files-<op> (a gateway's form), else status 2013",
    "content_json": "retrieve_content answers Content-Type application/json over the binary body, as documented "
    "(off: application/octet-stream)",
    "content_redirect": "retrieve_content answers 302 to the file's download_url",
    "content_range": "retrieve_content honours Range (off: always 200 with the whole body)",
    "unpurposed_list": "what a list without purpose answers: 'all' files, the 'listable' purposes' files, "
    "or 'empty'",
    "fail_status": "status code answered (HTTP 200) by the calls fail_status_every picks, e.g. 2045, 1028, 2061",
    "fail_status_every": "every Nth API call answers HTTP 200 + fail_status (0 = never)",
    "latency": "seconds to sleep before each answer",
    "conn_rate": "MB/s cap per connection on download bodies (0 = none)",
    "fail_download_every": "every Nth download answers HTTP 500 (0 = never)",
    "fail_api_every": "every Nth API call answers HTTP 200 + status 1002, rate limit (0 = never)",
    "http429_every": "every Nth API call answers HTTP 429 with Retry-After (0 = never)",
    "http502_every": "every Nth API call answers HTTP 502 with an HTML body, as a gateway does (0 = never)",
    "retry_after": "seconds sent in Retry-After with HTTP 429",
    "drop_every": "every Nth download sends about half its body, then closes the connection (0 = never)",
    "fail_uploads": "the next N uploads fail (see upload_fail_mode); the count is spent as they do",
    "upload_fail_mode": "'error' (HTTP 500, nothing stored) or 'ambiguous' (stored, then no answer)",
    "short_uploads": "the next N uploads land short: only the first half of the file is stored and answered "
    "(bytes = the half), as a lenient server keeps a body cut on the way; the count is spent as they do",
    "fail_deletes": "the next N deletes answer HTTP 500 and delete nothing; the count is spent as they do",
    "stall": "every request (API and download, not /_emulator/) is held unanswered while this is on, as a "
    "stopped server holds it; turning it off answers them",
    "trickle_bytes": "every download sends only this many bytes of its body (paced by conn_rate), then holds "
    "the connection silent (see trickle_hold) and closes it (0 = off)",
    "trickle_hold": "seconds a trickled download holds its connection silent before closing it (0 = until "
    "trickle_bytes changes)",
    "listed_size": "'true', or 'large' (twice the real size) / 'small' (half) in list and retrieve answers",
    "unknown_id": "how retrieve, retrieve_content and delete answer an unknown file id: '2013' (\"invalid params, "
    "file not found\"), '1000' (\"unknown error, file not found\") or '404' (HTTP 404, a plain-text body)",
    "backup_download_url": "retrieve answers carry a backup_download_url: '' (none), 'extra' (beside a working "
    "download_url) or 'primary_broken' (the download_url answers 404, only the backup works)",
}

FILE_OBJECT_FIELDS = ("file_id", "bytes", "created_at", "filename", "purpose", "download_url")
_SERVER_FIELDS = ("data_dir", "port", "host", "api_key", "demo", "tls")
SWITCH_NAMES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(EmulatorConfig) if f.name not in _SERVER_FIELDS
)
_SWITCH_TYPES: dict[str, type] = {
    f.name: {"str": str, "bool": bool, "int": int, "float": float}[str(f.type)]
    for f in dataclasses.fields(EmulatorConfig)
    if f.name in SWITCH_NAMES
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "file_id_type": ("number", "string"),
    "upload_fail_mode": ("error", "ambiguous"),
    "url_form": ("signed", "unsigned", "oss_slash"),
    "unpurposed_list": ("all", "listable", "empty"),
    "listed_size": ("true", "large", "small"),
    "unknown_id": ("2013", "1000", "404"),
    "backup_download_url": ("", "extra", "primary_broken"),
}


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"switch {name}: not a boolean: {value!r}")


def coerce_switches(values: dict[str, Any]) -> dict[str, Any]:
    """Return ``values`` converted to each switch's type; raise ValueError on an unknown name or bad value."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = _SWITCH_TYPES.get(name)
        if kind is None:
            raise ValueError(f"unknown switch: {name}")
        try:
            if kind is bool:
                converted: Any = _to_bool(name, value)
            elif kind is int:
                converted = int(value)
            elif kind is float:
                converted = float(value)
            else:
                converted = str(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"switch {name}: bad value {value!r}") from exc
        if kind in (int, float) and converted < 0:
            raise ValueError(f"switch {name}: must not be negative")
        if name in _CHOICES and converted not in _CHOICES[name]:
            raise ValueError(f"switch {name}: one of {', '.join(_CHOICES[name])}")
        if name in ("drop_fields", "null_fields"):
            names = [n.strip() for n in converted.split(",") if n.strip()]
            unknown = set(names) - set(FILE_OBJECT_FIELDS)
            if unknown:
                raise ValueError(f"switch {name}: not FileObject fields: {', '.join(sorted(unknown))}")
            converted = ",".join(names)
        if name == "path_prefix" and converted:
            converted = "/" + converted.strip("/")
        out[name] = converted
    return out


def resolve_api_key(configured: str | None) -> str:
    """The key the emulator accepts: the configured one, else MINIMAX_API_KEY, else the demo key."""
    return configured or os.environ.get("MINIMAX_API_KEY") or DEMO_API_KEY
