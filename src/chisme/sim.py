"""N chisme nodes in one process on the in-memory network, driving the production engines.

``chisme simulate`` runs this. Each node is the same code a real node runs: its store and
its cluster role (:mod:`chisme.cluster`), attached to the memory network
(:class:`~chisme.net.memory.MemoryTransport`) on its virtual clock:

- **v2**: :class:`~chisme.cluster.v2.V2Role` (SWIM membership, rumors, digest anti-entropy,
  leases), ticked only at its next deadline (never on a fixed step), every message measured
  by the real v2 codec; the store is swept every ``sweep_interval_s`` (1 s, 2,000 keys a
  time, as the node does).
- **v1**: :class:`~chisme.cluster.v1.V1Role`, the original design's replication: every
  ``gossip_interval`` (8 s, +-10 % jitter) a full push (one v1 ``gossip`` message per live
  key) to each static peer, a new announce pushed to the peers as a v1 ``announce``, what
  arrives merged (clamped); bytes from :func:`chisme.wire.v1.encode_message`. One round to one
  peer travels as one :class:`~chisme.net.memory.Batch` (a node sends them concurrently).

The cluster starts converged (the run measures steady state, not the initial fill): every
record is announced at its home node through ``Store.announce`` and merged
(``clamp=False``) into every other store; every member knows every other member
(``Membership.merge_state``, no rebroadcast). Then providers refresh at their home node every
``refresh_s``, new providers announce at ``announce_rate`` per second (their spread is
measured), and nodes may be killed or partitioned.

What is measured (:meth:`Simulation.summary`): time for a new announce to reach 99 % / 100 %
of live nodes; bytes and messages sent per node per second after the warm-up; time until
every live node holds a killed node DEAD; false deaths (a DEAD about a node that is alive and
reachable); the records a node holds at most; time for a healed partition to re-form and
reconverge (no live member held dead anywhere; every live store holds the same replicated
records, announces younger than the heal aside, and every older announce is everywhere).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chisme.cluster.role import QuietObserver
from chisme.cluster.v1 import V1Role
from chisme.cluster.v2 import V2Role
from chisme.core.keys import AddrKey
from chisme.core.records import FLAG_TOMBSTONE, Record
from chisme.core.replication import ClusterConfig, Digest, record_hash
from chisme.core.store import Replication, Store
from chisme.core.swim import Alive, MemberEvent, MemberState, suspicion_timeout_ns
from chisme.errors import ConfigError
from chisme.net.memory import WALL0_NS, MemoryNetwork, MemoryTransport, NetworkClock, NodeCodec
from chisme.wire import v1

S = 1_000_000_000
MS = 1_000_000
WALL0 = WALL0_NS
"""Wall clock at virtual time 0 (record stamps are wall time; timers run on the virtual clock)."""

_SWEEP_KEYS = 2_000  # the node's sweep: 2,000 keys a time
_REFRESH_STEP_NS = 1 * S
_HEAL_CHECK_NS = 250 * MS
_REACH_BIN_NS = 50 * MS
_REACH_BINS = 1200  # 60 s of arrival histogram (plots)

Protocol = Literal["v1", "v2"]


@dataclass(frozen=True, slots=True)
class SimConfig:
    """A simulated run. Times are virtual seconds; the run lasts ``warmup_s + duration_s``."""

    nodes: int = 50
    keys: int = 100
    providers_per_key: int = 10
    refresh_s: float = 60.0
    ttl_s: float = 90.0
    announce_rate: float = 1.0  # new announces per second, cluster-wide
    duration_s: float = 60.0  # measured window, after the warm-up
    warmup_s: float = 5.0
    settle_s: float = 15.0  # no new announces in the last settle_s (at most half the run)
    loss: float = 0.0  # unreliable messages lost, independently
    kill: int = 0  # nodes killed at kill_at_s
    kill_at_s: float = 10.0  # into the measured window
    partition_s: float = 0.0  # a 2-way partition of this length
    partition_at_s: float = 10.0  # into the measured window
    protocol: Protocol = "v2"
    v1_peers: int = 3
    v1_interval_s: float = 8.0
    v1_jitter: float = 0.1
    latency_ms: float = 1.0
    sweep_interval_s: float = 1.0  # Node.sweep_round's period (2,000 keys per sweep)
    seed: int = 1
    verify_codec: bool = False  # encode and decode every message with the real codec
    preload: Literal["clone", "announce"] = "clone"  # see Simulation._preload
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        if self.nodes < 2:
            raise ConfigError("--nodes must be at least 2")
        if self.keys < 0 or self.providers_per_key < 0:
            raise ConfigError("--keys and --providers-per-key must not be negative")
        for name in ("refresh_s", "ttl_s", "duration_s", "latency_ms", "sweep_interval_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        for name in ("announce_rate", "warmup_s", "settle_s", "partition_s", "kill_at_s",
                     "partition_at_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if not 0.0 <= self.loss <= 1.0:
            raise ConfigError("--loss must be within 0..1")
        if not 0 <= self.kill < self.nodes:
            raise ConfigError("--kill must leave at least one node alive")
        if self.protocol not in ("v1", "v2"):
            raise ConfigError("--protocol must be v1 or v2")
        if not 1 <= self.v1_peers < self.nodes:
            raise ConfigError("--v1-peers must be within 1..nodes-1")
        if self.keys * self.providers_per_key >= 1 << 24:
            raise ConfigError("at most 16,777,215 records")


# -- names: deterministic, of realistic length (bytes on the wire depend on them) ----------


def _info_hash(k: int) -> str:
    return hashlib.blake2b(k.to_bytes(8, "big"), digest_size=20).hexdigest()


def _provider(r: int) -> AddrKey:
    """Record r's provider: 10.x.y.z:port as a compact key (6 bytes)."""
    return bytes((10, (r >> 16) & 255, (r >> 8) & 255, r & 255)) + (6881 + (r >> 24)).to_bytes(
        2, "big"
    )


