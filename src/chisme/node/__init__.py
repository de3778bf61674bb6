"""The composition root: a chisme node wires its store, cluster role, services and listeners,
and owns their lifecycle. It does none of their work.

    async with Node(Config.profile("local", peers=("127.0.0.1:7071",))) as node:
        await node.announce("3f2a...", "10.0.0.5:6881")
        providers = await node.lookup("3f2a...")

What talks to what (CONTRIBUTING.md and docs/DESIGN.md §2 draw the layers):

    front ends (api, http/udp tracker, node port)  ->  services (providers, tracker)
    services  ->  store, cluster role (v1 or v2), overlay lookups
    cluster role  ->  transport (node port sockets, or the in-memory network)

Time comes from a :class:`~chisme.clock.Clock` and node-to-node traffic goes through a
transport, so a whole node also runs on :class:`~chisme.net.memory.MemoryNetwork` on virtual
time (pass ``transport=MemoryTransport(...)``: no node port is bound then). Every task has a
parent (the node's TaskGroup); every wait on a peer has a deadline from the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import signal
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Protocol, TypeVar

from chisme.clock import Clock, SystemClock
from chisme.cluster.role import ClusterRole
from chisme.cluster.v1 import V1Role
from chisme.cluster.v2 import V2Role
from chisme.config import Config
from chisme.core.records import Provider, Record
from chisme.core.replication import ClusterConfig
from chisme.core.store import Replication, Store
from chisme.core.swim import SwimConfig
from chisme.errors import ConfigError, ListenError
from chisme.frontends.api import ApiServer
from chisme.frontends.http_tracker import HttpTracker
from chisme.frontends.node_port import NodePortHandler
from chisme.frontends.udp_tracker import UdpTracker
from chisme.metrics import Metrics
from chisme.net import tcp
from chisme.net.http_server import HttpServer
from chisme.net.memory import Answer
from chisme.net.transport import Asker, Endpoint, Transport
from chisme.node.node_port import NodePort
from chisme.node.observer import NodeObserver
from chisme.service.access_files import AccessFiles
from chisme.service.overlay import Overlay
from chisme.service.providers import ProviderService
from chisme.service.tracker import TrackerService
from chisme.tracker.access import AccessList

log = logging.getLogger("chisme.node")
_T = TypeVar("_T")

_SWIM = {"local": SwimConfig.local, "lan": SwimConfig.lan, "wan": SwimConfig.wan}
_LISTENING = {
    "node": "node port listening on %s (v1 JSON)",
    "api": "JSON API on http://%s/",
    "tracker_http": "HTTP tracker on http://%s/announce",
    "tracker_udp": "UDP tracker on udp://%s/announce",
}
_LISTENERS = {  # listener: (what it is, the flag that moves it)
    "node": ("the node port", "--listen"),
    "api": ("the JSON API", "--api"),
    "tracker_http": ("the HTTP tracker", "--tracker-http"),
    "tracker_udp": ("the UDP tracker", "--tracker-udp"),
}


class Attachment(Transport, Asker, Protocol):
    """A transport the node is given instead of binding its node port (the in-memory one)."""

    addr: str

    def attach(self, endpoint: Endpoint, answer: Answer | None = None) -> None: ...

    async def close(self) -> None: ...


class Node:
    """A chisme node. Use it as an async context manager; see the module docstring."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        transport: Attachment | None = None,
    ) -> None:
        self.config = cfg = config or Config()
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.node_id = cfg.node_id or secrets.token_hex(8)
        self.member_id = self.node_id
        self.store = self._new_store()  # v2: the cluster engine builds the node's store
        self.metrics = Metrics()
        self.metrics.watch_store(
            lambda: self.store.num_records,
            lambda: self.store.num_keys,
            lambda: self.store.num_tombstones,
        )
        self._given = transport
        self.addresses: dict[str, tuple[str, int]] = {}  # listener -> bound (host, port)
        self.started = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._tickers: list[asyncio.Task[None]] = []

    def _new_store(self, replication: Replication | None = None) -> Store:
        cfg = self.config
        return Store(
            cfg.ttl_ns,
            max_per_key=cfg.max_per_key,
            max_records=cfg.max_records,
            max_clock_skew_ns=cfg.max_clock_skew_ns,
            tombstone_ttl_ns=cfg.tombstone_ttl_ns,
            replication=replication,
        )

    # -- the provider service, for applications (the README's library example) -----------

    async def announce(
        self, info_hash: str, addr: str, peer_id: str = "", *, seeder: bool = False
    ) -> Record:
        """Store a provider here (stamped now) and tell the cluster."""
        return self.providers.announce(info_hash, addr, peer_id, seeder=seeder)

    async def remove(self, info_hash: str, addr: str) -> Record:
        """A provider left: tombstone it here and tell the cluster."""
        return self.providers.remove(info_hash, addr)

    async def lookup(self, info_hash: str, limit: int = 0) -> list[Provider]:
        """Local providers plus up to ``lookup_fanout`` peers' answers, freshest first."""
        return await self.providers.lookup(info_hash, limit)

    def local_lookup(self, info_hash: str, limit: int = 0) -> list[Provider]:
        """Live providers in this node's store only."""
        return self.providers.local_lookup(info_hash, limit)

    def members(self) -> list[dict[str, Any]]:
        return self.role.members()

    @property
    def node_address(self) -> str:
        """The address peers use to reach this node's port (after binding port 0)."""
        if self._given is not None:
            return self._given.addr
        if self.config.advertise:
            return self.config.advertise
        host, port = self.addresses.get("node", tcp.split_host_port(self.config.listen))
        return _hostport((host, port))

    def status(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "cluster": self.config.cluster_name,
            "address": self.node_address,
            "peers": list(self.config.peers),
            **self.role.status(),
            "records": self.store.num_records,
            "keys": self.store.num_keys,
            "tombstones": self.store.num_tombstones,
            "listeners": {k: _hostport(v) for k, v in self.addresses.items()},
        }

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        self._tg = asyncio.TaskGroup()
        await self._stack.enter_async_context(self._tg)
        try:
            await self._start()
        except BaseException:
            await self._shutdown()
            raise
        self.started.set()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown(exc_type, exc, tb)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a coroutine as a child of this node (never fire-and-forget)."""
        if self._tg is None:
            coro.close()
            raise RuntimeError("node is not running")
        return self._tg.create_task(coro)

    async def _start(self) -> None:
        cfg = self.config
        transport: Transport
        asker: Asker
        if self._given is None:
            self.sockets = port = await self._bind_node_port()
            transport = asker = port.transport
        else:
            transport = asker = self._given
            self._closers.append(self._given.close)
        self.transport = transport
        self.role = self._make_role(transport)
        self.store = self.role.store
        self.overlay = Overlay(
            asker, self.role.fanout, self.role.has_fanout, fanout=cfg.lookup_fanout,
            rng=self.rng, self_addr=lambda: self.node_address, metrics=self.metrics,
        )
        replicated = cfg.protocol == "v2"
        self.providers = ProviderService(
            self.store, self.role, self.overlay, self.clock, self.metrics,
            ttl_ns=cfg.ttl_ns, max_clock_skew_ns=cfg.max_clock_skew_ns,
            lookup_timeout_s=cfg.lookup_timeout_s, replicated=replicated,
        )
        self.access = AccessList()
        self.tracker = TrackerService(
            self.store, self.role, self.overlay, self.access, self.clock, self.rng,
            self.metrics, node_id=self.node_id, numwant_default=cfg.numwant_default,
            numwant_max=cfg.numwant_max, overlay_timeout_s=cfg.tracker_lookup_timeout_s,
            overlay_every_s=cfg.gossip_interval_s, replicated=replicated,
        )
        self.metrics.watch_tracker(*(lambda i=i: self.tracker.totals()[i] for i in range(3)))
        self.node_port = NodePortHandler(self.store, self.role, self.clock, self.metrics)
        if self._given is None:
            port.attach(self.role, self.node_port)
        else:
            self._given.attach(self.role, self.node_port.handle_v1)
        self.role.start()
        self._closers.append(self._leave)
        await self._start_frontends()
        self._every(cfg.sweep_interval_s, self.sweep_round)
        log.info("node %s (%s, cluster %r) at %s, peers %s", self.member_id, cfg.protocol,
                 cfg.cluster_name, self.node_address, list(cfg.peers) or "none")
        for name, bound in self.addresses.items():  # every listener is bound by now
            log.info(_LISTENING[name], _hostport(bound))

    async def _bind_node_port(self) -> NodePort:
        """The node port (see :mod:`chisme.node.node_port`); in v2 its member id and
        address name this process in the cluster."""
        port = NodePort(self.config, self.clock, self.metrics, self.spawn)
        self._closers.append(port.close)
        self.addresses["node"] = await self._listen("node", port.bind)
        if self.config.protocol == "v2":
            # a restarted node is a new member and a new origin (its versions start again)
            self.member_id = f"{self.node_id}.{self.clock.wall_ns() & 0xFFFFFFFF:08x}"
            await self._listen("node", port.start_v2, self.member_id, self.node_address)
        port.on_v1_peer = self._original_seed
        return port

    def _original_seed(self, addr: str) -> None:
        if isinstance(self.role, V2Role) and addr in self.config.peers:
            self.role.original_seed(addr)

    def _make_role(self, transport: Transport) -> ClusterRole:
        cfg = self.config
        if cfg.protocol == "v1":
            return V1Role(
                self.store, transport, self.clock, self.rng, NodeObserver(self.metrics),
                node_id=self.node_id,
                peers=list(cfg.peers), interval_s=cfg.gossip_interval_s,
                jitter=cfg.gossip_jitter,
            )
        if self._given is not None:
            self.member_id = f"{self.node_id}.{self.clock.wall_ns() & 0xFFFFFFFF:08x}"
        return V2Role(
            self._new_store, transport, self.clock, self.rng, NodeObserver(self.metrics),
            member_id=self.member_id, addr=self.node_address, seeds=cfg.peers,
            config=ClusterConfig(swim=_SWIM[cfg.membership]()), v1_peers=list(cfg.v1_peers),
            v1_interval_s=cfg.gossip_interval_s, v1_jitter=cfg.gossip_jitter,
        )

    async def _start_frontends(self) -> None:
        cfg = self.config
        if cfg.api:
            routes = ApiServer(self.providers, self.tracker, self.status, self.metrics)
            api = HttpServer(routes.handle, self.spawn, on_error=self._rejects("api"),
                             error_response=routes.error_response)
            self.addresses["api"] = await self._listen("api", api.start,
                                                       *tcp.split_host_port(cfg.api))
            self._closers.append(api.close)
        if not (cfg.tracker_http or cfg.tracker_udp):
            return
        self.access_files = files = AccessFiles(
            self.access, self.metrics, allow=cfg.allow_list, deny=cfg.deny_list
        )
        if files.configured:
            files.reload(force=True)  # a bad list at start is a ConfigError
            self._every(1.0, files.reload)
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, files.reload, True)
                self._closers.append(self._remove_sighup)
        if cfg.tracker_http:
            handler = HttpTracker(self.tracker, cfg, self.metrics, full_scrape=cfg.full_scrape)
            http = HttpServer(handler.handle, self.spawn, on_error=self._rejects("tracker_http"))
            self.addresses["tracker_http"] = await self._listen(
                "tracker_http", http.start, *tcp.split_host_port(cfg.tracker_http))
            self._closers.append(http.close)
        if cfg.tracker_udp:
            udp = UdpTracker(self.tracker, cfg, self.spawn, self.metrics)
            self.addresses["tracker_udp"] = await self._listen(
                "tracker_udp", udp.start, *tcp.split_host_port(cfg.tracker_udp))
            self._closers.append(udp.close)

    async def _listen(
        self, name: str, start: Callable[..., Awaitable[_T]], *args: Any
    ) -> _T:
        try:
            return await start(*args)
        except ConfigError as e:
            what, flag = _LISTENERS[name]
            off = "" if name == "node" else f" or switch it off with {flag} ''"
            raise ListenError(f"{e}; that is {what}: move it with {flag} HOST:PORT{off}",
                              listener=name, flag=flag) from None

    def _rejects(self, surface: str) -> Callable[[str], None]:
        return lambda reason: self.metrics.reject(surface, reason)

    def _every(self, seconds: float, round_fn: Callable[[], object]) -> None:
        """A ticker: ``round_fn()`` every ``seconds``; a failing round is logged as a bug."""

        async def tick() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    round_fn()
                except Exception:
                    log.exception("bug: %s failed", getattr(round_fn, "__name__", "a round"))

        assert self._tg is not None
        self._tickers.append(self._tg.create_task(tick()))

    def sweep_round(self) -> int:
        """Free expired records (bounded work per call, so the loop never stalls)."""
        freed = self.store.sweep(self.clock.wall_ns(), max_keys=2_000)
        if freed:
            self.metrics.expired.inc(freed)
        return freed

    async def _leave(self) -> None:
        self.role.leave()
        await asyncio.sleep(0)  # let the leave datagrams go out

    async def _remove_sighup(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    async def _shutdown(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        for task in self._tickers:
            task.cancel()
        self._tickers.clear()
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                await close()
        self._closers.clear()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.__aexit__(exc_type, exc, tb)
        self._tg = None


def _hostport(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
