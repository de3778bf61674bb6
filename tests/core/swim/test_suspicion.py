"""Lifeguard suspicion: the timer on its own, then on one node fed by hand: the timeout falls with
independent confirmations, and one last probe decides before a suspect is declared dead.
"""

from __future__ import annotations

import math
import random

from chisme.core.swim import (
    Ack,
    Alive,
    Gossip,
    Member,
    Membership,
    MemberState,
    Ping,
    PingReq,
    Send,
    Suspect,
    SwimConfig,
)
from chisme.core.swim.suspicion import Suspicion

MS = 1_000_000
S = 1_000_000_000

ALIVE = MemberState.ALIVE
SUSPECT = MemberState.SUSPECT
DEAD = MemberState.DEAD


# ------------------------------------------------------------------------------------------
# The timer on its own


def test_the_timer_falls_from_max_to_min_with_independent_confirmations() -> None:
    # LAN at N = 10: min 4 s, max 6 x 4 s, k = suspicion_mult - 2 = 2 confirmations wanted.
    s = Suspicion.start("p1", SwimConfig.lan(), 10, 1 * S)
    assert (s.k, s.min_ns, s.max_ns, s.deadline_ns) == (2, 4 * S, 24 * S, 25 * S)
    assert not s.confirm("p1")  # the accuser is not a confirmation
    assert s.confirm("p2")
    assert s.deadline_ns == 1 * S + int(24 * S - math.log(2) / math.log(3) * (20 * S))
    assert not s.confirm("p2")  # nor is a duplicate
    assert s.confirm("p3")
    assert s.deadline_ns == 1 * S + 4 * S  # n = k: the minimum
    assert not s.confirm("p4")
    assert s.deadline_ns == 5 * S


def test_a_cluster_too_small_to_confirm_starts_at_the_minimum() -> None:
    s = Suspicion.start("p1", SwimConfig.lan(), 3, 0)  # n - 2 = 1 < k = 2 (memberlist)
    assert (s.k, s.deadline_ns) == (0, 4 * S)
    assert not s.confirm("p2")


# ------------------------------------------------------------------------------------------
# One node, fed by hand (what it sends is inspected, nothing is delivered)


def state_of(m: Membership, about: str) -> MemberState | None:
    member = m.get(about)
    return None if member is None else member.state


def lone(config: SwimConfig | None = None, *, seed: int = 7) -> Membership:
    return Membership("me", "10.9.9.9:1", config or SwimConfig.lan(), random.Random(seed))


def with_peers(n: int, config: SwimConfig | None = None) -> Membership:
    m = lone(config)
    m.merge_state([Alive(f"p{i}", f"10.1.0.{i}:1", 0) for i in range(n)], 0, rebroadcast=False)
    m.drain_events()
    return m


def run_answering(
    m: Membership, start: int, until: int, silent: set[str], step: int = 100 * MS
) -> list[tuple[int, Send]]:
    """Tick ``m`` every ``step``; every member but ``silent`` answers its pings at once.
    Returns what ``m`` sent to silent members (and PingReqs, which nobody answers)."""
    log: list[tuple[int, Send]] = []
    for t in range(start, until, step):
        for send in m.tick(t):
            msg = send.msg
            if isinstance(msg, Ping) and msg.target_id not in silent:
                m.on_message(Ack(msg.seq, msg.target_id), (), t)
            elif isinstance(msg, Ping | PingReq):
                log.append((t, send))
    return log


def last_probe(m: Membership, t: int) -> Ping:
    for send in m.tick(t):
        if isinstance(send.msg, Ping) and send.msg.target_id == "p0":
            return send.msg
    raise AssertionError("no last probe")


# ------------------------------------------------------------------------------------------
# Through the state machine


