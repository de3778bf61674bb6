"""The probe cycle on one node fed by hand: pings acked, round-robin order over a reshuffled ring
(SWIM §4.3), the indirect phase through ping-req relays (SWIM §3.1) and its nacks (Lifeguard).
"""

from __future__ import annotations

import random

from chisme.core.swim import (
    Ack,
    Alive,
    Membership,
    MemberState,
    Nack,
    Ping,
    PingReq,
    SwimConfig,
)

MS = 1_000_000
S = 1_000_000_000

ALIVE = MemberState.ALIVE
SUSPECT = MemberState.SUSPECT


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


def probe_once(m: Membership, now: int) -> tuple[Ping, str]:
    """Tick until m sends a Ping; return it with its destination."""
    for t in range(now, now + 3 * S, 10 * MS):
        for send in m.tick(t):
            if isinstance(send.msg, Ping):
                return send.msg, send.to_addr
    raise AssertionError("no probe")


# ------------------------------------------------------------------------------------------
# Answering probes


def test_ping_is_acked_to_its_source_with_piggyback() -> None:
    m = with_peers(3)
    sends = m.on_message(Ping(42, "me", "p0", "10.1.0.0:1"), (), 0)
    assert len(sends) == 1
    send = sends[0]
    assert send.to_addr == "10.1.0.0:1"
    assert send.msg == Ack(42, "me")
    assert Alive("me", "10.9.9.9:1", 0) in send.piggyback  # our own Alive rides first gossip


def test_ping_for_an_earlier_process_at_our_address_is_ignored() -> None:
    # memberlist handlePing: an id mismatch means the sender probes a node that is gone.
    m = lone()
    assert m.on_message(Ping(1, "someone-else", "p0", "10.1.0.0:1"), (), 0) == []


def test_ping_req_is_relayed_and_nacked_on_silence() -> None:
    m = with_peers(3)
    sends = m.on_message(PingReq(77, "p1", "10.1.0.1:1", "p0", "10.1.0.0:1"), (), 0)
    assert len(sends) == 1 and sends[0].to_addr == "10.1.0.1:1"
    relay_ping = sends[0].msg
    assert isinstance(relay_ping, Ping) and relay_ping.target_id == "p1"
    assert relay_ping.source_id == "me"
    # Ack from the target is forwarded with the requester's sequence number.
    fwd = m.on_message(Ack(relay_ping.seq, "p1"), (), 100 * MS)
    assert [(s.to_addr, s.msg) for s in fwd] == [("10.1.0.0:1", Ack(77, "p1"))]
    # A second relay that gets no ack sends a nack after the probe timeout.
    sends = m.on_message(PingReq(78, "p2", "10.1.0.2:1", "p0", "10.1.0.0:1"), (), 1 * S)
    nacks = [s for s in m.tick(1 * S + 500 * MS) if isinstance(s.msg, Nack)]
    assert [(s.to_addr, s.msg) for s in nacks] == [("10.1.0.0:1", Nack(78, "me"))]


# ------------------------------------------------------------------------------------------
# Probing


def test_probe_round_robin_covers_every_member_once_per_pass_never_self() -> None:
    m = with_peers(7)
    targets: list[str] = []
    t = 0
    for _ in range(21):
        ping, _addr = probe_once(m, t)
        targets.append(ping.target_id)
        t = m.next_deadline_ns()
        m.on_message(Ack(ping.seq, ping.target_id), (), t)
        t = m.next_deadline_ns()
    assert "me" not in targets
    for i in range(3):
        assert sorted(targets[7 * i : 7 * i + 7]) == [f"p{j}" for j in range(7)]
    assert targets[:7] != targets[7:14]  # reshuffled each pass (SWIM §4.3)


def test_failed_probe_goes_indirect_then_suspects() -> None:
    m = with_peers(5)
    ping, _ = probe_once(m, 0)
    start = m.next_deadline_ns() - SwimConfig.lan().probe_timeout_ns
    # Direct timeout: PingReq to the 3 other members (never us, never the target).
    sends = m.tick(start + SwimConfig.lan().probe_timeout_ns)
    reqs = [(s.to_addr, s.msg) for s in sends if isinstance(s.msg, PingReq)]
    assert len(reqs) == 3
    assert all(req.target_id == ping.target_id and req.seq == ping.seq for _, req in reqs)
    target = m.get(ping.target_id)
    assert target is not None
    assert not {target.addr, m.self_addr} & {addr for addr, _ in reqs}
    # One relay nacks, two are silent; the period ends with no ack: suspect.
    m.on_message(Nack(ping.seq, "p9"), (), start + 700 * MS)
    m.tick(start + 1 * S)
    assert state_of(m, ping.target_id) is SUSPECT
    assert m.health_score == 2  # Lifeguard: 3 expected nacks, 1 received


def test_indirect_ack_completes_the_probe() -> None:
    m = with_peers(5)
    ping, _ = probe_once(m, 0)
    t = m.next_deadline_ns()
    m.tick(t)  # indirect phase
    m.on_message(Ack(ping.seq, ping.target_id), (), t + 100 * MS)
    m.tick(t + 2 * S)
    assert state_of(m, ping.target_id) is ALIVE
