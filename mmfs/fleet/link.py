"""The one connection to Redis every shared piece goes through, and the record of why it is not in use.

Redis is a helper, never a dependency of a read: every command runs with a short socket timeout, and any
failure (down, slow, refused, out of memory) turns into "no answer" for the caller, which then does what a
mount without Redis does. After a failure the link stays *alone* for a moment and lets one caller probe it
again; the first command that succeeds rejoins. ``state()`` says which it is and why, for ``mmfs status``.

Only a wrong password or a TLS mismatch is an error, and only at start (``check``): the user has to fix
those, whereas a Redis that is down at start is just a fleet of one until it comes up.

The URL is the user's ``--shared`` value: any ``redis://`` / ``rediss://`` / ``unix://`` URL redis-py takes;
``redis+cluster://host:port[,host:port...]`` (``rediss+cluster`` for TLS) for a Redis Cluster, reached
directly with redis-py's ``RedisCluster``; ``redis+sentinel://host:port[,host:port...]/service[/db]``
(``rediss+sentinel``) for a master found through Sentinel. mmfs's own query parameters (``budget``,
``burst``) are stripped before redis-py sees the URL.

Concurrency: ``_lock`` guards the health fields; redis-py's pool is thread-safe.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from mmfs.errors import MmfsError
from mmfs.redact import add_secret

__all__ = ["FleetError", "RedisLink", "SharedUrl", "parse_shared_url"]

Client = redis.Redis | RedisCluster

log = logging.getLogger("mmfs.fleet")

T = TypeVar("T")

# A read waits at most this long on Redis before going to the platform without it: a loopback or LAN
# Redis answers in well under a millisecond, and a 4 MiB block crosses a 1 Gb/s link in ~35 ms.
DEFAULT_TIMEOUT = 0.25
# After a failure, commands are skipped for this long (one caller then probes): a Redis that is down must
# not cost every read a connect timeout.
RETRY_AFTER = 1.0
# The event listener's blocking read waits this long for news, so its socket may sit idle that long; it
# also makes the listener a cheap probe: an idle mount notices Redis back within about this plus RETRY_AFTER.
LISTEN_BLOCK = 1.0
_OWN_PARAMS = ("budget", "burst", "socket_timeout")
_KINDS = {"redis": "single", "rediss": "single", "unix": "single", "redis+cluster": "cluster",
          "rediss+cluster": "cluster", "redis+sentinel": "sentinel", "rediss+sentinel": "sentinel"}
# Query parameters a cluster or Sentinel URL may carry (redis-py parses a single node's URL itself).
_TLS_PARAMS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")


class FleetError(MmfsError):
    """The shared tier is misconfigured (password, TLS, URL): the mount must not start."""


@dataclass(frozen=True)
class SharedUrl:
    redis_url: str
    budget: int | None  # API calls per minute for the whole fleet; None = no fleet budget
    burst: int | None
    kind: str = "single"  # "single", "cluster" or "sentinel"
    timeout: float | None = None  # ?socket_timeout=: the short commands' limit (the listener allows more)

    def redacted(self) -> str:
        """The URL without its password, for logs and status."""
        parts = urlsplit(self.redis_url)
        user, _, hosts = _split_netloc(parts.netloc)
        netloc = f"{user}@{hosts}" if user else hosts
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def hosts(self) -> list[tuple[str, int]]:
        """Every host:port of a cluster or Sentinel URL."""
        found = []
        for item in _split_netloc(urlsplit(self.redis_url).netloc)[2].split(","):
            if item.startswith("["):  # [::1]:7000
                host, _, rest = item[1:].partition("]")
                port = rest.removeprefix(":")
            elif ":" in item:
                host, _, port = item.rpartition(":")
            else:
                host, port = item, ""
            host = host or "localhost"
            try:
                found.append((host, int(port) if port else (26379 if self.kind == "sentinel" else 6379)))
            except ValueError:
                raise FleetError(f"--shared: {item!r} is not host:port") from None
        return found


def _split_netloc(netloc: str) -> tuple[str, str | None, str]:
    """(user, password, hosts) of a netloc that may list several hosts, which urlsplit cannot parse."""
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return "", None, netloc
    user, colon, password = userinfo.partition(":")
    return unquote(user), unquote(password) if colon else None, hosts


def parse_shared_url(url: str) -> SharedUrl:
    try:
        parts = urlsplit(url)
        password = _split_netloc(parts.netloc)[1]
        if _KINDS.get(parts.scheme) == "single":
            password = parts.password  # and a port that is not a number fails here, not in redis-py
            _ = parts.port
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise FleetError(f"--shared: not a URL ({exc})") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    for secret in [password, *(v for k, v in query if k in ("password", "sentinel_password"))]:
        if secret:
            add_secret(unquote(secret))  # whatever logs the URL by accident shows *** instead
    if parts.scheme not in _KINDS:
        raise FleetError(f"--shared wants a redis://, rediss://, redis+cluster:// or redis+sentinel:// URL, "
                         f"got scheme {parts.scheme!r}")
    own = {k: v for k, v in query if k in _OWN_PARAMS}
    rest = [(k, v) for k, v in query if k not in _OWN_PARAMS]
    try:
        budget = int(own["budget"]) if "budget" in own else None
        burst = int(own["burst"]) if "burst" in own else None
    except ValueError:
        raise FleetError("--shared: budget and burst are whole numbers of API calls") from None
    try:
        timeout = float(own["socket_timeout"]) if "socket_timeout" in own else None
    except ValueError:
        raise FleetError("--shared: socket_timeout is a number of seconds") from None
    if timeout is not None and not 0 < timeout <= 60:
        raise FleetError("--shared: socket_timeout is between 0 and 60 seconds")
    if budget is not None and budget <= 0:
        raise FleetError("--shared: budget must be at least 1 call per minute")
    shared = SharedUrl(urlunsplit(parts._replace(query=urlencode(rest))), budget, burst, _KINDS[parts.scheme],
                       timeout)
    if shared.kind != "single":
        shared.hosts()  # a bad host:port fails here, with the option's name
        if shared.kind == "sentinel" and not parts.path.strip("/"):
            raise FleetError("--shared: a Sentinel URL names its service: redis+sentinel://host:26379/mymaster")
    return shared


def connect(url: SharedUrl, **kwargs: object) -> Client:
    """A client for the URL: one node, a cluster (routed by redis-py itself), or Sentinel's current master.
    ``RedisCluster`` asks for the slot map at once, so this fails (``redis.ConnectionError``) while the
    cluster is down; the caller then tries again later."""
    if url.kind == "single":
        return redis.Redis.from_url(url.redis_url, **kwargs)  # type: ignore[arg-type]
    parts = urlsplit(url.redis_url)
    user, password, _ = _split_netloc(parts.netloc)
    query = dict(parse_qsl(parts.query))
    options: dict[str, object] = {k: v for k, v in query.items() if k in _TLS_PARAMS}
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = str(options["ssl_check_hostname"]).lower() in ("1", "true", "yes")
    if parts.scheme.startswith("rediss"):
        options["ssl"] = True
    auth = {"username": user or None, "password": password}
    try:
        if url.kind == "cluster":
            retry = kwargs.pop("retry", None)
            return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in url.hosts()], retry=retry,
                                cluster_error_retry_attempts=1, **auth, **options, **kwargs)  # type: ignore[arg-type]
        path = [p for p in parts.path.split("/") if p]
        service, db = path[0], int(path[1]) if len(path) > 1 else 0
        sentinel_kwargs = {"socket_timeout": kwargs.get("socket_timeout"),
                           "socket_connect_timeout": kwargs.get("socket_connect_timeout"),
                           "password": query.get("sentinel_password"), **options}
        sentinel = Sentinel(url.hosts(), sentinel_kwargs=sentinel_kwargs)
        return sentinel.master_for(service, db=db, **auth, **options, **kwargs)  # type: ignore[arg-type]
    except RedisClusterException as exc:
        raise redis.ConnectionError(str(exc)) from None


def _tls_problem(exc: BaseException) -> bool:
    text = f"{exc} {exc.__cause__ or ''}".lower()
    return any(word in text for word in ("ssl", "certificate", "tls", "wrong version number"))


class RedisLink:
    def __init__(self, url: SharedUrl, *, timeout: float = DEFAULT_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._clock = clock
        timeout = url.timeout or timeout
        # One immediate retry on a broken connection only: after a Redis restart every pooled connection
        # is dead, and the first command on each must not count as Redis being down. A timeout is not
        # retried (that would double the wait on a slow Redis).
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        self._kwargs: dict[str, object] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                                           "retry": retry, "health_check_interval": 0}
        # The listener's blocking reads wait up to LISTEN_BLOCK for news: its socket timeout allows for that.
        self._listen_kwargs = {**self._kwargs, "socket_timeout": LISTEN_BLOCK + max(1.0, 4 * timeout),
                               "socket_keepalive": True}
        self._clients: dict[str, Client] = {}
        self._connect_lock = threading.Lock()
        if url.kind == "single":  # a bad option fails now, at start; a cluster connects when first used
            self.redis, self.listen_redis  # noqa: B018
        self._lock = threading.Lock()
        self._alone_since: float | None = None
        self._reason = "not checked yet"
        self._retry_at = 0.0
        self._probing = False
        self.failures = 0
        self.skipped = 0
        self.rejoins = 0
        self.full = False

    def _client(self, which: str) -> Client:
        with self._connect_lock:
            client = self._clients.get(which)
            if client is None:
                try:
                    client = connect(self.url, **(self._kwargs if which == "commands" else self._listen_kwargs))
                except (ValueError, TypeError) as exc:
                    raise FleetError(f"--shared: {exc}") from None
                self._clients[which] = client
            return client

    def reset(self, which: str = "commands") -> None:
        """Drop a client after a timeout: a reply still on its way (a paused Redis answers everything it
        was sent once it resumes) must never be read as the answer to a later command."""
        with self._connect_lock:
            client = self._clients.pop(which, None)
        if client is not None:
            with contextlib.suppress(redis.RedisError, RedisClusterException, OSError):
                client.close()

    @property
    def redis(self) -> Client:
        """The client for short commands (0.25 s timeouts)."""
        return self._client("commands")

    @property
    def listen_redis(self) -> Client:
        """The event listener's own client, whose blocking reads may wait LISTEN_BLOCK."""
        return self._client("listen")

    # -- start --------------------------------------------------------------------------------------

    def check(self) -> None:
        """PING once. A refused password or a TLS failure raises ``FleetError`` (one line); a Redis that
        does not answer leaves the mount alone until it does."""
        try:
            self.redis.ping()
        except FleetError:
            raise
        except (redis.AuthenticationError, redis.exceptions.AuthorizationError,
                redis.exceptions.AuthenticationWrongNumberOfArgsError) as exc:
            if not self._has_password():
                raise FleetError(self._no_password()) from None
            raise FleetError(f"Redis at {self.url.redacted()} refused the credentials: {exc}") from None
        except redis.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                if not self._has_password():
                    raise FleetError(self._no_password()) from None
                raise FleetError(f"Redis at {self.url.redacted()} refused the credentials: {exc}") from None
            raise FleetError(f"Redis at {self.url.redacted()} refused PING: {exc}") from None
        except redis.RedisError as exc:
            if _tls_problem(exc) or self._tls_mismatch(exc):
                raise FleetError(f"TLS to Redis at {self.url.redacted()} failed: {exc}") from None
            self._alone(f"Redis did not answer at start ({exc})")
            log.warning("shared tier %s is not answering (%s): going on alone until it does",
                        self.url.redacted(), exc)
            return
        self._joined()
        log.info("joined the shared tier at %s", self.url.redacted())

    def _has_password(self) -> bool:
        parts = urlsplit(self.url.redis_url)
        return bool(_split_netloc(parts.netloc)[1]) or "password" in dict(parse_qsl(parts.query))

    def _no_password(self) -> str:
        return (f"Redis at {self.url.redacted()} wants a password, and the --shared URL has none "
                "(redis://:PASSWORD@host:port/0, best kept in MMFS_SHARED)")

    def _tls_mismatch(self, exc: BaseException) -> bool:
        """A TLS client on a plain port hangs in its handshake; a plain client on a TLS port is cut off.
        Either way the port itself answers, which a Redis that is merely down does not."""
        parts = urlsplit(self.url.redis_url)
        if parts.scheme == "rediss":
            if not isinstance(exc, redis.TimeoutError):
                return False
        elif parts.scheme != "redis" or "closed by server" not in str(exc).lower():
            return False
        try:
            with socket.create_connection((parts.hostname or "localhost", parts.port or 6379), timeout=1.0):
                return True
        except OSError:
            return False

    # -- every command ------------------------------------------------------------------------------

    def run(self, what: str, command: Callable[[redis.Redis], T], default: T) -> T:
        """``command(redis)``, or ``default`` if Redis is skipped or fails (the failure is recorded)."""
        if not self._may_try():
            with self._lock:
                self.skipped += 1
            return default
        epoch = self.failures
        try:
            result = command(self.redis)
        except RedisClusterException as exc:  # cluster-level trouble redis-py raises outside RedisError
            self._alone(f"{what}: {type(exc).__name__}: {exc}")
            return default
        except redis.exceptions.OutOfMemoryError as exc:
            # Full under noeviction: reads still work, writes do not; not a reason to stop using it.
            self._note_full(what, exc)
            return default
        except redis.RedisError as exc:
            if isinstance(exc, redis.ResponseError) and str(exc).startswith("OOM"):
                self._note_full(what, exc)
                return default
            self._alone(f"{what}: {type(exc).__name__}: {exc}")
            if isinstance(exc, redis.TimeoutError):
                self.reset()
            return default
        except BaseException:
            with self._lock:  # not Redis's fault; but a probe must never stay claimed
                self._probing = False
            raise
        self._joined(epoch)
        return result

    def _may_try(self) -> bool:
        with self._lock:
            if self._alone_since is None:
                return True
            if self._probing or self._clock() < self._retry_at:
                return False
            self._probing = True  # this caller probes; the others go on without Redis meanwhile
            return True

    def _alone(self, reason: str) -> None:
        with self._lock:
            self.failures += 1
            self._probing = False
            self._retry_at = self._clock() + RETRY_AFTER
            if self._alone_since is None:
                self._alone_since = self._clock()
                log.warning("shared tier unavailable (%s): going on alone", reason)
            self._reason = reason

    def note_failure(self, reason: str) -> None:
        """A failure seen outside ``run`` (the event listener's own connection)."""
        self._alone(reason)

    def note_success(self) -> None:
        """A command that succeeded outside ``run``: an idle mount's listener is its probe."""
        self._joined()

    def _joined(self, epoch: int | None = None) -> None:
        """Back in the fleet, unless ``epoch`` (the failure count when the command began) shows a failure
        since: a command sent before Redis went away may still succeed, and proves nothing about now."""
        with self._lock:
            self._probing = False
            if epoch is not None and epoch != self.failures:
                return
            if self._alone_since is not None:
                self.rejoins += 1
                log.info("shared tier is back: rejoined after %.1f s", self._clock() - self._alone_since)
            self._alone_since = None
            self._reason = ""

    def _note_full(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self._probing = False
            if not self.full:
                log.warning("shared tier is full (%s: %s): not adding to it", what, exc)
            self.full = True

    def note_room(self) -> None:
        with self._lock:
            self.full = False

    # -- status -------------------------------------------------------------------------------------

    @property
    def joined(self) -> bool:
        with self._lock:
            return self._alone_since is None

    def state(self) -> dict[str, object]:
        with self._lock:
            alone = self._alone_since is not None
            return {
                "url": self.url.redacted(),
                "state": "alone" if alone else "joined",
                "reason": self._reason if alone else "",
                "alone_for_s": round(self._clock() - self._alone_since, 1) if alone else 0.0,
                "full": self.full,
                "failures": self.failures,
                "skipped": self.skipped,
                "rejoins": self.rejoins,
                "kind": self.url.kind,
            }

    def close(self) -> None:
        with self._connect_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(redis.RedisError, RedisClusterException):
                client.close()