def test_suspicion_timeout_falls_with_independent_confirmations() -> None:
    # LAN, 10 members: min 4 s, max 24 s, k = 2 confirmations wanted.
    m = with_peers(9)
    m.on_message(Gossip("p1"), (Suspect("p0", 0, "p1"),), 0)
    assert m.next_deadline_ns() <= 1 * S  # a probe; the suspicion itself is due at 24 s
    m.on_message(Gossip("p1"), (Suspect("p0", 0, "p1"),), 0)  # the accuser does not confirm
    m.on_message(Gossip("p2"), (Suspect("p0", 0, "p2"),), 1 * S)  # n=1: 24 - log2/log3*20 s
    m.on_message(Gossip("p3"), (Suspect("p0", 0, "p3"),), 2 * S)  # n=2: the minimum, 4 s
    log = run_answering(m, 0, 3_900 * MS, silent={"p0"})
    assert all(t < 3_900 * MS for t, _ in log)
    assert state_of(m, "p0") is SUSPECT
    # At 4 s the timer fires and one last probe, carrying the accusation, decides.
    log = run_answering(m, 4 * S, 6 * S, silent={"p0"})
    first_t, first = log[0]
    assert first_t == 4 * S
    assert isinstance(first.msg, Ping) and first.msg.target_id == "p0"
    assert first.piggyback[0] == Suspect("p0", 0, "me")  # Lifeguard buddy system
    assert any(isinstance(send.msg, PingReq) for _, send in log)  # then indirect
    dead = [ev for ev in m.drain_events() if ev.kind == "dead"]
    assert [(ev.member.node_id, ev.member.state_since_ns) for ev in dead] == [("p0", 5 * S)]


def test_suspicion_without_confirmations_uses_the_minimum_in_small_clusters() -> None:
    # 3 members: n - 2 = 1 < k = 2, so no confirmations are expected (memberlist).
    m = with_peers(2)
    m.on_message(Gossip("p1"), (Suspect("p0", 0, "p1"),), 0)
    log = run_answering(m, 0, 3_900 * MS, silent={"p0"})
    assert all(isinstance(send.msg, Ping | PingReq) for _, send in log)
    m.tick(4 * S)
    assert state_of(m, "p0") is SUSPECT  # the last probe is under way
    run_answering(m, 4 * S, 6 * S, silent={"p0"})
    assert state_of(m, "p0") is DEAD


def test_last_probe_answered_with_a_refutation_clears_the_suspicion() -> None:
    m = with_peers(2)
    m.on_message(Gossip("p1"), (Suspect("p0", 0, "p1"),), 0)
    run_answering(m, 0, 4 * S, silent=set())  # bare acks: alive, but no refutation yet
    ping = last_probe(m, 4 * S)
    # p0 was accused in the ping, so its ack carries its current Alive (see Membership._buddy).
    m.on_message(Ack(ping.seq, "p0"), (Alive("p0", "10.1.0.0:1", 1),), 4 * S + 5 * MS)
    run_answering(m, 4 * S + 100 * MS, 30 * S, silent=set())
    assert m.get("p0") == Member("p0", "10.1.0.0:1", 1, ALIVE, 4 * S + 5 * MS)


def test_last_probe_acked_without_a_refutation_defers_the_verdict() -> None:
    m = with_peers(2)
    m.on_message(Gossip("p1"), (Suspect("p0", 0, "p1"),), 0)
    run_answering(m, 0, 4 * S, silent=set())  # bare acks: alive, but no refutation yet
    ping = last_probe(m, 4 * S)
    m.on_message(Ack(ping.seq, "p0"), (), 4 * S + 600 * MS)  # e.g. relayed: no incarnation
    m.tick(5 * S)
    assert state_of(m, "p0") is SUSPECT
    # Another minimum timeout later it is probed again; silence this time: dead.
    log = run_answering(m, 5 * S, 12 * S, silent={"p0"})
    assert state_of(m, "p0") is DEAD
    assert any(t >= 8 * S and isinstance(send.msg, Ping) for t, send in log)
