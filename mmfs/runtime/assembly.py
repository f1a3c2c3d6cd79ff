"""Every layer of a mount, wired from a ``MountConfig``: API client -> namespace + block cache -> filesystem
core, with the fleet's shared tier and the status counters where asked for. The one place that knows every
layer; running it under FUSE is ``mmfs.runtime.mount``'s job."""

from __future__ import annotations

import errno
import functools
import os
from typing import TYPE_CHECKING

from mmfs.api.client import ApiClient
from mmfs.api.download import Downloader
from mmfs.api.retry import RetryPolicy
from mmfs.blocks.pinned import PinningStore
from mmfs.blocks.reader import BlockReader
from mmfs.blocks.source import RemoteSource
from mmfs.blocks.sparse import SparseStore
from mmfs.core.fs import FileSystem
from mmfs.private_dir import make_private_dir
from mmfs.runtime.mount_point import MountError
from mmfs.settings.config import UPLOAD_PURPOSES, MountConfig
from mmfs.stats import CountingSource, CountingStore, ObservedClient, Stats
from mmfs.tree.known import KnownFiles
from mmfs.tree.namespace import Namespace

if TYPE_CHECKING:
    from mmfs.fleet import Fleet

__all__ = ["assemble", "build_filesystem", "make_client", "open_account", "prepare_folders"]


def prepare_folders(config: MountConfig) -> None:
    """Create the cache and state folders, owner-only; refuse, naming the option, one that cannot be written
    (a read-only filesystem, a file in the way, no permission)."""
    for folder, option in ((config.cache_dir, "--cache-dir"), (config.state_dir, "--state-dir")):
        try:
            make_private_dir(folder)
            if folder is config.cache_dir:
                make_private_dir(folder / config.account_tag())
            if not os.access(folder, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        except OSError as exc:
            raise MountError(f"cannot use {folder} for {option}: {exc.strerror} "
                             f"(choose a writable folder with {option})") from None


def build_filesystem(config: MountConfig, client: ApiClient | None = None) -> FileSystem:
    """Every layer, wired: API client -> namespace + block cache -> filesystem core."""
    return assemble(config, client)[0]


def make_client(config: MountConfig) -> ApiClient:
    """The API client a mount talks through: the key, the host, its CA and the read deadline of ``config``."""
    return ApiClient(config.base_url, config.api_key, op_params=config.op_params,
                     retry=RetryPolicy(deadline=config.read_deadline), ca_bundle=config.ca_bundle)


def open_account(config: MountConfig, client: ApiClient) -> tuple[FileSystem, PinningStore, Stats]:
    """``assemble`` after the folders are made and the key is checked with one API call: what a mount and
    the WebDAV door do before serving. ``AuthError`` for a refused key, ``MountError`` for a folder."""
    prepare_folders(config)
    client.check_key()
    return assemble(config, client)


def assemble(config: MountConfig, client: ApiClient | None = None) -> tuple[FileSystem, PinningStore, Stats]:
    """The filesystem, its two-tier block store (for pins and cache info) and the counters status reads."""
    retry = RetryPolicy(deadline=config.read_deadline)
    client = client or make_client(config)
    ca_bundle = str(config.ca_bundle) if config.ca_bundle else None
    downloader = Downloader(retry=retry, pool_size=config.prefetch_workers + 8,
                            content_auth=client.content_auth(), ca_bundle=ca_bundle)
    prepare_folders(config)
    stats = Stats()
    store = PinningStore(SparseStore(config.blocks_dir, config.cache_size), config.pinned_dir)
    if config.cache_max_age:
        store.expire_every(config.cache_max_age)
    fleet = _join_fleet(config, client)
    source = RemoteSource(client, downloader)
    _limit_bandwidth(config, client, source)
    if fleet is not None:
        source = fleet.wrap_source(source, config.block_size)  # type: ignore[assignment]  # Redis first
    window = max(1, config.prefetch_memory // config.block_size)
    reader = BlockReader(
        CountingStore(store, stats),
        CountingSource(source, stats),
        block_size=config.block_size,
        # Every block fetched ahead must still be in memory when the reader reaches it, or it is read back
        # from disk: the whole window, plus the block being read and the one before it.
        memory_blocks=window + 2,
        prefetch_workers=config.prefetch_workers,
        prefetch_memory=config.prefetch_memory,
        deadline=config.read_deadline,
    )
    upload_purposes = frozenset() if config.read_only else UPLOAD_PURPOSES & frozenset(config.purposes)
    known = KnownFiles(config.known_files_path)
    namespace = Namespace(
        client,
        known,
        purposes=config.purposes,
        upload_purposes=upload_purposes,
        dir_cache_time=config.dir_cache_time,
        lister=fleet.lister(client.list_files) if fleet is not None else None,
    )
    if fleet is not None:
        namespace = fleet.wrap_namespace(namespace, known)  # type: ignore[assignment]  # tells the fleet
    fs = FileSystem(
        namespace,
        reader,
        source,
        uid=config.uid,
        gid=config.gid,
        # The same calls, counted and logged; a delete's size comes from the listing it was found in.
        client=ObservedClient(client, stats, lambda fid: namespace.record_by_id(fid).bytes),
        read_only=config.read_only,
        upload_purposes=upload_purposes,
        spool_dir=config.spool_dir,
        failed_dir=config.failed_uploads_dir,
        max_prefetch_blocks=window,
        min_free_space=config.min_free_space,
        free_cache=functools.partial(reader.free_disk, store.free_bytes),  # evicted files closed, not held
        follow_pin=store.follow,
    )
    if fleet is not None and fleet.blocks is not None:
        fleet.blocks.known_size = fs.sizes.known_by_id  # where a shared block ends, without a request
    fs.list_by_id = config.list_by_id
    fs.on_read = stats.read_served
    fs.on_gone_elsewhere = store.gone_elsewhere
    return fs, store, stats


def _limit_bandwidth(config: MountConfig, client: ApiClient, source: RemoteSource) -> None:
    """--bwlimit: one budget for all uploads, one for all downloads."""
    from mmfs.api.bwlimit import RateLimit

    if config.upload_limit:
        client.upload_limit = RateLimit(config.upload_limit)
    if config.download_limit:
        source.download_limit = RateLimit(config.download_limit)


def _join_fleet(config: MountConfig, client: ApiClient) -> Fleet | None:
    """The shared tier, if asked for: a refused password or TLS fails here; a Redis that is down does not."""
    if not config.shared:
        return None
    try:
        from mmfs.fleet import Fleet
    except ImportError:
        raise MountError("--shared needs the redis package: pip install 'mmfs[fleet]'") from None
    fleet = Fleet(config.shared, config.account_tag(), config.api_key, dir_cache_time=config.dir_cache_time).start()
    if fleet.budget is not None:
        client.gate = fleet.budget
    return fleet

