"""SWIM + Lifeguard membership and failure detection, as a sans-I/O state machine.

Sources (behaviour is cited to them where it comes from):

- [SWIM] A. Das, I. Gupta, A. Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process
  Group Membership Protocol", DSN 2002. Random probing (§3.1), indirect probes through k members
  (§3.1), the suspicion sub-protocol with incarnation numbers (§4.2), piggybacked dissemination
  (§4.1), round-robin probe order over a shuffled list (§4.3).
- [Lifeguard] A. Dadgar, J. Phillips, J. Currey, "Lifeguard: Local Health Awareness for More
  Accurate Failure Detection", arXiv:1707.00788. Local health awareness (LHA-probe: a node that
  misses acks or nacks slows itself down), dynamic suspicion (LHA-suspicion: the timeout falls
  from max to min as independent confirmations arrive), the buddy system (tell a suspect it is
  suspected).
- [memberlist] hashicorp/memberlist @1b4c746 (state.go, suspicion.go, awareness.go, util.go,
  net.go), whose semantics this package follows; [Serf] hashicorp/serf, for reconnecting to failed
  members; docs/v2.md (§5, §8) for why chisme takes them.

What this package owns: the member table (``node_id`` -> addr, incarnation, state), the probe
cycle, suspicion timers, the broadcast queue of membership updates, and full-state push/pull. What
it does not: sockets, clocks, encoding, records (the store, replication: an import contract in
pyproject.toml holds it to ``chisme.core.broadcast`` and ``chisme.errors``). Time arrives as
``now_ns`` (a monotonic clock in integer ns), randomness as an injected :class:`random.Random`,
and every method returns the :class:`Send` s the shell must perform.

Where each part lives (a module per concept; this package re-exports the public names)::

    config.py      SwimConfig and its profiles (local / lan / wan), the timing formulas
    messages.py    Alive, Suspect, Dead (an Update); Ping, PingReq, Ack, Nack, Gossip, PushPull
                   (a Message); Send; estimate_size
    table.py       Member, MemberState, MemberEvent; the per-member Node record, state Pools,
                   random sampling over them
    suspicion.py   Lifeguard's Suspicion timer: its timeouts, shrinking with confirmations
    probe.py       the probe order (ProbeRing, SWIM §4.3), the Probe under way, a Relay for others
    membership.py  Membership, the state machine that applies the rules to all of the above

Names that the package does not re-export (``Node``, ``Pool``, ``sample``, ``Suspicion``,
``Probe``, ``ProbeRing``, ``Relay``, ``MAX_RELAYS``) are package-internal: shared between its
modules, not for use outside it.

Driving it (the shell's whole job)::

    m = Membership(node_id, "10.0.0.5:7070", SwimConfig.lan(), random.Random(), seeds=[...])
    send_all(m.join(now()))
    loop:
        on a packet from the network:  send_all(m.on_message(msg, piggyback, now()))
        when now() >= m.next_deadline_ns():  send_all(m.tick(now()))
        for ev in m.drain_events(): log / count / notify (joined, suspect, alive, dead, left)

``tick`` may also simply be called on a fixed cadence (every 10-50 ms is plenty: every deadline is
honoured at the first tick at or after it; a late tick never fires a probe early nor skips the
indirect phase). Deliver received messages *before* ticking, so that an ack that already arrived is
not mistaken for a missing one. Sends of :class:`PushPull` carry the full member table and belong on
a reliable stream (memberlist uses TCP for them); every other message is one small packet of at most
``max_packet_bytes`` (estimated) including its piggyback, fit for UDP.

Deviations from memberlist, each deliberate:

- Node identity is ``node_id`` (unique per *process incarnation*), not a reusable name: a restarted
  node is a new member, so no "dead node reclaim" of names is needed and an ``Alive`` with a higher
  incarnation may move a member to a new address. When a new member appears at the address of a
  dead or left one, the old entry is forgotten at once (it was replaced).
- No TCP fallback ping (the shell has no second transport in the core's view).
- Failed members are kept for ``reconnect_timeout_ns`` and retried Serf-style (one random failed
  member per ``reconnect_interval_ns``, with probability failed / alive so the cluster as a whole
  tries each about once per interval); seeds that are not live members are retried the same way.
  Both retries send a :class:`PushPull` request: this is what heals a partition with no manual step
  (memberlist alone never heals: it never probes or push/pulls a member it holds dead, and forgets
  the dead after ``GossipToTheDeadTime``, state.go).
- Forgotten members are quarantined for ``quarantine_ns`` (Cassandra's idea: Gossiper.java ignores
  gossip about a removed endpoint for ``QUARANTINE_DELAY``, 2 x ``RING_DELAY``):
  an ``Alive`` at or below the incarnation they were forgotten at is ignored, so stale gossip does
  not resurrect them; a genuine refutation (a higher incarnation) is accepted.
- Point-to-point repair when a sender and we disagree (``Membership._buddy``): a member that
  sends us anything while we hold it suspect or dead is told so (Lifeguard's buddy system,
  extended from probes to every message, and to the ack of its pings); a node that receives any
  accusation about itself, even a stale one below its incarnation, sends its current ``Alive``
  straight back to the sender. memberlist ignores stale accusations, so a member that missed
  every copy of a refutation keeps accusing a live node until its timer declares it dead.
  Gossip goes to alive and suspect members only; these rules and the reconnect retries replace
  memberlist's "gossip to the dead".
- Before a suspicion timer declares a member dead, one last probe (carrying the accusation) is
  sent; only if it fails too is the member declared dead (``Membership._next_check``).
- A probe that fails suspects the incarnation the target had when the probe *started*, so a
  refutation that arrives during the probe is not immediately re-accused.
"""

from chisme.core.swim.config import SwimConfig, push_pull_interval_ns, suspicion_timeout_ns
from chisme.core.swim.membership import NEVER_NS, Membership
from chisme.core.swim.messages import (
    Ack,
    Alive,
    Dead,
    Gossip,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Send,
    Suspect,
    Update,
    estimate_size,
)
from chisme.core.swim.table import EventKind, Member, MemberEvent, MemberState

__all__ = [
    "NEVER_NS",
    "Ack",
    "Alive",
    "Dead",
    "EventKind",
    "Gossip",
    "Member",
    "MemberEvent",
    "MemberState",
    "Membership",
    "Message",
    "Nack",
    "Ping",
    "PingReq",
    "PushPull",
    "Send",
    "Suspect",
    "SwimConfig",
    "Update",
    "estimate_size",
    "push_pull_interval_ns",
    "suspicion_timeout_ns",
]
