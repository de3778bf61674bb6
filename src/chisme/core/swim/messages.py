"""The membership messages and updates, as plain frozen dataclasses, and their size estimate.

Fields are primitive so the v2 codec (``wire/v2.py``) can serialise them as they are. An
:data:`Update` is one member's state as gossip carries it (piggybacked on any packet, or a
full state's entries); a :data:`Message` is what one packet or stream frame is; a
:class:`Send` is the state machine's order to the shell.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Alive:
    """``node_id`` is alive at ``addr`` with ``incarnation`` (SWIM §4.2 "Alive")."""

    node_id: str
    addr: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class Suspect:
    """``from_id`` suspects ``node_id`` at ``incarnation`` (SWIM §4.2 "Suspect")."""

    node_id: str
    incarnation: int
    from_id: str


@dataclass(frozen=True, slots=True)
class Dead:
    """``from_id`` declares ``node_id`` dead (SWIM "Confirm"); ``from_id == node_id`` means *left*.

    memberlist encodes a graceful leave the same way: a dead message a node sends about itself.
    """

    node_id: str
    incarnation: int
    from_id: str

    @property
    def left(self) -> bool:
        return self.from_id == self.node_id


Update = Alive | Suspect | Dead
"""A membership update: what rides piggyback and what a full state is a list of."""


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe. ``target_id`` guards against a new process at an old address (memberlist)."""

    seq: int
    target_id: str
    source_id: str
    source_addr: str


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to probe ``target`` for us and relay its ack (SWIM ping-req)."""

    seq: int
    target_id: str
    target_addr: str
    source_id: str
    source_addr: str


@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to a :class:`Ping`; ``source_id`` is the probed node (also when relayed)."""

    seq: int
    source_id: str


@dataclass(frozen=True, slots=True)
class Nack:
    """A relay's "the target did not answer me either" (Lifeguard: lets the prober judge itself)."""

    seq: int
    source_id: str


@dataclass(frozen=True, slots=True)
class Gossip:
    """A packet that exists only to carry piggybacked updates (memberlist gossip())."""

    source_id: str


@dataclass(frozen=True, slots=True)
class PushPull:
    """A full state exchange (memberlist push/pull). A request is answered with ``reply=True``.

    Sent on join, periodically for anti-entropy, and to retry failed members and seeds. Its size
    grows with the member table: send it over a stream, not a packet.
    """

    source_id: str
    source_addr: str
    states: tuple[Update, ...]
    reply: bool = False


Message = Ping | PingReq | Ack | Nack | Gossip | PushPull


@dataclass(frozen=True, slots=True)
class Send:
    """What the shell must send: ``msg`` with ``piggyback`` (possibly empty) to ``to_addr``."""

    to_addr: str
    msg: Message
    piggyback: tuple[Update, ...] = ()


def estimate_size(obj: Message | Update) -> int:
    """Rough encoded size in bytes (msgpack-like: a few bytes of framing plus the strings).

    Used to fill packets up to ``max_packet_bytes``; the codec must still enforce real limits.
    """
    if isinstance(obj, Alive):
        return 10 + len(obj.node_id) + len(obj.addr)
    if isinstance(obj, Suspect | Dead):
        return 10 + len(obj.node_id) + len(obj.from_id)
    if isinstance(obj, Ping):
        return 12 + len(obj.target_id) + len(obj.source_id) + len(obj.source_addr)
    if isinstance(obj, PingReq):
        return (
            14
            + len(obj.target_id)
            + len(obj.target_addr)
            + len(obj.source_id)
            + len(obj.source_addr)
        )
    if isinstance(obj, Ack | Nack):
        return 8 + len(obj.source_id)
    if isinstance(obj, Gossip):
        return 4 + len(obj.source_id)
    return 8 + len(obj.source_id) + len(obj.source_addr) + sum(map(estimate_size, obj.states))
