"""The simulator (chisme.sim) and its in-memory network (chisme.net.memory).

Small clusters on the virtual clock: convergence, v2 against v1 on the same workload, a kill
detected by every survivor, a partition that heals, determinism, the real codecs on every
message, and ``chisme simulate --json`` through the real entry point.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest

from chisme.cluster.v1 import V1Role
from chisme.cluster.v2 import V2Role
from chisme.core.records import FLAG_TOMBSTONE
from chisme.core.replication import Digest
from chisme.errors import ConfigError
from chisme.net.memory import Batch, MemoryNetwork, NodeCodec
from chisme.sim import S, SimConfig, Simulation, simulate
from chisme.wire import v1

SMALL = SimConfig(nodes=24, keys=100, providers_per_key=10, duration_s=40, announce_rate=2)


def _replicated(sim: Simulation, i: int) -> set[tuple[Any, ...]]:
    """What a node holds live, as replicas must agree on it (stamps refresh at home only)."""
    store = sim.nodes[i].store
    return {
        (ih, r.addr, r.origin, r.version, r.flags)
        for ih, r in store.iter_all()
        if not r.flags & FLAG_TOMBSTONE
    }


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("wall_s", "preload_wall_s")}


# -- the network twin -----------------------------------------------------------------------


class _Recorder:
    def __init__(self, net: MemoryNetwork) -> None:
        self.net = net
        self.got: list[tuple[int, str, object]] = []
        self.ticks: list[int] = []

    def deliver(self, src: str, msg: object) -> None:
        self.got.append((self.net.now_ns, src, msg))

    def on_timer(self) -> None:
        self.ticks.append(self.net.now_ns)


def _pair(loss: float = 0.0) -> tuple[MemoryNetwork, _Recorder, _Recorder]:
    net = MemoryNetwork(NodeCodec(), rng=random.Random(3), loss=loss, latency_ns=1000)
    a, b = _Recorder(net), _Recorder(net)
    net.attach("10.0.0.1:7070", a)
    net.attach("10.0.0.2:7070", b)
    return net, a, b


def _announce(n: int) -> v1.Announce:
    from chisme.core.keys import parse_addr  # noqa: PLC0415
    from chisme.core.records import Record  # noqa: PLC0415

    return v1.Announce("ab" * 20, [Record(parse_addr(f"10.1.0.{n}:6881"), 10**18 + n)])


def test_reliable_messages_arrive_in_order_and_are_counted_from_the_codec() -> None:
    net, _, b = _pair(loss=1.0)  # loss never touches reliable messages
    msgs = [_announce(n) for n in range(1, 20)]
    for m in msgs:
        net.send(0, "10.0.0.2:7070", m, True)
    net.run_until(10**6)
    assert [m for _, _, m in b.got] == msgs
    assert net.traffic.bytes_out[0] == sum(len(v1.encode_message(m)) for m in msgs)
    assert net.traffic.msgs_out == [19, 0]


def test_unreliable_messages_are_lost_independently_and_still_counted() -> None:
    net = MemoryNetwork(NodeCodec(), rng=random.Random(5), loss=0.3)
    a, b = _Recorder(net), _Recorder(net)
    net.attach("10.0.0.1:7070", a)
    net.attach("10.0.0.2:7070", b)
    from chisme.core.replication import SyncOk  # noqa: PLC0415

    for k in range(2000):
        net.send(0, "10.0.0.2:7070", SyncOk(k), False)
    net.run_until(S)
    assert 1200 < len(b.got) < 1600
    assert net.traffic.lost == 2000 - len(b.got)
    assert net.traffic.msgs_out[0] == 2000


def test_partitions_and_kills_cut_messages_and_timers() -> None:
    net, a, b = _pair()
    net.partition([0, 1])
    net.send(0, "10.0.0.2:7070", _announce(1), True)
    net.run_until(10**6)
    assert not b.got and net.traffic.bytes_out[0] == 0  # no connection, no bytes
    net.heal()
    net.send(0, "10.0.0.2:7070", _announce(2), True)
    net.partition([0, 1])  # cut while in flight
    net.run_until(2 * 10**6)
    assert not b.got
    net.heal()
    net.set_timer(1, 5 * 10**6)
    net.set_timer(1, 4 * 10**6)  # replaces the earlier setting
    net.set_timer(0, 4 * 10**6)
    net.kill(0)
    net.run_until(10 * 10**6)
    assert b.ticks == [4 * 10**6] and a.ticks == []


def test_a_batch_is_one_event_with_exact_totals_and_verify_decodes_every_part() -> None:
    net, _, b = _pair()
    net.verify = True
    parts = (_announce(1), _announce(2))
    size = sum(len(v1.encode_message(m)) for m in parts)
    net.send(0, "10.0.0.2:7070", Batch(parts, size, 2, "Announce"), True)
    net.run_until(10**6)
    ((_, src, got),) = b.got
    assert src == "10.0.0.1:7070"
    assert isinstance(got, Batch) and got.msgs == parts and got.msgs[0] is not parts[0]
    assert net.traffic.msgs_out[0] == 2 and net.traffic.bytes_out[0] == size


# -- the simulation -------------------------------------------------------------------------


def test_v2_converges_every_announce_reaches_every_node() -> None:
    sim = simulate(SMALL)
    s = sim.summary()
    assert s["announces"] > 30
    assert s["reach_incomplete"] == 0 and s["reach100_s"]["max"] is not None
    assert s["false_deaths"] == 0
    first = _replicated(sim, 0)
    assert len(first) == 1000 + s["announces"]
    for i in range(1, SMALL.nodes):
        assert _replicated(sim, i) == first
    roots = {n.role.engine.replicator.digest.root for n in sim.nodes if isinstance(n.role, V2Role)}
    assert len(roots) == 1


def test_the_preloaded_digest_is_the_one_the_store_implies() -> None:
    sim = Simulation(replace(SMALL, nodes=6, keys=40))
    for node in sim.nodes:
        assert isinstance(node.role, V2Role)
        fresh = Digest()
        for ih, rec in node.store.iter_all():
            fresh.on_change(ih, None, rec)
        held = node.role.engine.replicator.digest
        assert (held.root, held.count, list(held.buckets)) == (
            fresh.root, fresh.count, list(fresh.buckets)
        )


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_the_cloned_preload_is_the_announce_and_merge_preload(protocol: str) -> None:
    cfg = replace(SMALL, nodes=8, keys=50, duration_s=25, protocol=protocol)  # type: ignore[arg-type]
    slow = Simulation(replace(cfg, preload="announce"))
    fast = Simulation(cfg)
    for x, y in zip(slow.nodes, fast.nodes, strict=True):
        assert x.store.snapshot() == y.store.snapshot()
        assert x.store.local_origin == y.store.local_origin
        assert x.store.num_records == y.store.num_records
    slow.run()
    fast.run()
    assert _comparable(slow.summary()) == _comparable(fast.summary())
    # the next change at a node continues its origin's version counter
    for x, y in zip(slow.nodes, fast.nodes, strict=True):
        a = x.store.announce("cd" * 20, b"\x0a\x09\x09\x09\x1a\xe1", 2 * 10**18)
        b = y.store.announce("cd" * 20, b"\x0a\x09\x09\x09\x1a\xe1", 2 * 10**18)
        assert a == b


def test_every_message_survives_the_real_codec_unchanged() -> None:
    cfg = replace(SMALL, nodes=12, keys=40, duration_s=30, loss=0.05, kill=1)
    plain = simulate(cfg).summary()
    checked = simulate(replace(cfg, verify_codec=True)).summary()
    assert _comparable(plain) == _comparable(checked)
    v1_cfg = replace(cfg, protocol="v1", kill=0, nodes=8)
    assert _comparable(simulate(v1_cfg).summary()) == _comparable(
        simulate(replace(v1_cfg, verify_codec=True)).summary()
    )


def test_v2_costs_a_small_fraction_of_v1_on_the_same_workload() -> None:
    # v1 moves a record one static-peer hop per 8 s round: give its announces time to land
    cfg = replace(SMALL, nodes=20, keys=100, duration_s=60, settle_s=44, announce_rate=1)
    two = simulate(cfg)
    one = simulate(replace(cfg, protocol="v1"))
    s1, s2 = one.summary(), two.summary()
    assert s2["bytes_per_node_per_s"] < 0.1 * s1["bytes_per_node_per_s"]
    assert s1["reach_incomplete"] == 0  # v1 spreads too, one gossip hop per round
    assert s1["reach100_s"]["p50"] > s2["reach100_s"]["max"]
    assert s1["detect_dead_s"] is None and s1["heal_s"] is None
    first = {(ih, a) for ih, a, *_ in _replicated(one, 0)}
    for i in range(1, cfg.nodes):
        assert {(ih, a) for ih, a, *_ in _replicated(one, i)} == first
    assert all(isinstance(n.role, V1Role) and len(n.role.peers) == 3 for n in one.nodes)


def test_a_killed_node_is_declared_dead_by_every_survivor() -> None:
    cfg = replace(SMALL, nodes=30, keys=20, duration_s=45, kill=2, loss=0.1)
    sim = simulate(cfg)
    s = sim.summary()
    assert s["killed"] == 2
    assert s["detect_dead_s"]["max"] is not None and not sim.pending_dead
    assert s["false_deaths"] == 0
    for i, node in enumerate(sim.nodes):
        if i in sim.killed:
            continue
        assert isinstance(node.role, V2Role)
        for k in sim.killed:
            member = node.role.engine.membership.get(sim.member_ids[k])
            assert member is None or member.state.value == "dead"


def test_a_partition_heals_and_the_stores_reconverge() -> None:
    # 150 s apart: the other side's origins are dead and their leases lapse, so each side
    # loses the other's records; after the heal anti-entropy brings them back
    cfg = replace(SMALL, nodes=20, keys=30, announce_rate=0, partition_s=150, duration_s=230,
                  partition_at_s=5, sweep_interval_s=5)
    sim = Simulation(cfg)
    low: list[int] = []
    sim.net.call_at(sim.warmup_ns + 150 * S, lambda: low.append(
        min(n.store.num_records for n in sim.nodes)))
    sim.run()
    s = sim.summary()
    assert low and low[0] < 300  # records were really lost during the partition ...
    assert s["heal_s"] is not None  # ... and came back
    assert s["false_deaths"] == 0
    assert all(n.store.num_records == 300 for n in sim.nodes)


def test_a_fixed_seed_gives_the_same_run() -> None:
    cfg = replace(SMALL, nodes=16, keys=30, duration_s=30, loss=0.1, kill=1)
    a, b = simulate(cfg).summary(), simulate(cfg).summary()
    assert _comparable(a) == _comparable(b)
    c = simulate(replace(cfg, seed=2)).summary()
    assert _comparable(c) != _comparable(a)


@pytest.mark.parametrize(
    ("field", "value"),
    [("nodes", 1), ("loss", 1.5), ("kill", 24), ("duration_s", 0), ("v1_peers", 24),
     ("announce_rate", -1)],
)
def test_bad_settings_are_config_errors(field: str, value: float) -> None:
    with pytest.raises(ConfigError):
        replace(SMALL, **{field: value})


def test_cli_json_is_one_object_with_the_documented_keys() -> None:
    cmd = [sys.executable, "-m", "chisme.cli", "simulate", "--nodes", "12", "--keys", "20",
           "--duration-s", "25", "--kill", "1", "--announce-rate", "2", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    assert out.stderr == ""  # no progress bar off a terminal
    s = json.loads(out.stdout)
    for key in ("protocol", "nodes", "records", "virtual_s", "bytes_per_node_per_s",
                "msgs_per_node_per_s", "false_deaths", "peak_records_per_node"):
        assert key in s
    assert (s["protocol"], s["nodes"], s["records"], s["virtual_s"]) == ("v2", 12, 200, 25.0)
    for key in ("reach99_s", "reach100_s", "detect_dead_s"):
        assert set(s[key]) == {"p50", "p99", "max"}
        assert all(isinstance(v, float) for v in s[key].values())
    assert isinstance(s["false_deaths"], int) and s["peak_records_per_node"] >= 200
    # the same seed in another process (another string hash seed) gives the same run
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"})
    assert _comparable(json.loads(again.stdout)) == _comparable(s)
    idle = [sys.executable, "-m", "chisme.cli", "simulate", "--nodes", "8", "--keys", "5",
            "--duration-s", "10", "--announce-rate", "0", "--json"]
    s = json.loads(subprocess.run(idle, capture_output=True, text=True, timeout=120,
                                  check=True).stdout)
    assert s["detect_dead_s"] is None and s["idle_bytes_per_node_per_s"] > 0
    assert s["reach99_s"] == {"p50": None, "p99": None, "max": None}


def test_cli_errors_are_one_line() -> None:
    cmd = [sys.executable, "-m", "chisme.cli", "simulate", "--nodes", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["chisme: error: --nodes must be at least 2"]


def test_plot_writes_a_png(tmp_path: Any) -> None:
    pytest.importorskip("matplotlib")
    sim = simulate(replace(SMALL, nodes=10, keys=10, duration_s=20, kill=1))
    path = tmp_path / "sim.png"
    sim.plot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_refresh_is_never_rumored_even_when_a_delta_carries_its_fresh_stamp() -> None:
    """Anti-entropy Deltas from a record's origin carry its refreshed stamp; a replica keeps
    the fresher stamp but must not rumor it (the same origin version), or every refresh
    would cost cluster-wide traffic again."""
    sim = Simulation(replace(SMALL, nodes=30, keys=1000, duration_s=40, announce_rate=3))
    republished: list[tuple[str, int]] = []
    for node in sim.nodes:
        assert isinstance(node.role, V2Role)
        rep = node.role.engine.replicator
        held = {(ih, r.addr, r.origin, r.version) for ih, r in node.store.iter_all()}
        inner = rep.publish

        def publish(changes: Any, rep: Any = rep, held: Any = held, inner: Any = inner) -> None:
            changes = list(changes)
            for ih, r in changes:
                key = (ih, r.addr, r.origin, r.version)
                if key in held:
                    republished.append((ih, r.version))
                held.add(key)
            inner(changes)

        rep.publish = publish  # type: ignore[method-assign]
    sim.run()
    assert sim.summary()["announces"] > 60
    assert republished == []


def test_the_lease_holders_follow_membership_through_suspicions_and_deaths() -> None:
    """ClusterEngine keeps its live-origin set from membership events: after a lossy run
    with kills (many suspect/alive events, deaths) it equals a scan of the member table."""
    from chisme.core.replication import origin_id  # noqa: PLC0415
    from chisme.core.swim import MemberState  # noqa: PLC0415

    sim = simulate(replace(SMALL, nodes=30, keys=10, duration_s=40, kill=3, loss=0.2))
    for i, node in enumerate(sim.nodes):
        if i in sim.killed:
            continue
        assert isinstance(node.role, V2Role)
        engine = node.role.engine
        scan = {
            origin_id(m.node_id)
            for m in engine.members()
            if m.state in (MemberState.ALIVE, MemberState.SUSPECT)
        }
        assert set(engine._live_origins()) == scan
        assert len(scan) == 27


def test_a_big_repair_syncs_in_bursts() -> None:
    """After a partition each side lacks the other's records (their leases lapsed): a sync
    that repaired many records is followed by the next one at once (sync_burst_ns), not a
    sync interval later."""
    from chisme.core.replication import ClusterConfig, ReplicationConfig  # noqa: PLC0415

    cfg = replace(SMALL, nodes=6, keys=1500, announce_rate=0, partition_s=120, partition_at_s=5,
                  duration_s=190, sweep_interval_s=5)
    burst = simulate(cfg).summary()
    paced = simulate(replace(cfg, cluster=ClusterConfig(
        replication=ReplicationConfig(sync_burst_ns=ReplicationConfig().sync_interval_ns)))).summary()
    assert burst["heal_records_s"] is not None and paced["heal_records_s"] is not None
    assert burst["heal_records_s"] * 2 < paced["heal_records_s"]
