"""``--metrics-addr HOST:PORT``: the mount's counters served over HTTP in Prometheus' text format, read
from the same status the control channel answers (``mmfs status --prometheus`` prints the same metrics).

Loopback unless a host is given: the metrics name files' counts and the mount point, nobody else's business.
The server is ``prometheus_client``'s, in a thread of its own; a scrape costs one status snapshot.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator
from typing import Any

from mmfs.errors import MmfsError

__all__ = ["MetricsServer", "parse_metrics_addr", "serve_metrics"]

log = logging.getLogger("mmfs.metrics")

DEFAULT_HOST = "127.0.0.1"


def parse_metrics_addr(text: str) -> tuple[str, int]:
    """``9100``, ``:9100`` -> loopback; ``HOST:PORT``, ``[::1]:9100``. ``ValueError`` saying what is wrong."""
    text = str(text).strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"wants [HOST:]PORT, e.g. 127.0.0.1:9100; got {text!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"a port is from 1 to 65535, not {port}")
    return host, port


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _StatusCollector:
    """One scrape = one status snapshot, as Prometheus metric families labelled by mount point."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from mmfs.commands.running import _METRICS as METRICS  # the table mmfs status --prometheus prints

        snapshot = self._status()
        for name, kind, text, value in METRICS:
            shown = value(snapshot)
            if shown is None:
                continue
            if kind == "counter":
                family: Any = CounterMetricFamily(name.removesuffix("_total"), text, labels=["mountpoint"])
            else:
                family = GaugeMetricFamily(name, text, labels=["mountpoint"])
            family.add_metric([snapshot["mountpoint"]], shown)
            yield family


class MetricsServer:
    """The HTTP endpoint: ``start()`` binds (a port in use fails the mount, naming the option)."""

    def __init__(self, addr: str, status: Callable[[], dict[str, Any]]) -> None:
        self.host, self.port = parse_metrics_addr(addr)
        self._status = status
        self._server: Any = None

    def start(self) -> MetricsServer:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise MmfsError("--metrics-addr needs the prometheus_client package: pip install 'mmfs[metrics]'") from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_StatusCollector(self._status))  # type: ignore[arg-type]
        try:
            self._server, _ = start_http_server(self.port, addr=self.host, registry=registry)
        except OSError as exc:
            raise MmfsError(f"--metrics-addr {self.host}:{self.port}: cannot listen there ({exc.strerror})") from None
        self.port = self._server.server_port
        if not _is_loopback(self.host):
            log.warning("metrics served on %s:%d: every host that reaches it can read them", self.host, self.port)
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def serve_metrics(config: Any, service: Any) -> MetricsServer | None:
    """The endpoint a ``MountConfig`` asks for (``metrics_addr``), serving ``service``'s status; or None."""
    if not getattr(config, "metrics_addr", None):
        return None
    return MetricsServer(config.metrics_addr, lambda: service.status({}, lambda _progress: None)).start()