def _peer_id(r: int) -> bytes:
    return b"-SM0100-" + r.to_bytes(6, "big").hex().encode()


def _node_addr(i: int) -> str:
    return f"10.{200 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}:7070"


# -- measurements ---------------------------------------------------------------------------


class _Spread:
    """One new announce on its way to every live node."""

    __slots__ = ("h", "have", "need99", "need100", "t0", "t99", "t100")

    def __init__(self, t0: int, home: int, live: int) -> None:
        self.t0 = t0
        self.h = 0  # its digest hash (v2)
        self.have = {home}
        self.need100 = live
        self.need99 = math.ceil(0.99 * live)
        self.t99: int | None = None
        self.t100: int | None = None


def _stats(values: Sequence[float | None]) -> dict[str, float | None]:
    """p50, p99 and max (nearest rank); None stands for "never", and sorts last."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    inf = math.inf
    xs = sorted(inf if v is None else v for v in values)

    def rank(q: float) -> float | None:
        v = xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]
        return None if v == inf else round(v, 3)

    return {"p50": rank(0.50), "p99": rank(0.99), "max": rank(1.0)}


# -- the nodes --------------------------------------------------------------------------------


class _Observer(QuietObserver):
    """What the simulation watches of a node's role: its membership events."""

    __slots__ = ("i", "sim")

    def __init__(self, sim: Simulation, i: int) -> None:
        self.sim = sim
        self.i = i

    def member_events(self, events: Sequence[MemberEvent], counts: Mapping[str, int]) -> None:
        self.sim.on_member_events(self.i, events)


class _Node:
    """One node: its store and its cluster role (the node's own :mod:`chisme.cluster` roles)
    on its attachment to the memory network. In v1 the attachment hands what arrives to the
    role, then tells the simulation which tracked records arrived (v2 sees them through the
    store's observer)."""

    __slots__ = ("clock", "i", "role", "sim", "transport")

    def __init__(self, sim: Simulation, i: int, transport: MemoryTransport) -> None:
        self.sim = sim
        self.i = i
        self.transport = transport
        self.clock = NetworkClock(sim.net, WALL0)
        self.role: V1Role | V2Role

    @property
    def store(self) -> Store:
        return self.role.store

    def deliver(self, src: str, msg: object) -> None:
        self.role.deliver(src, msg)
        tracked = self.sim.tracked
        if tracked and isinstance(msg, v1.Announce | v1.Gossip):
            get = self.store.get
            for rec in msg.records:
                key = (msg.info_hash, rec.addr)
                if key in tracked:
                    held = get(*key)
                    if held is not None and not held.flags & FLAG_TOMBSTONE:
                        self.sim.arrive(self.i, key)

    def on_timer(self) -> None:
        self.role.on_timer()

    def poke(self) -> None:
        """The store changed here (a refresh, a sweep): the role may have work sooner."""
        self.role.poke()

    def announce(self, info_hash: str, addr: AddrKey, peer_id: bytes, seeder: bool) -> Record:
        """A provider announces here, as through the node's services."""
        rec = self.store.announce(info_hash, addr, self.clock.wall_ns(), peer_id=peer_id,
                                  seeder=seeder)
        self.role.published(info_hash, rec)
        return rec


