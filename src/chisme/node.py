"""The composition root: a chisme node owns its store, peers, listeners, timers and tasks.

    async with Node(Config.profile("local", peers=("127.0.0.1:7071",))) as node:
        await node.announce("3f2a...", "10.0.0.5:6881")
        providers = await node.lookup("3f2a...")

Everything periodic is a thin ticker around a *round* method (``gossip_round``,
``sweep_round``) that tests and the simulator call directly. Every task has a parent
(the node's TaskGroup); every wait on a peer has a deadline from the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any

import msgspec

from chisme.config import Config
from chisme.core.keys import AddrKey, parse_addr, parse_info_hash
from chisme.core.lookup import merge_answers, pick_fanout
from chisme.core.membership import SwimConfig
from chisme.core.records import MAX_PEER_ID_BYTES, Provider, Record, to_provider
from chisme.core.replication import ClusterConfig, ClusterEngine, Out, plan_full_push
from chisme.core.store import Counts, Replication, Store
from chisme.errors import ChismeError, ConfigError, InvalidInput, PeerError
from chisme.frontends.api import ApiServer
from chisme.frontends.http_server import HttpServer
from chisme.frontends.http_tracker import HttpTracker
from chisme.frontends.udp_tracker import UdpTracker
from chisme.metrics import Metrics
from chisme.net import tcp
from chisme.net.v2 import V2Transport, udp_port_free
from chisme.tracker.access import AccessList, parse_hash_list
from chisme.tracker.types import TrackerAnswer
from chisme.wire import v1, v2

log = logging.getLogger("chisme.node")

Clock = Callable[[], int]
_INDEX_RE = re.compile(r"\[\d+\]")


class Node:
    """A chisme node. Use it as an async context manager; see the module docstring."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        clock: Clock = time.time_ns,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or Config()
        self.clock = clock
        self.rng = rng or random.Random()
        self.node_id = self.config.node_id or secrets.token_hex(8)
        self.store = self._new_store()  # v2: the cluster engine's, once it is built
        self.metrics = Metrics()
        self.metrics.watch_store(
            lambda: self.store.num_records,
            lambda: self.store.num_keys,
            lambda: self.store.num_tombstones,
        )
        self.peers: list[str] = list(self.config.peers)
        self.v1_peers: list[str] = list(self.config.v1_peers)
        self._pending_sends = 0
        self.member_id = self.node_id
        self.engine: ClusterEngine | None = None
        self._v2: V2Transport | None = None
        self._wake = asyncio.Event()
        self.addresses: dict[str, tuple[str, int]] = {}  # listener name -> bound (host, port)
        self._tg: asyncio.TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tickers: list[asyncio.Task[None]] = []
        self._send_slots = asyncio.Semaphore(self.config.max_concurrent_sends)
        self._recent_overlay_lookups: dict[str, int] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.started = asyncio.Event()

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

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        self._tg = asyncio.TaskGroup()
        await self._stack.enter_async_context(self._tg)
        try:
            await self._start_listeners()
        except BaseException:
            await self._shutdown()
            raise
        sweep_every = self.config.sweep_interval_s
        for round_fn, delay in (
            (self.gossip_round, self._gossip_delay),
            (self.sweep_round, lambda: sweep_every),
        ):
            self._tickers.append(self._tg.create_task(self._tick(round_fn, delay)))
        self.started.set()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown(exc_type, exc, tb)

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

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a coroutine as a child of this node (never fire-and-forget)."""
        if self._tg is None:
            coro.close()
            raise RuntimeError("node is not running")
        return self._tg.create_task(coro)

    async def _start_listeners(self) -> None:
        cfg = self.config
        server = tcp.NodePortServer(
            self,
            max_bytes=cfg.max_message_bytes,
            read_timeout_s=cfg.read_timeout_s,
            max_connections=cfg.max_connections,
            **self._v2_hooks(),
        )
        host, port = tcp.split_host_port(cfg.listen)
        self.addresses["node"] = await server.start(host, port)
        # port 0 in v2: the OS chose a free TCP port, but its UDP twin may be taken
        for _ in range(20 if cfg.protocol == "v2" and port == 0 else 0):
            if udp_port_free(*self.addresses["node"]):
                break
            await server.close()
            self.addresses["node"] = await server.start(host, port)
        self._closers.append(server.close)
        if cfg.protocol == "v2":
            await self._start_v2()
        log.info("node %s listening on %s (v1 JSON)", self.node_id, self.node_address)
        if cfg.api:
            routes = ApiServer(self)
            api = HttpServer(
                routes.handle,
                self.spawn,
                on_error=self._http_error("api"),
                error_response=routes.error_response,
            )
            host, port = tcp.split_host_port(cfg.api)
            self.addresses["api"] = await api.start(host, port)
            self._closers.append(api.close)
            log.info("JSON API on http://%s/", _hostport(self.addresses["api"]))
        await self._start_trackers()

    async def _start_trackers(self) -> None:
        """BitTorrent tracker front ends (see chisme.frontends.http_tracker/udp_tracker)."""
        cfg = self.config
        self.tracker_access = AccessList()
        self._tracker_access_stamps: dict[str, tuple[int, int]] | None = None
        self._tracker_totals_cache = (0.0, 0, 0)
        self.metrics.watch_tracker(
            lambda: self.store.num_keys,
            lambda: self._tracker_totals()[0],
            lambda: self._tracker_totals()[1],
        )
        if not (cfg.tracker_http or cfg.tracker_udp):
            return
        if cfg.allow_list or cfg.deny_list:
            self.tracker_reload_access(force=True)  # a bad list at start is a ConfigError
            assert self._tg is not None
            ticker = self._tick(self.tracker_access_round, lambda: 1.0)
            self._tickers.append(self._tg.create_task(ticker))
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, self.tracker_reload_access, True)
                self._closers.append(self._remove_sighup)
        if cfg.tracker_http:
            torrents = self.store.keys if cfg.full_scrape else None
            handler = HttpTracker(self, cfg, self.tracker_access, self.metrics, torrents)
            on_error = self._http_error("tracker_http")
            http = HttpServer(handler.handle, self.spawn, on_error=on_error)
            host, port = tcp.split_host_port(cfg.tracker_http)
            self.addresses["tracker_http"] = await http.start(host, port)
            self._closers.append(http.close)
            url = _hostport(self.addresses["tracker_http"])
            log.info("HTTP tracker on http://%s/announce", url)
        if cfg.tracker_udp:
            udp = UdpTracker(self, cfg, self.tracker_access, self.spawn, self.metrics)
            host, port = tcp.split_host_port(cfg.tracker_udp)
            self.addresses["tracker_udp"] = await udp.start(host, port)
            self._closers.append(udp.close)
            log.info("UDP tracker on udp://%s/announce", _hostport(self.addresses["tracker_udp"]))

    async def _remove_sighup(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def tracker_reload_access(self, force: bool = False) -> bool:
        """(Re)load the tracker's allow/deny list files when one changed (mtime or size), or
        always with ``force`` (SIGHUP). True if new lists are in force.

        The first load raises ConfigError on a missing or bad file; later a bad file is logged
        and counted, and the lists in force stay.
        """
        cfg = self.config
        first = self._tracker_access_stamps is None
        try:
            stamps: dict[str, tuple[int, int]] = {}
            for path in (cfg.allow_list, cfg.deny_list):
                if path:
                    st = os.stat(path)
                    stamps[path] = (st.st_mtime_ns, st.st_size)
            if not force and stamps == self._tracker_access_stamps:
                return False
            self._tracker_access_stamps = stamps
            allow = deny = None
            if cfg.allow_list:
                with open(cfg.allow_list, "rb") as f:
                    allow = parse_hash_list(f.read(), cfg.allow_list)
            if cfg.deny_list:
                with open(cfg.deny_list, "rb") as f:
                    deny = parse_hash_list(f.read(), cfg.deny_list)
        except (OSError, InvalidInput) as e:
            self.metrics.access_reloads.labels("failed").inc()
            reason = e.reason if isinstance(e, InvalidInput) else f"{e.filename}: {e.strerror}"
            if first:
                raise ConfigError(f"tracker access list: {reason}") from None
            log.warning("tracker access lists not reloaded (the old ones stay): %s", reason)
            return False
        self.tracker_access.replace(allow, deny or frozenset())
        self.metrics.access_reloads.labels("ok").inc()
        log.info(
            "tracker access lists loaded: %s allowed, %d denied",
            "all" if allow is None else len(allow),
            len(deny or ()),
        )
        return True

    async def tracker_access_round(self) -> bool:
        """The access-list ticker's round: reload the lists if a file changed."""
        return self.tracker_reload_access()

    def _tracker_totals(self) -> tuple[int, int]:
        """Seeders and leechers held, for the gauges: one pass over the keys per scrape."""
        at, seeders, leechers = self._tracker_totals_cache
        now = time.monotonic()
        if now - at >= 1.0:
            seeders = leechers = 0
            for info_hash in self.store.keys():
                c = self.store.counts(info_hash)
                seeders += c.seeders
                leechers += c.leechers
            self._tracker_totals_cache = (now, seeders, leechers)
        return seeders, leechers

    def _v2_hooks(self) -> dict[str, Any]:
        """In v2 mode, connections that start with the v2 preface go to the v2 transport."""
        if self.config.protocol != "v2":
            return {}
        return {"v2_magic": v2.PREFACE, "upgrade": self._v2_upgrade}

    def _v2_upgrade(self, transport: asyncio.Transport, data: bytes) -> asyncio.Protocol:
        assert self._v2 is not None
        return self._v2.upgrade(transport, data)

    # -- v2: membership and replication (docs/v2.md) ------------------------------------

    async def _start_v2(self) -> None:
        """Bind UDP on the node port, build the cluster engine, join through the seeds."""
        cfg = self.config
        # a restarted node is a new member and a new origin (its versions start again)
        self.member_id = f"{self.node_id}.{time.time_ns() & 0xFFFFFFFF:08x}"
        self._v2 = V2Transport(
            cluster=cfg.cluster_name,
            member_id=self.member_id,
            addr=self.node_address,
            max_frame_bytes=cfg.max_message_bytes,
            dial_timeout_s=cfg.peer_timeout_s,
            handshake_timeout_s=cfg.read_timeout_s,
            deliver=self._v2_deliver,
            spawn=self.spawn,
            count=self._v2_count,
            max_streams=cfg.max_connections,
        )
        host, port = self.addresses["node"]
        await self._v2.start_udp(host, port)
        self._closers.append(self._stop_v2)
        swim = {"local": SwimConfig.local, "lan": SwimConfig.lan, "wan": SwimConfig.wan}
        self.engine = ClusterEngine(
            self.member_id,
            self.node_address,
            self._new_store,
            config=ClusterConfig(swim=swim[cfg.membership]()),
            rng=self.rng,
            seeds=[p for p in cfg.peers if p != self.node_address],
        )
        self.store = self.engine.store
        self.engine.replicator.on_merged = self._count_merge
        self._v2_send(self.engine.start(self.clock(), time.monotonic_ns()))
        assert self._tg is not None
        self._tickers.append(self._tg.create_task(self._engine_loop()))
        log.info("v2 member %s (cluster %r), seeds %s", self.member_id, cfg.cluster_name,
                 list(cfg.peers) or "none")

    async def _engine_loop(self) -> None:
        """Tick the engine at its deadlines (at least every 200 ms, for rumors)."""
        engine = self.engine
        assert engine is not None
        while True:
            try:
                mono = time.monotonic_ns()
                if mono >= engine.next_deadline_ns() or self.store.has_changes():
                    self._v2_send(engine.tick(self.clock(), mono))
                    self._take_member_events()
            except Exception:
                log.exception("bug: the v2 engine tick failed")
            wait_ns = engine.next_deadline_ns() - time.monotonic_ns()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(max(wait_ns / 1e9, 0.005), 0.2)):
                    await self._wake.wait()

    def _v2_deliver(self, src: str, msg: object) -> None:
        engine = self.engine
        if engine is None:
            return
        self.metrics.messages_in.labels("v2", type(msg).__name__).inc()
        self._v2_send(engine.on_message(src, msg, self.clock(), time.monotonic_ns()))
        self._wake.set()  # a deadline may have moved earlier

    def _v2_send(self, outs: list[Out]) -> None:
        if self._v2 is None:
            return
        for out in outs:
            self.metrics.messages_out.labels("v2", type(out.msg).__name__).inc()
            self._v2.send(out)

    def _v2_count(self, direction: str, kind: str, n: int) -> None:
        if direction in ("in", "out"):
            self.metrics.gossip_bytes.labels(direction).inc(n)
        else:
            self.metrics.send_failures.labels(kind).inc(n)

    def _take_member_events(self) -> None:
        engine = self.engine
        if engine is None or not engine.events:
            return
        for ev in engine.events:
            log.info("member %s %s at %s", ev.member.node_id, ev.kind, ev.member.addr)
        engine.events.clear()
        # the chisme_members{state} gauge follows the member table (it was never set)
        counts = dict.fromkeys(("alive", "suspect", "dead", "left"), 0)
        for member in engine.members():
            counts[str(member.state)] = counts.get(str(member.state), 0) + 1
        for state, n in counts.items():
            self.metrics.members.labels(state).set(n)

    async def _stop_v2(self) -> None:
        if self.engine is not None and self._v2 is not None:
            with contextlib.suppress(Exception):
                self._v2_send(self.engine.leave(time.monotonic_ns()))
                await asyncio.sleep(0)  # let the leave datagrams go out
        if self._v2 is not None:
            await self._v2.close()

    def members(self) -> list[dict[str, Any]]:
        """Cluster members as this node sees them (v2); v1 mode lists the static peers."""
        if self.engine is None:
            return [{"id": "", "addr": p, "state": "static", "incarnation": 0} for p in self.peers]
        return [
            {"id": m.node_id, "addr": m.addr, "state": str(m.state), "incarnation": m.incarnation}
            for m in sorted(self.engine.members(), key=lambda m: m.addr)
        ]

    @property
    def v1_targets(self) -> list[str]:
        """Whom the seed's v1 gossip goes to: the peers in v1 mode; in v2 mode only the
        nodes of the original design (members replicate by rumors and anti-entropy)."""
        return self.peers if self.config.protocol == "v1" else self.v1_peers

    def _has_fanout(self) -> bool:
        """Whether a lookup has anyone to ask (O(1), for the tracker's hot path)."""
        if self.engine is None:
            return bool(self.peers)
        return self.engine.membership.num_alive() > 1

    @property
    def fanout_peers(self) -> list[str]:
        """Whom lookups ask: the static peers (v1), or the alive members (v2)."""
        if self.engine is None:
            return self.peers
        return [a for a in self.engine.alive_addrs() if a != self.node_address]

    def _http_error(self, surface: str) -> Callable[[str], None]:
        return lambda reason: self.reject(surface, reason)

    @property
    def node_address(self) -> str:
        """The address peers use to reach this node's port (after binding port 0)."""
        if self.config.advertise:
            return self.config.advertise
        host, port = self.addresses.get("node", tcp.split_host_port(self.config.listen))
        return _hostport((host, port))

    async def _tick(
        self, round_fn: Callable[[], Awaitable[object]], delay: Callable[[], float]
    ) -> None:
        while True:
            await asyncio.sleep(delay())
            try:
                await round_fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bug: %s failed", getattr(round_fn, "__name__", "round"))

    def _gossip_delay(self) -> float:
        j = self.config.gossip_jitter
        return self.config.gossip_interval_s * (1 + self.rng.uniform(-j, j))

    # -- the service: what applications, the API and the CLI call -----------------------

    async def announce(
        self, info_hash: str, addr: str, peer_id: str = "", *, seeder: bool = False
    ) -> Record:
        """Store a provider here (stamped now) and push it to the peers (fire-and-forget)."""
        key, pid = self._parse_provider(info_hash, addr, peer_id)
        rec = self.store.announce(info_hash, key, self.clock(), peer_id=pid, seeder=seeder)
        self.push_announce(info_hash, rec)
        return rec

    async def remove(self, info_hash: str, addr: str) -> Record:
        """A provider left: tombstone it here; gossip carries the tombstone to the peers."""
        parse_info_hash(info_hash)
        rec = self.store.remove(info_hash, parse_addr(addr), self.clock())
        self.push_removal(info_hash, rec)
        return rec

    def local_lookup(self, info_hash: str, limit: int = 0) -> list[Provider]:
        """Live providers in this node's store only."""
        parse_info_hash(info_hash)
        return self.store.lookup(info_hash, self.clock(), limit)

    async def lookup(self, info_hash: str, limit: int = 0) -> list[Provider]:
        """Local providers plus up to ``lookup_fanout`` peers' answers, freshest first."""
        parse_info_hash(info_hash)
        started = time.perf_counter()
        now = self.clock()
        local = self.store.live_records(info_hash, now)
        remote = await self._ask_peers(info_hash, self.config.lookup_timeout_s)
        cfg = self.config
        # v2: a replica's stamp is the origin's last *change* (refreshes cost no traffic) and
        # the origin's lease keeps the record live; members answer with what their store holds
        # live. A TTL cut on stamps here dropped every provider older than a TTL that was not
        # held by its own origin (seen: a replica's overlay lookup returned nothing).
        ttl_ns = cfg.ttl_ns if self.engine is None else 1 << 62
        merged = merge_answers([local, *remote], now, ttl_ns, cfg.max_clock_skew_ns, limit)
        self.metrics.lookup_seconds.observe(time.perf_counter() - started)
        return [to_provider(r) for r in merged]

    def to_json(self, info_hash: str, limit: int = 0) -> bytes:
        """The seed's ``Store.ToJSON``: this node's live providers as a v1 JSON array."""
        return v1.encode_providers(self.local_lookup(info_hash, limit))

    def _parse_provider(self, info_hash: str, addr: str, peer_id: str) -> tuple[AddrKey, bytes]:
        parse_info_hash(info_hash)
        key = parse_addr(addr)
        pid = peer_id.encode("utf-8")
        if len(pid) > MAX_PEER_ID_BYTES:
            raise InvalidInput(f"peer_id must be at most {MAX_PEER_ID_BYTES} bytes")
        return key, pid

    async def _ask_peers(self, info_hash: str, timeout_s: float) -> list[list[Record]]:
        """Ask up to ``lookup_fanout`` peers concurrently; keep the answers that arrive."""
        targets = pick_fanout(
            self.fanout_peers, self.config.lookup_fanout, self.rng, self.node_address
        )
        if not targets:
            return []
        msg = v1.encode_message(v1.Lookup(info_hash, 0))
        tasks = [
            asyncio.ensure_future(self._lookup_one(peer, msg, timeout_s)) for peer in targets
        ]
        try:
            done, _ = await asyncio.wait(tasks, timeout=timeout_s)
        finally:
            for t in tasks:
                t.cancel()
        answers: list[list[Record]] = []
        for t in done:
            if not t.cancelled() and t.exception() is None:
                answers.append(t.result())
        return answers

    async def _lookup_one(self, peer: str, msg: bytes, timeout_s: float) -> list[Record]:
        self.metrics.messages_out.labels("v1", "lookup").inc()
        try:
            raw = await tcp.request(peer, msg, timeout_s, self.config.max_message_bytes)
            return v1.decode_providers(raw, self.config.max_message_bytes)
        except ChismeError as e:
            self.metrics.send_failures.labels(type(e).__name__).inc()
            log.debug("lookup at %s failed: %s", peer, e)
            raise

    # -- node port (v1) -----------------------------------------------------------------

    def handle_v1(self, msg: v1.Message, peer: str, size: int = 0) -> bytes | None:
        """Apply one decoded v1 message (``size`` bytes on the wire); return the reply bytes,
        if the message has one."""
        now = self.clock()
        if isinstance(msg, v1.Lookup):
            self.metrics.messages_in.labels("v1", "lookup").inc()
            return v1.encode_providers(self.store.lookup(msg.info_hash, now, msg.limit))
        if isinstance(msg, v1.Members):
            self.metrics.messages_in.labels("v1", "members").inc()
            return msgspec.json.encode(self.members()) + b"\n"
        kind = "announce" if isinstance(msg, v1.Announce) else "gossip"
        self.metrics.messages_in.labels("v1", kind).inc()
        self.metrics.gossip_bytes.labels("in").inc(size)
        # v2 mode: what a node of the original design tells us first-hand becomes ours
        adopt = self.engine is not None
        records = msg.records
        if isinstance(msg, v1.Gossip) and msg.removed:
            records = [*records, *msg.removed]
        result = self.store.merge(msg.info_hash, records, now, adopt=adopt)
        if isinstance(msg, v1.Gossip) and msg.downloaded:
            self.store.merge_downloaded(msg.info_hash, msg.downloaded)
        self._count_merge(result.inserted, result.replaced, result.ignored)
        return None

    def reject(self, surface: str, reason: str) -> None:
        # "providers[7].addr: ..." -> "providers[].addr: ...": a peer must not be able to
        # mint a metric label per index (unbounded label cardinality)
        self.metrics.reject(surface, _INDEX_RE.sub("[]", reason))

    def _count_merge(self, inserted: int, replaced: int, ignored: int) -> None:
        m = self.metrics.merged
        if inserted:
            m.labels("inserted").inc(inserted)
        if replaced:
            m.labels("replaced").inc(replaced)
        if ignored:
            m.labels("ignored").inc(ignored)

    # -- gossip (v1: the seed's full push) -----------------------------------------------

    def push_announce(self, info_hash: str, rec: Record) -> None:
        """Send an ``announce`` carrying ``rec`` to every peer, in the background (v1)."""
        if not self.v1_targets or self._tg is None:
            return
        data = v1.encode_message(v1.Announce(info_hash, [rec]))
        for peer in self.v1_targets:
            self._spawn_send(peer, data, "announce")

    def push_removal(self, info_hash: str, tomb: Record) -> None:
        """Send a tombstone to every v1 peer at once (chisme's ``removed`` extension)."""
        if not self.v1_targets or self._tg is None:
            return
        data = v1.encode_message(v1.Gossip(info_hash, [], removed=[tomb]))
        for peer in self.v1_targets:
            self._spawn_send(peer, data, "gossip")

    def _spawn_send(self, peer: str, data: bytes, kind: str) -> None:
        """A background push, bounded: past ``max_pending_sends`` it is dropped (and
        counted); the next gossip round carries the same state anyway."""
        if self._pending_sends >= self.config.max_concurrent_sends * 16:
            self.metrics.send_failures.labels("backlog").inc()
            return
        self._pending_sends += 1
        self.spawn(self._send_counted(peer, data, kind))

    async def _send_counted(self, peer: str, data: bytes, kind: str) -> None:
        try:
            await self._send(peer, data, kind)
        finally:
            self._pending_sends -= 1

    async def gossip_round(self) -> int:
        """One v1 gossip round: every live key's providers to every peer. Returns messages sent.

        In v2 mode only the nodes of the original design (``v1_peers``) get it: members
        replicate by rumors and anti-entropy."""
        if not self.v1_targets:
            return 0
        targets = list(self.v1_targets)
        payloads = [
            v1.encode_message(
                v1.Gossip(info_hash, records, self.store.downloaded_counters(info_hash), tombs)
            )
            for info_hash, records, tombs in plan_full_push(self.store, targets, self.clock())
        ]

        async def push_to(peer: str) -> None:
            # a few messages in flight per peer (the send slots bound the total), so a round
            # over 10^5 keys never holds 10^5 coroutines at once
            for i in range(0, len(payloads), 16):
                batch = payloads[i : i + 16]
                await asyncio.gather(*(self._send(peer, data, "gossip") for data in batch))

        await asyncio.gather(*(push_to(peer) for peer in targets))
        return len(payloads) * len(targets)

    async def _send(self, peer: str, data: bytes, kind: str) -> None:
        async with self._send_slots:
            try:
                await tcp.send_message(peer, data, self.config.peer_timeout_s)
            except PeerError as e:
                self.metrics.send_failures.labels(type(e).__name__).inc()
                log.debug("send to %s failed: %s", peer, e)
                return
        self.metrics.messages_out.labels("v1", kind).inc()
        self.metrics.gossip_bytes.labels("out").inc(len(data))

    async def sweep_round(self) -> int:
        """Free expired records (bounded work per call, so the loop never stalls)."""
        freed = self.store.sweep(self.clock(), max_keys=2_000)
        if freed:
            self.metrics.expired.inc(freed)
        return freed

    # -- BitTorrent tracker service (front ends call these) -------------------------------

    def tracker_announce(
        self,
        info_hash: str,
        addr: AddrKey,
        peer_id: bytes,
        *,
        seeder: bool,
        stopped: bool,
        completed: bool,
        numwant: int,
        family_only: bool = False,
    ) -> TrackerAnswer | Awaitable[TrackerAnswer]:
        """Apply one BitTorrent announce; answer with a peer sample.

        Synchronous when the local store can answer; when it holds fewer than ``numwant``
        peers and the key was not completed from the overlay lately, returns an awaitable
        that also asks a few peers (short deadline), so a client's first announce already
        sees peers that announced at other nodes moments ago. ``family_only``: peers of the
        announcing address's family only (a UDP reply carries one family).
        """
        family = _family(addr) if family_only else 0
        now = self.clock()
        if stopped:
            self.push_removal(info_hash, self.store.remove(info_hash, addr, now))
            c = self.store.counts(info_hash)
            return c.seeders, c.leechers, []
        answer = self.store.announce_sample(
            info_hash,
            addr,
            now,
            peer_id=peer_id,
            seeder=seeder,
            want=numwant,
            rng=self.rng,
            family=family,
        )
        if completed:
            self.store.count_completed(info_hash, self.node_id)
            if self.engine is not None:
                count = self.store.downloaded_counters(info_hash).get(self.node_id, 0)
                self.engine.replicator.publish_counter(info_hash, self.node_id, count)
        if (
            len(answer[2]) >= numwant
            or not self._has_fanout()
            or not self._should_complete(info_hash, now)
        ):
            return answer
        return self._complete_from_overlay(info_hash, addr, seeder, numwant, answer[2], family)

    def _should_complete(self, info_hash: str, now: int) -> bool:
        recent = self._recent_overlay_lookups
        last = recent.get(info_hash)
        if last is not None and now - last < int(self.config.gossip_interval_s * 1e9):
            return False
        if len(recent) > 100_000:
            recent.clear()
        recent[info_hash] = now
        return True

    async def _complete_from_overlay(  # noqa: PLR0917  (private, called once)
        self,
        info_hash: str,
        addr: AddrKey,
        seeder: bool,
        numwant: int,
        peers: list[AddrKey],
        family: int,
    ) -> TrackerAnswer:
        answers = await self._ask_peers(info_hash, self.config.tracker_lookup_timeout_s)
        now = self.clock()
        if self.engine is not None:
            # v2: replication brings these within a gossip round. A v1 copy (origin 0, the
            # answering member's stamp) merged over a replicated record took it out of the
            # digests (anti-entropy re-sent its bucket every sync) until the copy expired.
            more = [
                r.addr
                for rs in answers
                for r in rs
                if not r.tombstone and r.addr != addr and (not family or _of_family(r.addr, family))
            ]
            peers = list(dict.fromkeys([*peers, *more]))[:numwant]
            c = self.store.counts(info_hash)
            return c.seeders, c.leechers, peers
        for records in answers:  # what a peer knows is gossip we would get soon anyway
            self.store.merge(info_hash, records, now)
        peers = self.store.sample_peers(
            info_hash, now, numwant, self.rng, exclude=addr, leechers_first=seeder, family=family
        )
        c = self.store.counts(info_hash)
        return c.seeders, c.leechers, peers

    def tracker_peers(
        self,
        info_hash: str,
        addr: AddrKey,
        *,
        seeder: bool,
        numwant: int,
        family_only: bool = False,
    ) -> TrackerAnswer:
        """A peer sample from the local store only, writing nothing (a front end over its
        cap of overlay completions in flight answers with this)."""
        peers = self.store.sample_peers(
            info_hash,
            self.clock(),
            numwant,
            self.rng,
            exclude=addr,
            leechers_first=seeder,
            family=_family(addr) if family_only else 0,
        )
        c = self.store.counts(info_hash)
        return c.seeders, c.leechers, peers

    def tracker_scrape(self, info_hashes: Sequence[str]) -> list[Counts]:
        return [self.store.counts(ih) for ih in info_hashes]

    # -- status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "cluster": self.config.cluster_name,
            "address": self.node_address,
            "protocol": self.config.protocol,
            "member_id": self.member_id,
            "peers": list(self.peers),
            "members_alive": len(self.engine.alive_addrs()) if self.engine else None,
            "records": self.store.num_records,
            "keys": self.store.num_keys,
            "tombstones": self.store.num_tombstones,
            "listeners": {k: _hostport(v) for k, v in self.addresses.items()},
        }

    def tracker_stats(self, top: int = 20) -> dict[str, Any]:
        """A human view of the tracker: totals and the busiest torrents."""
        seeders = leechers = 0
        rows: list[tuple[int, str, Counts]] = []
        for info_hash in self.store.keys():
            c = self.store.counts(info_hash)
            seeders += c.seeders
            leechers += c.leechers
            rows.append((c.seeders + c.leechers, info_hash, c))
        rows.sort(reverse=True)
        return {
            "torrents": self.store.num_keys,
            "peers": seeders + leechers,
            "seeders": seeders,
            "leechers": leechers,
            "top": [
                {"info_hash": ih, "seeders": c.seeders, "leechers": c.leechers,
                 "downloaded": c.downloaded}
                for _, ih, c in rows[:top]
            ],
        }

    def metrics_text(self) -> bytes:
        return self.metrics.render()


def _family(addr: AddrKey) -> int:
    """6 for an IPv6 key, else 4 (a tracker client's address is an IP key)."""
    return 6 if isinstance(addr, bytes) and len(addr) == 18 else 4


def _of_family(addr: AddrKey, family: int) -> bool:
    """An IP key of ``family`` (a ``host:port`` name is of neither)."""
    return isinstance(addr, bytes) and len(addr) == (6 if family == 4 else 18)


def _hostport(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

