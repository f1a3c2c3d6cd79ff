"""HTTP -> typed records: the platform's JSON endpoints, its signed download URLs, and the retry policy.

``ApiClient`` talks to the API host with the key; ``Downloader`` reads ranges of pre-signed URLs and never
sees the key; ``RetryPolicy`` bounds how long either keeps trying. Errors are the classes of
``mmfs.errors``.
"""

from mmfs.api.client import ApiClient
from mmfs.api.download import Downloader, url_expires_at
from mmfs.api.records import FileRecord, check_base_resp, normalize_file_id, parse_file_list, parse_file_record
from mmfs.api.retry import RetryPolicy

__all__ = [
    "ApiClient",
    "Downloader",
    "FileRecord",
    "RetryPolicy",
    "check_base_resp",
    "normalize_file_id",
    "parse_file_list",
    "parse_file_record",
    "url_expires_at",
]
