"""Real Redis on loopback for the fleet tests: one node, a three-master Cluster, or a master and replica
watched by Sentinel; each started on free ports and killed at the end.

``stop()`` / ``start()`` take it away and bring it back on the same ports, as a crashed or restarted Redis
would be (empty, unless stopped with ``keep_data``); ``pause()`` / ``resume()`` freeze it with SIGSTOP.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free and exists too."""
    while True:
        port = _free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisServer:
    def __init__(self, folder: Path, *extra: str, password: str | None = None, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or _free_port()
        self.extra = list(extra)
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def keys(self, pattern: str) -> list[bytes]:
        return self.client().keys(pattern)

    def flushall(self) -> None:
        self.client().flushall()

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.folder), *self.extra]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return self
            except redis.AuthenticationError:
                return self
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def stop(self, *, keep_data: bool = False) -> None:
        """Kill it; with ``keep_data``, after saving a snapshot that the next ``start`` loads (a restart of a
        Redis that persists), else whatever it held is gone (one that does not)."""
        if self.proc is not None:
            if keep_data:
                self.client().save()
            else:
                (self.folder / "dump.rdb").unlink(missing_ok=True)
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing is answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def running_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """The body of a test module's ``redis_server`` fixture."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def _wait_until(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class RedisClusterServer:
    """Three masters (no replicas) of a real Redis Cluster on loopback, made with ``redis-cli --cluster
    create``; stop/start keep each node's cluster config, so the same cluster comes back."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.nodes = [RedisServer(folder / f"node{i}", "--cluster-enabled", "yes", "--cluster-config-file",
                                  "nodes.conf", "--cluster-node-timeout", "2000", port=_cluster_port())
                      for i in range(3)]
        self.password = None

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=5)

    def _ready(self) -> bool:
        for node in self.nodes:
            info = node.client().cluster("info")
            state = info.get("cluster_state") if isinstance(info, dict) else str(info)
            if "ok" not in str(state):
                return False
        return True

    def create(self) -> RedisClusterServer:
        for node in self.nodes:
            node.start()
        subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        _wait_until(self._ready, "the cluster to be ready")
        return self

    def start(self) -> RedisClusterServer:
        for node in self.nodes:
            if node.proc is None:  # the nodes that were stopped
                node.start()
        _wait_until(self._ready, "the cluster to come back")
        return self

    def stop(self, *, keep_data: bool = False) -> None:
        for node in self.nodes:
            node.stop(keep_data=keep_data)

    def pause(self) -> None:
        for node in self.nodes:
            node.pause()

    def resume(self) -> None:
        for node in self.nodes:
            node.resume()

    def keys(self, pattern: str) -> list[bytes]:
        return [k for node in self.nodes for k in node.client().keys(pattern)]

    def flushall(self) -> None:
        for node in self.nodes:
            node.client().flushall()


class RedisSentinelServer:
    """A master, one replica and one Sentinel watching them, on loopback. ``failover()`` kills the master
    and has Sentinel promote the replica; ``stop``/``start`` take both data nodes away and back."""

    SERVICE = "mymaster"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.master = RedisServer(folder / "master")
        self.replica = RedisServer(folder / "replica", "--replicaof", "127.0.0.1", str(self.master.port))
        self.sentinel_port = _free_port()
        self.sentinel: subprocess.Popen[bytes] | None = None
        self.password = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.SERVICE}/0"

    def _sentinel_client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_port, socket_timeout=5)

    def client(self) -> redis.Redis:
        return redis.Sentinel([("127.0.0.1", self.sentinel_port)], socket_timeout=5).master_for(self.SERVICE)

    def current_master(self) -> RedisServer:
        _host, port = self._sentinel_client().sentinel_get_master_addr_by_name(self.SERVICE)
        return self.master if int(port) == self.master.port else self.replica

    def create(self) -> RedisSentinelServer:
        self.master.start()
        self.replica.start()
        conf = self.folder / "sentinel.conf"
        conf.write_text(f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.folder}\n"
                        f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
                        f"sentinel down-after-milliseconds {self.SERVICE} 60000\n"
                        f"sentinel failover-timeout {self.SERVICE} 5000\n")
        self.sentinel = subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        _wait_until(lambda: self._sentinel_client().sentinel_master(self.SERVICE)["num-slaves"] >= 1,
                    "Sentinel to see the replica")
        _wait_until(lambda: self.replica.client().info("replication")["master_link_status"] == "up",
                    "the replica to sync")
        return self

    def failover(self) -> None:
        """Kill the master; Sentinel promotes the replica (asked to at once, not after its down timeout)."""
        old = self.current_master()
        assert old.proc is not None
        old.proc.kill()
        old.proc.wait(timeout=10)
        old.proc = None
        _wait_until(lambda: self._sentinel_client().execute_command("SENTINEL", "FAILOVER", self.SERVICE),
                    "Sentinel to start a failover")
        _wait_until(lambda: self.current_master() is not old, "the replica to be promoted")

    def start(self) -> RedisSentinelServer:
        for node in (self.master, self.replica):
            if node.proc is None:
                node.start()
        return self

    def stop(self, *, keep_data: bool = False) -> None:
        for node in (self.master, self.replica):
            node.stop(keep_data=keep_data)

    def pause(self) -> None:
        for node in (self.master, self.replica):
            node.pause()

    def resume(self) -> None:
        for node in (self.master, self.replica):
            node.resume()

    def keys(self, pattern: str) -> list[bytes]:
        return self.client().keys(pattern)

    def flushall(self) -> None:
        self.client().flushall()

    def close(self) -> None:
        if self.sentinel is not None:
            self.sentinel.kill()
            self.sentinel.wait(timeout=10)
        for node in (self.master, self.replica):
            node.stop()


def redis_of_kind(kind: str, tmp_path: Path) -> Iterator[RedisServer | RedisClusterServer | RedisSentinelServer]:
    """The body of a fixture parametrized over "single", "cluster" and "sentinel"."""
    if kind == "single":
        yield from running_redis(tmp_path)
        return
    server = RedisClusterServer(tmp_path / "cluster") if kind == "cluster" else RedisSentinelServer(tmp_path / "s")
    try:
        yield server.create()
    finally:
        server.close() if isinstance(server, RedisSentinelServer) else server.stop()