# -- the simulation -----------------------------------------------------------------------------


class Simulation:
    """Build with a :class:`SimConfig`, then :meth:`run`, then :meth:`summary`."""

    def __init__(
        self,
        config: SimConfig,
        *,
        progress: Callable[[str, float], None] | None = None,
    ) -> None:
        self.config = config
        self.progress = progress
        self.rng = random.Random(config.seed)
        self.work_rng = random.Random(self.rng.getrandbits(64))
        self.net = MemoryNetwork(
            NodeCodec(),
            rng=random.Random(self.rng.getrandbits(64)),
            latency_ns=int(config.latency_ms * MS),
            loss=config.loss,
            verify=config.verify_codec,
        )
        self.ttl_ns = int(config.ttl_s * S)
        self.warmup_ns = int(config.warmup_s * S)
        self.end_ns = self.warmup_ns + int(config.duration_s * S)
        n = config.nodes
        self.addrs = [_node_addr(i) for i in range(n)]
        self.member_ids = [
            f"{self.rng.getrandbits(64):016x}.{self.rng.getrandbits(32):08x}" for _ in range(n)
        ]
        self.index_of_member = {m: i for i, m in enumerate(self.member_ids)}
        self.nodes: list[_Node] = []
        self.killed: set[int] = set()
        # workload: records (info hash, provider, peer id, seeder, home), refreshed round-robin
        self.rec_ih: list[str] = []
        self.rec_addr: list[AddrKey] = []
        self.rec_home: list[int] = []
        self.rec_pid: list[bytes] = []
        self.rec_seeder: list[bool] = []
        self._refresh_pos = 0
        self._refresh_credit = 0.0
        self._next_record = 0
        # measurements
        self.tracked: dict[tuple[str, AddrKey], _Spread] = {}
        self.spreads: list[_Spread] = []
        self.reach_hist = [0] * _REACH_BINS
        self.reach_expected = 0
        self.orphaned = 0  # announced at a node killed before anyone else had it
        self.kill_times: dict[int, int] = {}
        self.pending_dead: dict[int, set[int]] = {}
        self.detected: dict[int, int] = {}
        self.false_deaths = 0
        self.false_suspects = 0
        self.false_death_log: list[tuple[float, str, str]] = []
        self._partition_start: int | None = None
        self._heal_at: int | None = None
        self._heal_until = 0
        self._separated: list[int] = []
        self._dead_pairs: set[tuple[int, int]] | None = None
        self.heal_members_ns: int | None = None
        self.heal_records_ns: int | None = None
        self.peak_records = 0
        self.samples: list[tuple[float, int, float, int]] = []  # t, min, mean, max records
        self.marks: list[tuple[float, str]] = []
        self.wall_s = 0.0
        self.preload_wall_s = 0.0
        self._base_bytes: list[int] = []
        self._base_msgs: list[int] = []
        self._base_kinds: dict[str, list[int]] = {}
        self._grace_ns = self._suspicion_grace_ns()
        self._build()

    # -- building -------------------------------------------------------------------------

    def _suspicion_grace_ns(self) -> int:
        """How long after a partition a DEAD about the other side still counts as its doing:
        the longest suspicion timer plus a couple of probe rounds."""
        swim = self.config.cluster.swim
        base = suspicion_timeout_ns(swim.suspicion_mult, self.config.nodes, swim.probe_interval_ns)
        return swim.suspicion_max_timeout_mult * base + 3 * swim.probe_interval_ns

    def _build(self) -> None:
        cfg = self.config
        started = time.perf_counter()
        n = cfg.nodes
        stores: list[Store] = []
        for i in range(n):
            rng = random.Random(self.rng.getrandbits(64))
            node = _Node(self, i, MemoryTransport(self.net, self.addrs[i]))
            node.transport.attach(node)
            observer = _Observer(self, i)
            if cfg.protocol == "v2":
                seed = self.addrs[1 if i == 0 else 0]
                node.role = V2Role(
                    self._observed_store(i), node.transport, node.clock, rng, observer,
                    member_id=self.member_ids[i], addr=self.addrs[i], seeds=[seed],
                    config=cfg.cluster, v1_peers=[], v1_interval_s=cfg.v1_interval_s,
                    v1_jitter=cfg.v1_jitter,
                )
            else:
                others = [j for j in self.rng.sample(range(n), min(n, cfg.v1_peers + 2)) if j != i]
                ring = (i + 1) % n  # a ring edge keeps the static peer graph connected
                peers = [ring, *[j for j in others if j != ring]][: cfg.v1_peers]
                # nodes started at different times: rounds at a random phase
                node.role = V1Role(
                    Store(self.ttl_ns), node.transport, node.clock, rng, observer,
                    node_id=self.addrs[i],
                    peers=[self.addrs[j] for j in peers], interval_s=cfg.v1_interval_s,
                    jitter=cfg.v1_jitter,
                    first_round_ns=int(rng.random() * cfg.v1_interval_s * S),
                )
            stores.append(node.role.store)
            self.nodes.append(node)
        self._preload(stores)
        if cfg.protocol == "v2":
            self._preload_members()
        self.preload_wall_s = time.perf_counter() - started

    def _preload(self, stores: list[Store]) -> None:
        """The converged state: every record announced at its home (``Store.announce``, which
        versions it) and merged (``clamp=False`` in v2) into every other store.

        ``preload="announce"`` does exactly that, store by store (~6 us per record and
        node). ``preload="clone"`` (the default) announces each record once at its home,
        merges them all once into a reference store, and copies that store into each node
        (``Store.copy_from``, which continues the node's own origin's version counter): the
        same state, ten times faster (tests/test_sim.py checks that both give identical
        stores and runs). In v2 each node's digest is then a copy of one built once.
        """
        cfg = self.config
        n = cfg.nodes
        rng = self.work_rng
        v2 = cfg.protocol == "v2"
        clone = cfg.preload == "clone"
        homes_only = [_home_store(self.ttl_ns, s.local_origin) for s in stores] if clone else stores
        ref = Store(self.ttl_ns)
        for k in range(cfg.keys):
            ih = _info_hash(k)
            recs: list[Record] = []
            homes: list[int] = []
            for _ in range(cfg.providers_per_key):
                r = self._next_record
                self._next_record += 1
                h = rng.randrange(n)
                pid, seeder = _peer_id(r), rng.random() < 0.5
                rec = homes_only[h].announce(ih, _provider(r), WALL0, peer_id=pid, seeder=seeder)
                recs.append(rec)
                homes.append(h)
                self._add_record(ih, rec.addr, h, pid, seeder)
            if clone:
                ref.merge(ih, recs, WALL0, clamp=not v2)
            else:
                home_set = set(homes)
                for j in range(n):
                    mine = recs if j not in home_set else [
                        r for r, h in zip(recs, homes, strict=True) if h != j
                    ]
                    stores[j].merge(ih, mine, WALL0, clamp=not v2)
            if self.progress is not None and k % 256 == 0:
                self.progress("preload", k / max(1, cfg.keys))
        if clone:
            for j, (s, home) in enumerate(zip(stores, homes_only, strict=True)):
                # its own records carry versions from its counter: the next change continues it
                s.copy_from(ref, version=home.last_version)
                if self.progress is not None and j % 16 == 0:
                    self.progress("copy", j / n)
        for s in stores:
            s.drain_changes()  # converged: nothing left to rumor
        # providers refresh round-robin in a random order
        order = list(range(len(self.rec_ih)))
        rng.shuffle(order)
        self.rec_ih = [self.rec_ih[r] for r in order]
        self.rec_addr = [self.rec_addr[r] for r in order]
        self.rec_home = [self.rec_home[r] for r in order]
        self.rec_pid = [self.rec_pid[r] for r in order]
        self.rec_seeder = [self.rec_seeder[r] for r in order]
        if not v2:
            return
        digest = Digest()
        for info_hash, rec in stores[0].iter_all():
            digest.on_change(info_hash, None, rec)
        for node in self.nodes:  # as it would have converged
            assert isinstance(node.role, V2Role)
            _copy_digest(digest, node.role.engine.replicator.digest)

    def _add_record(self, ih: str, addr: AddrKey, home: int, pid: bytes, seeder: bool) -> None:
        self.rec_ih.append(ih)
        self.rec_addr.append(addr)
        self.rec_home.append(home)
        self.rec_pid.append(pid)
        self.rec_seeder.append(seeder)

    def _observed_store(self, i: int) -> Callable[[Replication], Store]:
        """Node i's store: its changes go to its digest and to the arrivals measured."""

        def make(replication: Replication) -> Store:
            observe = self._observer(i, replication.on_change)
            return Store(self.ttl_ns, replication=replication._replace(on_change=observe))

        return make

    def _observer(
        self, i: int, inner: Callable[[str, Record | None, Record | None], None] | None
    ) -> Callable[[str, Record | None, Record | None], None]:
        tracked = self.tracked
        arrive = self.arrive

        def observe(info_hash: str, old: Record | None, new: Record | None) -> None:
            if inner is not None:
                inner(info_hash, old, new)
            if tracked and new is not None and not new.flags & FLAG_TOMBSTONE:
                key = (info_hash, new.addr)
                if key in tracked:
                    arrive(i, key)

        return observe

    def _preload_members(self) -> None:
        state = [Alive(m, a, 0) for m, a in zip(self.member_ids, self.addrs, strict=True)]
        for node in self.nodes:
            assert isinstance(node.role, V2Role)
            node.role.engine.membership.merge_state(state, 0, rebroadcast=False)
            node.role.engine.membership.drain_events()

    # -- running --------------------------------------------------------------------------

    def run(self) -> None:
        cfg = self.config
        net = self.net
        started = time.perf_counter()
        for i, node in enumerate(self.nodes):
            # the nodes have been running: no join, their first tick arms their timers
            if isinstance(node.role, V2Role):
                net.set_timer(i, 0)
            else:
                node.role.start()
            phase = int(self.work_rng.random() * cfg.sweep_interval_s * S)
            net.call_at(phase, self._sweeper(i))
        net.call_at(0, self._refresh)
        net.call_at(self.warmup_ns, self._start_measuring)
        if cfg.announce_rate > 0:
            net.call_at(self.warmup_ns, self._schedule_announce)
        if cfg.kill:
            net.call_at(self.warmup_ns + int(cfg.kill_at_s * S), self._kill)
        if cfg.partition_s > 0:
            at = self.warmup_ns + int(cfg.partition_at_s * S)
            net.call_at(at, self._partition)
            net.call_at(at + int(cfg.partition_s * S), self._heal)
        step = S
        t = 0
        last_report = 0.0
        while t < self.end_ns:
            t = min(t + step, self.end_ns)
            net.run_until(t)
            self._sample()
            if self.progress is not None:
                now = time.perf_counter()
                if now - last_report >= 0.1 or t == self.end_ns:
                    last_report = now
                    self.progress("run", t / self.end_ns)
        self.wall_s = time.perf_counter() - started

    def _sweeper(self, i: int) -> Callable[[], None]:
        node = self.nodes[i]
        store = node.store
        net = self.net

        every = int(self.config.sweep_interval_s * S)

        def sweep() -> None:
            if i in self.killed:
                return
            store.sweep(WALL0 + net.now_ns, max_keys=_SWEEP_KEYS)
            node.poke()
            net.call_at(net.now_ns + every, sweep)

        return sweep

    def _refresh(self) -> None:
        """Every provider re-announces to its home node once per refresh_s, round-robin."""
        net = self.net
        total = len(self.rec_ih)
        if total:
            self._refresh_credit += total * _REFRESH_STEP_NS / (self.config.refresh_s * S)
            count = int(self._refresh_credit)
            self._refresh_credit -= count
            wall = WALL0 + net.now_ns
            nodes = self.nodes
            killed = self.killed
            pos = self._refresh_pos
            ihs, addrs, homes = self.rec_ih, self.rec_addr, self.rec_home
            pids, seeders = self.rec_pid, self.rec_seeder
            touched: set[int] = set()
            for _ in range(min(count, total)):
                if pos >= total:
                    pos = 0
                h = homes[pos]
                if h not in killed:
                    nodes[h].store.announce(ihs[pos], addrs[pos], wall, peer_id=pids[pos],
                                            seeder=seeders[pos])
                    touched.add(h)
                pos += 1
            self._refresh_pos = pos
            for h in touched:
                nodes[h].poke()
        net.call_at(net.now_ns + _REFRESH_STEP_NS, self._refresh)

    def _schedule_announce(self) -> None:
        net = self.net
        cfg = self.config
        at = net.now_ns + int(self.work_rng.expovariate(cfg.announce_rate) * S)
        settle = min(cfg.settle_s, cfg.duration_s / 2)  # a short run still announces
        if at < self.end_ns - int(settle * S):
            net.call_at(at, self._announce)

    def _announce(self) -> None:
        """A new provider announces a random key at a random live node."""
        cfg = self.config
        rng = self.work_rng
        live = [i for i in range(cfg.nodes) if i not in self.killed] if self.killed else None
        home = rng.choice(live) if live else rng.randrange(cfg.nodes)
        k = rng.randrange(max(1, cfg.keys))
        r = self._next_record
        self._next_record += 1
        ih, addr = _info_hash(k), _provider(r)
        spread = _Spread(self.net.now_ns, home, cfg.nodes - len(self.killed))
        self.tracked[ih, addr] = spread
        self.spreads.append(spread)
        self.reach_expected += spread.need100
        self.reach_hist[0] += 1
        pid, seeder = _peer_id(r), rng.random() < 0.5
        self._add_record(ih, addr, home, pid, seeder)
        rec = self.nodes[home].announce(ih, addr, pid, seeder)
        if rec.origin:
            spread.h = record_hash(ih, rec)
        self._check_spread((ih, addr), spread)
        self._schedule_announce()

    def arrive(self, i: int, key: tuple[str, AddrKey]) -> None:
        """Node i now holds the tracked record ``key``."""
        spread = self.tracked[key]
        if i in spread.have or i in self.killed:
            return
        spread.have.add(i)
        b = (self.net.now_ns - spread.t0) // _REACH_BIN_NS
        if b < _REACH_BINS:
            self.reach_hist[b] += 1
        self._check_spread(key, spread)

    def _check_spread(self, key: tuple[str, AddrKey], spread: _Spread) -> None:
        n = len(spread.have)
        now = self.net.now_ns
        if spread.t99 is None and n >= spread.need99:
            spread.t99 = now - spread.t0
        if n >= spread.need100:
            spread.t100 = now - spread.t0
            del self.tracked[key]

    # -- faults -------------------------------------------------------------------------

    def _kill(self) -> None:
        cfg = self.config
        net = self.net
        live = [i for i in range(cfg.nodes) if i not in self.killed]
        victims = self.work_rng.sample(live, cfg.kill)
        now = net.now_ns
        self.marks.append((now / S, f"kill {cfg.kill}"))
        for k in victims:
            net.kill(k)
            self.killed.add(k)
            self.kill_times[k] = now
        survivors = [i for i in live if i not in self.killed]
        for k in victims:
            self.pending_dead[k] = {
                i for i in survivors if not self._holds_dead(i, k)
            }
            self.pending_dead[k] -= self.killed
            if not self.pending_dead[k]:
                self.detected[k] = 0
                del self.pending_dead[k]
        for key, spread in list(self.tracked.items()):
            # the victims leave the population it must reach, and its holders
            spread.have -= self.killed
            if not spread.have:  # announced at a victim and held nowhere else: gone with it
                self.orphaned += 1
                self.spreads.remove(spread)
                del self.tracked[key]
                continue
            spread.need100 = max(1, spread.need100 - len(victims))
            spread.need99 = math.ceil(0.99 * spread.need100)
            self._check_spread(key, spread)
        if self._dead_pairs is not None:
            self._dead_pairs = {p for p in self._dead_pairs if not self.killed & set(p)}

    def _holds_dead(self, observer: int, subject: int) -> bool:
        node = self.nodes[observer]
        if not isinstance(node.role, V2Role):
            return False
        m = node.role.engine.membership.get(self.member_ids[subject])
        return m is not None and m.state in (MemberState.DEAD, MemberState.LEFT)

    def _partition(self) -> None:
        n = self.config.nodes
        side = list(range(n))
        self.work_rng.shuffle(side)
        groups = [0] * n
        for i in side[: n // 2]:
            groups[i] = 1
        self.net.partition(groups)
        self._partition_start = self.net.now_ns
        self.marks.append((self.net.now_ns / S, "partition"))

    def _heal(self) -> None:
        net = self.net
        now = net.now_ns
        n = self.config.nodes
        # pairs the partition separated: a DEAD between them is still its doing for a while
        self._separated = self.net.group
        self._heal_until = now + self._grace_ns
        net.heal()
        self._heal_at = now
        self.marks.append((now / S, "heal"))
        if self.config.protocol != "v2":
            return
        live = [i for i in range(n) if i not in self.killed]
        self._dead_pairs = {
            (i, j) for i in live for j in live if i != j and not self._holds_alive(i, j)
        }
        net.call_at(now, self._check_heal)

    def _holds_alive(self, observer: int, subject: int) -> bool:
        role = self.nodes[observer].role
        assert isinstance(role, V2Role)
        m = role.engine.membership.get(self.member_ids[subject])
        return m is not None and m.state in (MemberState.ALIVE, MemberState.SUSPECT)

    def _check_heal(self) -> None:
        assert self._heal_at is not None
        net = self.net
        now = net.now_ns
        if self.heal_members_ns is None and self._dead_pairs is not None and not self._dead_pairs:
            self.heal_members_ns = now - self._heal_at
        if self.heal_records_ns is None and self._stores_converged(self._heal_at):
            self.heal_records_ns = now - self._heal_at
        if self.heal_members_ns is None or self.heal_records_ns is None:
            net.call_at(now + _HEAL_CHECK_NS, self._check_heal)

    def _stores_converged(self, since_ns: int) -> bool:
        """Every live store holds the same replicated records, but for announces made since
        ``since_ns`` still spreading: every announce made before has reached every live
        node, and the digest roots agree once the younger ones are taken out (XOR)."""
        roots: dict[int, int] = {}
        for i, node in enumerate(self.nodes):
            if i not in self.killed and isinstance(node.role, V2Role):
                roots[i] = node.role.engine.replicator.digest.root
        for spread in self.tracked.values():
            if spread.t0 < since_ns:
                return False
            for i in spread.have:
                if i in roots:
                    roots[i] ^= spread.h
        return len(set(roots.values())) == 1

    def _separated_pair(self, i: int, j: int, now: int) -> bool:
        """Whether a partition separates i and j now, or did so within the grace period."""
        if self.net.group[i] != self.net.group[j]:
            return True
        if self._heal_at is not None and now <= self._heal_until:
            return self._separated[i] != self._separated[j]
        return False

    def on_member_events(self, i: int, events: Sequence[MemberEvent]) -> None:
        """Membership events at node i: detection of kills, false deaths, healing."""
        now = self.net.now_ns
        index = self.index_of_member
        for ev in events:
            j = index.get(ev.member.node_id)
            if j is None:
                continue
            kind = ev.kind
            if kind == "dead":
                if j in self.killed:
                    pending = self.pending_dead.get(j)
                    if pending is not None:
                        pending.discard(i)
                        if not pending:
                            self.detected[j] = now - self.kill_times[j]
                            del self.pending_dead[j]
                elif not self._separated_pair(i, j, now):
                    self.false_deaths += 1
                    if len(self.false_death_log) < 100:
                        self.false_death_log.append(
                            (now / S, self.member_ids[i], self.member_ids[j])
                        )
                if self._dead_pairs is not None and j not in self.killed:
                    self._dead_pairs.add((i, j))
            elif kind == "suspect":
                if j not in self.killed and not self._separated_pair(i, j, now):
                    self.false_suspects += 1
            elif kind in ("alive", "joined") and self._dead_pairs is not None:
                self._dead_pairs.discard((i, j))

    # -- sampling -----------------------------------------------------------------------

    def _start_measuring(self) -> None:
        tr = self.net.traffic
        self._base_bytes = list(tr.bytes_out)
        self._base_msgs = list(tr.msgs_out)
        self._base_kinds = {k: list(v) for k, v in tr.by_kind.items()}

    def _sample(self) -> None:
        counts = [
            node.store.num_records for i, node in enumerate(self.nodes) if i not in self.killed
        ]
        if not counts:
            return
        top = max(counts)
        self.peak_records = max(self.peak_records, top)
        self.samples.append((self.net.now_ns / S, min(counts), sum(counts) / len(counts), top))

    # -- results --------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        cfg = self.config
        tr = self.net.traffic
        secs = cfg.duration_s
        n = cfg.nodes
        base_b = self._base_bytes or [0] * n
        base_m = self._base_msgs or [0] * n
        total_bytes = sum(tr.bytes_out) - sum(base_b)
        total_msgs = sum(tr.msgs_out) - sum(base_m)
        per_node_s = n * secs
        by_kind = {}
        for kind, (count, size) in sorted(tr.by_kind.items()):
            base = self._base_kinds.get(kind, [0, 0])
            by_kind[kind] = {
                "msgs_per_node_per_s": round((count - base[0]) / per_node_s, 3),
                "bytes_per_node_per_s": round((size - base[1]) / per_node_s, 1),
            }
        bytes_pn = total_bytes / per_node_s
        idle = cfg.announce_rate == 0 and not cfg.kill and not cfg.partition_s
        spreads = self.spreads
        detect: dict[str, float | None] | None = None
        if cfg.kill:
            times = [
                None if k not in self.detected else self.detected[k] / S for k in self.kill_times
            ]
            detect = _stats(times) if cfg.protocol == "v2" else None
        heal: float | None = None
        if self.heal_members_ns is not None and self.heal_records_ns is not None:
            heal = max(self.heal_members_ns, self.heal_records_ns) / S
        return {
            "protocol": cfg.protocol,
            "nodes": n,
            "records": cfg.keys * cfg.providers_per_key,
            "keys": cfg.keys,
            "providers_per_key": cfg.providers_per_key,
            "virtual_s": secs,
            "warmup_s": cfg.warmup_s,
            "seed": cfg.seed,
            "loss": cfg.loss,
            "announce_rate": cfg.announce_rate,
            "announces": len(spreads),
            "reach99_s": _stats([None if s.t99 is None else s.t99 / S for s in spreads]),
            "reach100_s": _stats([None if s.t100 is None else s.t100 / S for s in spreads]),
            "reach_incomplete": sum(1 for s in spreads if s.t100 is None),
            "reach_orphaned": self.orphaned,
            "bytes_per_node_per_s": round(bytes_pn, 1),
            "msgs_per_node_per_s": round(total_msgs / per_node_s, 2),
            "idle_bytes_per_node_per_s": round(bytes_pn, 1) if idle else None,
            "by_kind": by_kind,
            "killed": len(self.kill_times),
            "detect_dead_s": detect,
            "false_deaths": self.false_deaths,
            "false_suspects": self.false_suspects,
            "peak_records_per_node": self.peak_records,
            "partition_s": cfg.partition_s or None,
            "heal_s": heal,
            "heal_members_s": None if self.heal_members_ns is None else self.heal_members_ns / S,
            "heal_records_s": None if self.heal_records_ns is None else self.heal_records_ns / S,
            "lost_msgs": tr.lost,
            "cut_msgs": tr.cut,
            "too_large_msgs": tr.too_large,
            "max_datagram_bytes": tr.max_datagram,
            "max_frame_bytes": tr.max_frame,
            "events": self.net.events_run,
            "preload_wall_s": round(self.preload_wall_s, 2),
            "wall_s": round(self.wall_s, 2),
        }

    # -- plots -----------------------------------------------------------------------------

    def plot(self, path: str) -> None:
        """Convergence and bandwidth over time, as a PNG (needs matplotlib: the 'plot' extra)."""
        try:
            import matplotlib  # noqa: PLC0415

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # noqa: PLC0415
        except ImportError:
            raise ConfigError("--plot needs matplotlib (pip install 'chisme[plot]')") from None
        cfg = self.config
        fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 10))
        if self.reach_expected:
            acc = 0
            xs: list[float] = []
            ys: list[float] = []
            for b, count in enumerate(self.reach_hist):
                acc += count
                xs.append((b + 1) * _REACH_BIN_NS / S)
                ys.append(100 * acc / self.reach_expected)
            last = max((b for b, c in enumerate(self.reach_hist) if c), default=0)
            ax1.step(xs[: last + 2], ys[: last + 2], where="post")
            ax1.set_ylim(0, 101)
            ax1.axhline(99, linestyle=":", color="grey")
        ax1.set_xlabel("seconds since the announce")
        ax1.set_ylabel("% of live nodes holding it")
        ax1.set_title(
            f"{cfg.protocol}: N={cfg.nodes}, {cfg.keys * cfg.providers_per_key} records, "
            f"loss {cfg.loss:g}: reach of {len(self.spreads)} new announces"
        )
        series = self.net.traffic.series[: int(self.end_ns // S)]  # whole seconds only
        ax2.plot(range(len(series)), [b / cfg.nodes / 1000 for b in series])
        ax2.set_xlabel("virtual seconds")
        ax2.set_ylabel("KB sent per node per s")
        ax2.set_ylim(bottom=0)
        ts = [s[0] for s in self.samples]
        ax3.plot(ts, [s[1] for s in self.samples], label="min")
        ax3.plot(ts, [s[2] for s in self.samples], label="mean")
        ax3.plot(ts, [s[3] for s in self.samples], label="max")
        ax3.set_xlabel("virtual seconds")
        ax3.set_ylabel("records per node")
        ax3.legend()
        for ax in (ax2, ax3):
            ax.axvline(cfg.warmup_s, linestyle=":", color="grey")
            for k, (t, label) in enumerate(self.marks):
                ax.axvline(t, linestyle="--", color="red")
                ax.annotate(label, (t, 0.9 - 0.1 * k), xycoords=("data", "axes fraction"),
                            fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def _home_store(ttl_ns: int, origin: int) -> Store:
    """A preload's store at one record's home: it stamps the home's origin and versions (the
    reference store gets its records, so it needs no digest and no outbox)."""
    return Store(ttl_ns, replication=Replication(origin, _ignore_change, lambda: False))


def _ignore_change(info_hash: str, old: Record | None, new: Record | None) -> None:
    pass


def _copy_digest(src: Digest, dst: Digest) -> None:
    dst.buckets[:] = src.buckets
    dst.groups[:] = src.groups
    dst.root = src.root
    dst.count = src.count
    dst.keys = [s.copy() for s in src.keys]


def simulate(
    config: SimConfig, *, progress: Callable[[str, float], None] | None = None
) -> Simulation:
    """Build, run and return a simulation (read :meth:`Simulation.summary`)."""
    sim = Simulation(config, progress=progress)
    sim.run()
    return sim
