"""Every implementation of a port (``mmfs.blocks.ports``) defines every method of it, with the port's
signature, and passes nothing on by ``__getattr__``: a wrapper that forgets a method fails here, not in a
user's read."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from range_hosts import HonoursRange

from mmfs.api.bwlimit import RateLimit, ThrottledReader
from mmfs.api.client import ApiClient
from mmfs.api.download import Downloader
from mmfs.blocks.pinned import PinningStore
from mmfs.blocks.ports import BlockStore, FileNamespace, PlatformSource, RangeSource, UploadClient
from mmfs.blocks.source import RemoteSource
from mmfs.blocks.store import DiskBlockStore, MemoryBlockStore
from mmfs.fleet.blocks import SharedBlockSource
from mmfs.fleet.events import SharedNamespace
from mmfs.stats import CountingSource, CountingStore, ObservedClient, Stats
from mmfs.tree.known import KnownFiles
from mmfs.tree.namespace import Namespace


def port_methods(port: type) -> dict[str, inspect.Signature]:
    """The methods a port lists, its own and its parent ports'."""
    methods: dict[str, inspect.Signature] = {}
    for klass in reversed(port.__mro__):
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        for name, value in vars(klass).items():
            if callable(value) and not name.startswith("_"):
                methods[name] = inspect.signature(value)
    return methods


def port_fields(port: type) -> set[str]:
    fields: set[str] = set()
    for klass in port.__mro__:
        if getattr(klass, "_is_protocol", False) and klass is not Protocol:
            fields |= set(vars(klass).get("__annotations__", {}))
    return fields


def _shape(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    # Names, kinds and defaults: what a call site depends on. Annotations are checked by the type checker.
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def mismatches(implementation: object, port: type) -> list[str]:
    """What ``implementation`` (an object, or a class) lacks or gets wrong of ``port``; empty when it
    implements it."""
    klass = implementation if isinstance(implementation, type) else type(implementation)
    wrong = []
    if any("__getattr__" in vars(k) for k in klass.__mro__ if k is not object):
        wrong.append("passes calls on by __getattr__")
    for name, wanted in port_methods(port).items():
        found = getattr(implementation, name, None)
        if found is None or not callable(found):
            wrong.append(f"no method {name}")
            continue
        want = _shape(wanted)
        if not isinstance(implementation, type) or isinstance(inspect.getattr_static(klass, name, None),
                                                                staticmethod):
            want = want[1:]  # bound (or static): no self
        got = inspect.signature(found)
        if _shape(got) != want:
            wrong.append(f"{name}{got} is not {name}{wanted}")
    for field in port_fields(port):
        if not hasattr(implementation, field):
            wrong.append(f"no attribute {field}")
    return wrong


class _Plain(HonoursRange):
    """A source with every method of the port: the control."""

    def fetch(self, file_id: str, start: int, end: int) -> bytes:
        return b""


def test_a_wrapper_that_forgets_a_method_or_forwards_is_caught() -> None:
    class Forgetful(_Plain):
        share_block = None  # type: ignore[assignment]

    class Forwarding:
        def __init__(self, inner: object) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

    class Misnamed(_Plain):
        def true_size(self, key: str) -> int | None:  # type: ignore[override]
            return None

    assert mismatches(_Plain, RangeSource) == [] and mismatches(_Plain(), RangeSource) == []
    assert mismatches(Forgetful(), RangeSource) == ["no method share_block"]
    assert "passes calls on by __getattr__" in mismatches(Forwarding(_Plain()), RangeSource)
    assert [m.split("(")[0] for m in mismatches(Misnamed, RangeSource)] == ["true_size"]
    assert mismatches(_Plain(), PlatformSource) == ["no method size", "no method forget"]


@pytest.fixture(scope="module")
def wired(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[object, type]]]:
    """Every implementation of every port, wired around real inner objects as a mount wires them."""
    tmp = tmp_path_factory.mktemp("ports")
    client = ApiClient("http://127.0.0.1:9", "key")
    source = RemoteSource(client, Downloader())
    stats = Stats()
    disk = DiskBlockStore(tmp / "blocks", 1 << 30)
    pinning = PinningStore(disk, tmp / "pinned")
    shared = SharedBlockSource(source, None, "p:", None)  # type: ignore[arg-type]  # never asked here
    namespace = Namespace(client, KnownFiles(None), purposes=["retrieval"])
    told = SharedNamespace(namespace, KnownFiles(None), None, "p:", None, "me", None)  # type: ignore[arg-type]
    yield {
        "RemoteSource": (source, PlatformSource),
        "SharedBlockSource": (shared, PlatformSource),
        "CountingSource": (CountingSource(shared, stats), RangeSource),
        "DiskBlockStore": (disk, BlockStore),
        "MemoryBlockStore": (MemoryBlockStore(), BlockStore),
        "PinningStore": (pinning, BlockStore),
        "CountingStore": (CountingStore(pinning, stats), BlockStore),
        "Namespace": (namespace, FileNamespace),
        "SharedNamespace": (told, FileNamespace),
        "ApiClient": (client, UploadClient),
        "ObservedClient": (ObservedClient(client, stats), UploadClient),
    }
    shared.close()
    namespace.close()
    pinning.close()
    client.close()


IMPLEMENTATIONS = ["RemoteSource", "SharedBlockSource", "CountingSource", "DiskBlockStore", "MemoryBlockStore",
                   "PinningStore", "CountingStore", "Namespace", "SharedNamespace", "ApiClient", "ObservedClient"]


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_each_implementation_defines_every_method_of_its_port(wired: dict[str, tuple[object, type]],
                                                              name: str) -> None:
    implementation, port = wired[name]
    assert isinstance(implementation, port)
    assert mismatches(implementation, port) == []


def test_a_fleet_namespace_hands_ids_found_gone_to_whoever_the_core_told_it(
        wired: dict[str, tuple[object, type]]) -> None:
    namespace, _ = wired["Namespace"]
    told, _ = wired["SharedNamespace"]
    heard: list[str] = []
    told.on_gone = heard.append  # type: ignore[attr-defined]  # the inner namespace is the one that finds them
    namespace.on_gone("7")  # type: ignore[attr-defined]
    assert heard == ["7"]


def test_a_throttled_upload_body_offers_what_the_multipart_encoder_uses(tmp_path: Path) -> None:
    body = tmp_path / "body"
    body.write_bytes(b"x" * 5000)
    with open(body, "rb", buffering=0) as raw:
        reader = ThrottledReader(raw, RateLimit(1 << 30))
        assert "__getattr__" not in vars(ThrottledReader)
        assert reader.fileno() == raw.fileno()
        buffer = memoryview(bytearray(4096))
        assert reader.readinto(buffer) == 4096
        assert reader.seek(0) == 0
        assert reader.read(10) == b"x" * 10
