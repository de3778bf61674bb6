"""The in-memory network twin: a virtual clock and one event heap that move messages between
in-process endpoints, with latency, loss, partitions and killed nodes, and count the bytes the
real codecs would put on the wire.

What it models (and what it does not):

- **time** is a virtual monotonic clock in integer ns (:attr:`MemoryNetwork.now_ns`); nothing
  sleeps. Every event (a delivery, an endpoint's timer, a scheduled call) sits in one heap and
  runs in time order, ties in the order they were scheduled, so a run is a pure function of
  its seed.
- **unreliable** messages (UDP datagrams) take ``latency_ns`` +-50 % and are lost
  independently with probability ``loss``; one over the codec's datagram cap is dropped, as
  the real transport refuses to send it.
- **reliable** messages (TCP frames) are never lost and keep their order between a pair of
  endpoints (a constant ``latency_ns``); they fail only when the two ends are partitioned
  apart or the receiver is killed, at sending or at delivery (a broken connection). Bytes of
  a frame that could not be sent (no connection) are not counted.
- **timers**: each endpoint has one timer (:meth:`MemoryNetwork.set_timer`); moving it leaves
  the old heap entry stale, skipped when popped. An endpoint is ticked only when its timer is
  due, never on a fixed step.
- **bytes and messages** are counted per sending endpoint from the codec's exact encoding
  (:class:`Codec`), also when the message is then lost. With ``verify=True`` every message is
  encoded and decoded by the real codec and the decoded object is delivered.

Not modelled: bandwidth and queueing delay, TCP/UDP/IP headers, connection handshakes (v2's
``Hello`` once per pair), asymmetric partitions.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from chisme.core.replication.engine import SwimPacket
from chisme.wire import v1, v2

NEVER_NS = 2**63 - 1

_DELIVER = 0
_TIMER = 1
_CALL = 2


class Endpoint(Protocol):
    """What the network drives: a node (or a test double) at one address."""

    def deliver(self, src: str, msg: object) -> None:
        """A message from ``src`` arrived (the network's ``now_ns`` is the arrival time)."""

    def on_timer(self) -> None:
        """The timer set with :meth:`MemoryNetwork.set_timer` is due."""


class Codec(Protocol):
    """The wire format whose bytes are counted."""

    max_datagram_bytes: int

    def measure(self, msg: object, reliable: bool) -> tuple[int, str]:
        """Bytes on the wire (datagram or frame, with its envelope) and a kind label."""

    def roundtrip(self, msg: object, reliable: bool) -> object:
        """Encode and decode with the real codec (``verify=True``)."""


class Batch(NamedTuple):
    """Several messages sent to one peer at the same moment (a v1 gossip round: one message
    per key), moved as one event; ``size`` and ``messages`` are the exact totals of its parts."""

    msgs: tuple[object, ...]
    size: int
    messages: int
    kind: str


class V2Codec:
    """chisme v2 (wire/v2.py): datagrams are preface + cluster tag + msgpack, frames a 4-byte
    length + msgpack."""

    max_datagram_bytes = v2.MAX_DATAGRAM_BYTES

    def __init__(self, cluster: str = "chisme") -> None:
        self.tag = v2.cluster_tag(cluster)
        self._envelope = len(v2.PREFACE) + len(self.tag)

    def measure(self, msg: object, reliable: bool) -> tuple[int, str]:
        body = len(v2.encode(msg))
        kind = type(msg.msg).__name__ if isinstance(msg, SwimPacket) else type(msg).__name__
        return body + (4 if reliable else self._envelope), kind

    def roundtrip(self, msg: object, reliable: bool) -> object:
        if reliable:
            reader = v2.FrameReader(1 << 24, expect_preface=False)
            (decoded,) = reader.feed(v2.encode_frame(msg))
            return decoded
        return v2.decode_datagram(self.tag, v2.encode_datagram(self.tag, msg))


class V1Codec:
    """The seed's JSON messages (wire/v1.py), one TCP connection each (reliable only)."""

    max_datagram_bytes = 0

    def measure(self, msg: object, reliable: bool) -> tuple[int, str]:
        if not isinstance(msg, v1.Announce | v1.Gossip | v1.Lookup):
            raise TypeError(f"not a v1 message: {type(msg).__name__}")
        return len(v1.encode_message(msg)), type(msg).__name__

    def roundtrip(self, msg: object, reliable: bool) -> object:
        if not isinstance(msg, v1.Announce | v1.Gossip | v1.Lookup):
            raise TypeError(f"not a v1 message: {type(msg).__name__}")
        return v1.decode_message(v1.encode_message(msg))


class Traffic:
    """Counters of what was sent: per endpoint, per kind, and per time step (for plots)."""

    def __init__(self, step_ns: int) -> None:
        self.step_ns = step_ns
        self.bytes_out: list[int] = []
        self.msgs_out: list[int] = []
        self.by_kind: dict[str, list[int]] = {}  # kind -> [messages, bytes]
        self.series: list[int] = []  # bytes sent cluster-wide per step
        self.lost = 0  # unreliable messages lost at random
        self.cut = 0  # messages dropped by a partition or a killed receiver
        self.too_large = 0  # datagrams over the codec's cap, never sent
        self.max_datagram = 0  # the largest datagram sent, bytes
        self.max_frame = 0  # the largest reliable message sent, bytes

    def add(self, src: int, size: int, count: int, kind: str, now_ns: int) -> None:
        self.bytes_out[src] += size
        self.msgs_out[src] += count
        entry = self.by_kind.get(kind)
        if entry is None:
            entry = self.by_kind[kind] = [0, 0]
        entry[0] += count
        entry[1] += size
        step = now_ns // self.step_ns
        series = self.series
        if step >= len(series):
            series.extend([0] * (step + 1 - len(series)))
        series[step] += size


class MemoryNetwork:
    """Endpoints on a virtual clock (see the module docstring)."""

    def __init__(
        self,
        codec: Codec,
        *,
        rng: random.Random,
        latency_ns: int = 1_000_000,
        loss: float = 0.0,
        verify: bool = False,
        series_step_ns: int = 1_000_000_000,
    ) -> None:
        if not 0.0 <= loss <= 1.0:
            raise ValueError("loss must be within 0..1")
        self.codec = codec
        self.rng = rng
        self.latency_ns = latency_ns
        self.loss = loss
        self.verify = verify
        self.now_ns = 0
        self.traffic = Traffic(series_step_ns)
        self.events_run = 0
        # (time, seq, kind, endpoint or -1, source endpoint, message or callable)
        self._heap: list[tuple[int, int, int, int, int, object]] = []
        self._seq = 0
        self._endpoints: list[Endpoint] = []
        self._index: dict[str, int] = {}
        self.addrs: list[str] = []
        self.alive: list[bool] = []
        self.group: list[int] = []  # partition side; equal groups can talk
        self._timer_at: list[int] = []

    # -- topology ---------------------------------------------------------------------

    def attach(self, addr: str, endpoint: Endpoint) -> int:
        """Add an endpoint at ``addr``; returns its index."""
        if addr in self._index:
            raise ValueError(f"address {addr} is taken")
        i = len(self._endpoints)
        self._endpoints.append(endpoint)
        self._index[addr] = i
        self.addrs.append(addr)
        self.alive.append(True)
        self.group.append(0)
        self._timer_at.append(NEVER_NS)
        self.traffic.bytes_out.append(0)
        self.traffic.msgs_out.append(0)
        return i

    def index_of(self, addr: str) -> int | None:
        return self._index.get(addr)

    def kill(self, i: int) -> None:
        """Stop endpoint ``i`` for good: no timers, nothing delivered to it any more."""
        self.alive[i] = False
        self._timer_at[i] = NEVER_NS

    def partition(self, groups: Sequence[int]) -> None:
        """Split the endpoints: ``groups[i]`` is endpoint i's side; only equal sides talk."""
        if len(groups) != len(self.group):
            raise ValueError("one group per endpoint")
        self.group = list(groups)

    def heal(self) -> None:
        self.group = [0] * len(self.group)

    def connected(self, a: int, b: int) -> bool:
        return self.group[a] == self.group[b]

    # -- sending and scheduling -------------------------------------------------------

    def send(self, src: int, to: str, msg: object, reliable: bool) -> None:
        """Send ``msg`` from endpoint ``src`` to the endpoint at ``to`` (see module docstring)."""
        dst = self._index.get(to, -1)
        traffic = self.traffic
        if isinstance(msg, Batch):
            size, count, kind = msg.size, msg.messages, msg.kind
        else:
            size, kind = self.codec.measure(msg, reliable)
            count = 1
        now = self.now_ns
        if reliable:
            if dst < 0 or not self.alive[dst] or self.group[src] != self.group[dst]:
                traffic.cut += count
                return  # no connection: nothing goes on the wire
            traffic.add(src, size, count, kind, now)
            if count == 1 and size > traffic.max_frame:
                traffic.max_frame = size
            delay = self.latency_ns
        else:
            if size > self.codec.max_datagram_bytes:
                traffic.too_large += 1
                return
            traffic.add(src, size, count, kind, now)
            traffic.max_datagram = max(traffic.max_datagram, size)
            if dst < 0:
                return
            if self.loss and self.rng.random() < self.loss:
                traffic.lost += 1
                return
            half = self.latency_ns >> 1
            delay = half + int(self.rng.random() * (self.latency_ns + 1))
        if self.verify:
            msg = self._roundtrip(msg, reliable)
        self._seq += 1
        heapq.heappush(self._heap, (now + delay, self._seq, _DELIVER, dst, src, msg))

    def _roundtrip(self, msg: object, reliable: bool) -> object:
        if isinstance(msg, Batch):
            parts = tuple(self.codec.roundtrip(m, reliable) for m in msg.msgs)
            return Batch(parts, msg.size, msg.messages, msg.kind)
        return self.codec.roundtrip(msg, reliable)

    def set_timer(self, i: int, at_ns: int) -> None:
        """Endpoint ``i``'s single timer fires at ``at_ns`` (replacing any earlier setting)."""
        if at_ns == self._timer_at[i] or not self.alive[i]:
            return
        self._timer_at[i] = at_ns
        if at_ns < NEVER_NS:
            self._seq += 1
            heapq.heappush(self._heap, (at_ns, self._seq, _TIMER, i, -1, None))

    def timer_of(self, i: int) -> int:
        return self._timer_at[i]

    def call_at(self, at_ns: int, fn: Callable[[], object]) -> None:
        """Run ``fn()`` at virtual time ``at_ns`` (workload, faults, sampling)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(at_ns, self.now_ns), self._seq, _CALL, -1, -1, fn))

    # -- running ----------------------------------------------------------------------

    def run_until(self, end_ns: int) -> None:
        """Run every event due at or before ``end_ns``; then the clock reads ``end_ns``."""
        heap = self._heap
        pop = heapq.heappop
        endpoints = self._endpoints
        addrs = self.addrs
        alive = self.alive
        timer_at = self._timer_at
        n = 0
        while heap and heap[0][0] <= end_ns:
            t, _, kind, i, src, obj = pop(heap)
            self.now_ns = t
            n += 1
            if kind == _DELIVER:
                group = self.group
                if not alive[i] or group[i] != group[src]:
                    self.traffic.cut += obj.messages if isinstance(obj, Batch) else 1
                    continue
                endpoints[i].deliver(addrs[src], obj)
            elif kind == _TIMER:
                if timer_at[i] != t or not alive[i]:
                    continue  # moved or killed since
                timer_at[i] = NEVER_NS
                endpoints[i].on_timer()
            else:
                fn: Callable[[], object] = obj  # type: ignore[assignment]
                fn()
        self.events_run += n
        self.now_ns = max(self.now_ns, end_ns)

    def pending(self) -> int:
        return len(self._heap)
