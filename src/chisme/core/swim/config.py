"""SWIM's knobs: :class:`SwimConfig` with memberlist's named profiles, and the timing formulas.

The formulas scale with the cluster size N as memberlist's util.go does: the suspicion timeout
with log10(N), the push/pull interval with log2(N) past 32 members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chisme.errors import ConfigError

_MS = 1_000_000
_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class SwimConfig:
    """Every knob of the protocol, with memberlist's LAN values as defaults (config.go @1b4c746).

    Use :meth:`lan`, :meth:`wan` or :meth:`local`, then ``dataclasses.replace`` to adjust.
    Intervals set to 0 switch that activity off (gossip, push/pull, reconnect).
    """

    probe_interval_ns: int = 1 * _S
    """Time between probes, and how long a probe waits for any ack before suspecting (SWIM T')."""
    probe_timeout_ns: int = 500 * _MS
    """Wait for the direct ack before asking ``indirect_checks`` members to probe (SWIM §3.1).
    Not scaled by health: waiting longer does not help a lost packet (memberlist state.go)."""
    indirect_checks: int = 3
    """Members asked to probe on our behalf when the direct ack is late (SWIM k)."""
    suspicion_mult: int = 4
    """Suspicion minimum = mult * max(1, log10(N)) * probe_interval (memberlist util.go)."""
    suspicion_max_timeout_mult: int = 6
    """Suspicion maximum = this * minimum; the timeout starts here (Lifeguard LHA-suspicion)."""
    awareness_max: int = 8
    """Health score bound: probe intervals stretch up to this factor (Lifeguard LHA-probe)."""
    retransmit_mult: int = 4
    """Each update is sent mult * ceil(log10(N + 1)) times (memberlist util.go)."""
    gossip_interval_ns: int = 200 * _MS
    """How often queued updates go to ``gossip_nodes`` random members (0: piggyback only)."""
    gossip_nodes: int = 3
    """Fanout of each gossip round."""
    gossip_to_dead_ns: int = 30 * _S
    """How long a member that *left* is kept before it is forgotten (memberlist GossipToTheDead)."""
    reconnect_interval_ns: int = 30 * _S
    """How often to retry one failed member or one seed that is not a live member (Serf)."""
    reconnect_timeout_ns: int = 24 * 3600 * _S
    """How long a *failed* member is kept (and retried) before it is forgotten (Serf: 24 h)."""
    quarantine_ns: int = 3600 * _S
    """How long a forgotten member's incarnation is remembered so stale gossip cannot revive it."""
    push_pull_interval_ns: int = 30 * _S
    """Full state exchange with one random member, scaled up past 32 members (memberlist)."""
    max_packet_bytes: int = 1200
    """Budget of one packet message with its piggyback (docs/v2.md §1: a datagram <= 1200 B)."""
    max_queued_broadcasts: int = 4096
    """Bound of the broadcast queue; the most-sent updates are dropped first."""
    max_events: int = 4096
    """Bound of undrained events; the oldest are dropped first (see ``events_dropped``)."""
    max_dead_members: int = 4096
    """Bound of failed members kept for reconnects; the longest dead are forgotten first
    (memberlist#253: dead and left entries that are never reaped make push/pull grow forever)."""
    max_tombstones: int = 65536
    """Bound of forgotten ids remembered for quarantine; the oldest are dropped first."""

    def __post_init__(self) -> None:
        positive = {
            "probe_interval_ns": self.probe_interval_ns,
            "probe_timeout_ns": self.probe_timeout_ns,
            "suspicion_mult": self.suspicion_mult,
            "suspicion_max_timeout_mult": self.suspicion_max_timeout_mult,
            "awareness_max": self.awareness_max,
            "retransmit_mult": self.retransmit_mult,
            "gossip_to_dead_ns": self.gossip_to_dead_ns,
            "reconnect_timeout_ns": self.reconnect_timeout_ns,
            "quarantine_ns": self.quarantine_ns,
            "max_queued_broadcasts": self.max_queued_broadcasts,
            "max_events": self.max_events,
            "max_dead_members": self.max_dead_members,
            "max_tombstones": self.max_tombstones,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be positive")
        non_negative = {
            "indirect_checks": self.indirect_checks,
            "gossip_interval_ns": self.gossip_interval_ns,
            "gossip_nodes": self.gossip_nodes,
            "reconnect_interval_ns": self.reconnect_interval_ns,
            "push_pull_interval_ns": self.push_pull_interval_ns,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{name} must not be negative")
        if self.probe_timeout_ns >= self.probe_interval_ns:
            raise ConfigError("probe_timeout_ns must be shorter than probe_interval_ns")
        if self.max_packet_bytes < 256:
            raise ConfigError("max_packet_bytes must be at least 256")

    @classmethod
    def lan(cls) -> SwimConfig:
        """memberlist DefaultLANConfig: 1 s probes, 500 ms timeout, suspicion 4, gossip 200 ms/3."""
        return cls()

    @classmethod
    def wan(cls) -> SwimConfig:
        """memberlist DefaultWANConfig: 5 s probes, 3 s timeout, suspicion 6, gossip 500 ms/4."""
        return cls(
            probe_interval_ns=5 * _S,
            probe_timeout_ns=3 * _S,
            suspicion_mult=6,
            gossip_interval_ns=500 * _MS,
            gossip_nodes=4,
            gossip_to_dead_ns=60 * _S,
            push_pull_interval_ns=60 * _S,
        )

    @classmethod
    def local(cls) -> SwimConfig:
        """memberlist DefaultLocalConfig (loopback, tests): 200 ms timeout, 1 indirect, mult 3."""
        return cls(
            probe_interval_ns=1 * _S,
            probe_timeout_ns=200 * _MS,
            indirect_checks=1,
            suspicion_mult=3,
            retransmit_mult=2,
            gossip_interval_ns=100 * _MS,
            gossip_nodes=3,
            gossip_to_dead_ns=15 * _S,
            reconnect_interval_ns=10 * _S,
            reconnect_timeout_ns=3600 * _S,
            quarantine_ns=600 * _S,
            push_pull_interval_ns=15 * _S,
        )


def suspicion_timeout_ns(suspicion_mult: int, num_nodes: int, probe_interval_ns: int) -> int:
    """The suspicion *minimum*: ``mult * max(1, log10(N)) * interval`` (memberlist util.go).

    LAN values: 4 s up to 10 nodes, 8 s at 100, 12 s at 1,000; the maximum is 6 times that.
    """
    scale = max(1.0, math.log10(max(1, num_nodes)))
    return int(suspicion_mult * scale * probe_interval_ns)


def push_pull_interval_ns(interval_ns: int, num_nodes: int) -> int:
    """memberlist util.go ``pushPullScale``: x(ceil(log2 N - log2 32) + 1) once N > 32."""
    if num_nodes <= 32:
        return interval_ns
    return interval_ns * (math.ceil(math.log2(num_nodes) - 5) + 1)
