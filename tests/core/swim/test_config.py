"""SwimConfig: memberlist's profiles, derived timeouts (memberlist util.go), bad values refused."""

from __future__ import annotations

import dataclasses

import pytest

from chisme.core.swim import SwimConfig, push_pull_interval_ns, suspicion_timeout_ns
from chisme.errors import ConfigError

MS = 1_000_000
S = 1_000_000_000


# ------------------------------------------------------------------------------------------
# Configuration


def test_profiles_follow_memberlist() -> None:
    lan, wan, local = SwimConfig.lan(), SwimConfig.wan(), SwimConfig.local()
    assert lan == SwimConfig()
    assert (lan.probe_interval_ns, lan.probe_timeout_ns) == (1 * S, 500 * MS)
    assert (lan.indirect_checks, lan.suspicion_mult, lan.suspicion_max_timeout_mult) == (3, 4, 6)
    assert (lan.awareness_max, lan.retransmit_mult, lan.gossip_nodes) == (8, 4, 3)
    assert lan.reconnect_interval_ns == lan.push_pull_interval_ns == 30 * S
    assert (wan.probe_interval_ns, wan.probe_timeout_ns, wan.suspicion_mult) == (5 * S, 3 * S, 6)
    assert (local.probe_timeout_ns, local.indirect_checks, local.suspicion_mult) == (200 * MS, 1, 3)


def test_derived_timeouts_match_research_table() -> None:
    # memberlist util.go suspicionTimeout, LAN profile (SuspicionMult 4, ProbeInterval 1 s):
    # min 4/8/12 s at N = 10/100/1000; max is 6x (SuspicionMaxTimeoutMult).
    assert [suspicion_timeout_ns(4, n, S) for n in (1, 5, 10, 100, 1000)] == [
        4 * S,
        4 * S,
        4 * S,
        8 * S,
        12 * S,
    ]
    # memberlist pushPullScale: 30 s up to 32 nodes, then 60 s, 90 s at 100, 180 s at 1000.
    assert [push_pull_interval_ns(30 * S, n) // S for n in (32, 33, 64, 65, 100, 1000)] == [
        30,
        60,
        60,
        90,
        90,
        180,
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"probe_interval_ns": 0},
        {"probe_timeout_ns": 1 * S},  # not shorter than the probe interval
        {"indirect_checks": -1},
        {"suspicion_mult": 0},
        {"retransmit_mult": 0},
        {"max_packet_bytes": 100},
        {"gossip_interval_ns": -1},
    ],
)
def test_config_rejects_bad_values(changes: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(SwimConfig.lan(), **changes)
