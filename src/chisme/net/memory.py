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

import asyncio
import heapq
import random
import selectors
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from chisme.core.records import Record
from chisme.core.replication.engine import SwimPacket
from chisme.net.errors import peer_errors
from chisme.net.transport import Endpoint
from chisme.wire import v1, v2

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

NEVER_NS = 2**63 - 1

_DELIVER = 0
_TIMER = 1
_CALL = 2


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


class Exchange(NamedTuple):
    """One half of a request/reply between two nodes (an overlay lookup over v1): the exact
    bytes a TCP connection would carry, decoded at the far end by the real codec."""

    id: int
    data: bytes
    reply: bool


class NodeCodec:
    """What travels between nodes: chisme v2 (wire/v2.py: datagrams are preface + cluster tag
    + msgpack, frames a 4-byte length + msgpack) and the original design's v1 JSON messages
    (wire/v1.py, one TCP connection each, reliable only)."""

    max_datagram_bytes = v2.MAX_DATAGRAM_BYTES

    def __init__(self, cluster: str = "chisme") -> None:
        self.tag = v2.cluster_tag(cluster)
        self._envelope = len(v2.PREFACE) + len(self.tag)

    def measure(self, msg: object, reliable: bool) -> tuple[int, str]:
        if isinstance(msg, v1.Announce | v1.Gossip | v1.Lookup):
            return len(v1.encode_message(msg)), type(msg).__name__
        body = len(v2.encode(msg))
        kind = type(msg.msg).__name__ if isinstance(msg, SwimPacket) else type(msg).__name__
        return body + (4 if reliable else self._envelope), kind

    def roundtrip(self, msg: object, reliable: bool) -> object:
        if isinstance(msg, v1.Announce | v1.Gossip | v1.Lookup):
            return v1.decode_message(v1.encode_message(msg))
        if reliable:
            reader = v2.FrameReader(1 << 24, expect_preface=False)
            (decoded,) = reader.feed(v2.encode_frame(msg))
            return decoded
        return v2.decode_datagram(self.tag, v2.encode_datagram(self.tag, msg))


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
        """Add an endpoint at ``addr``; returns its index. The address of a killed endpoint
        may be taken again (a process restarted on its port): same index, a new endpoint."""
        old = self._index.get(addr)
        if old is not None:
            if self.alive[old]:
                raise ValueError(f"address {addr} is taken")
            self._endpoints[old] = endpoint
            self.alive[old] = True
            return old
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
        if not self.alive[src]:
            return  # a killed endpoint sends nothing
        dst = self._index.get(to, -1)
        traffic = self.traffic
        if isinstance(msg, Batch):
            size, count, kind = msg.size, msg.messages, msg.kind
        elif isinstance(msg, Exchange):
            size, count, kind = len(msg.data), 1, "Answer" if msg.reply else "Ask"
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
        if isinstance(msg, Exchange):
            return msg  # bytes already: the receiver decodes them
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

    def next_event_ns(self) -> int:
        """When the earliest scheduled event is due (NEVER_NS if none; a timer moved since it
        was set still counts: running to it is harmless)."""
        return self._heap[0][0] if self._heap else NEVER_NS


# -- a node on the network ---------------------------------------------------------------------

WALL0_NS = 1_790_000_000 * 1_000_000_000
"""The wall time at virtual time 0 (a date in 2026), so stamps look like real ones."""


class NetworkClock:
    """The network's virtual time as a :class:`~chisme.clock.Clock`."""

    __slots__ = ("net", "wall0_ns")

    def __init__(self, net: MemoryNetwork, wall0_ns: int = WALL0_NS) -> None:
        self.net = net
        self.wall0_ns = wall0_ns

    def wall_ns(self) -> int:
        return self.wall0_ns + self.net.now_ns

    def mono_ns(self) -> int:
        return self.net.now_ns


Answer = Callable[[v1.Message, str, int], "bytes | None"]
"""How a node answers a v1 request: (message, from, size) -> reply bytes."""


class MemoryTransport:
    """One node's attachment to a :class:`MemoryNetwork`: the Transport and Asker seams of
    :mod:`chisme.net.transport` on virtual time. The network drives it as an endpoint and it
    hands messages on to the node's cluster role (``endpoint``); with ``answer`` (a node's
    node port) v1 messages go there instead, and v1 requests (``ask``) are answered by it at
    the far end, as over TCP."""

    def __init__(self, net: MemoryNetwork, addr: str) -> None:
        self.net = net
        self.addr = addr
        self.index = net.attach(addr, self)
        self.endpoint: Endpoint | None = None
        self.answer: Answer | None = None
        self._asks: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = 0
        self._last: tuple[Sequence[v1.Message], Batch] | None = None  # a round, to each peer

    def attach(self, endpoint: Endpoint, answer: Answer | None = None) -> None:
        self.endpoint = endpoint
        self.answer = answer

    async def close(self) -> None:
        """Leave the network: nothing more is sent or delivered (the address may be reused)."""
        self.net.kill(self.index)

    # -- Transport ------------------------------------------------------------------------

    def send(self, to: str, msg: object, reliable: bool) -> None:
        self.net.send(self.index, to, msg, reliable)

    def send_v1(self, to: str, msgs: Sequence[v1.Message]) -> None:
        if not msgs:
            return
        if len(msgs) == 1:
            self.net.send(self.index, to, msgs[0], True)
            return
        last = self._last
        if last is not None and last[0] is msgs:  # the same round to the next peer
            batch = last[1]
        else:
            size = sum(len(v1.encode_message(m)) for m in msgs)
            batch = Batch(tuple(msgs), size, len(msgs), type(msgs[0]).__name__)
            self._last = (msgs, batch)
        self.net.send(self.index, to, batch, True)

    def set_timer(self, at_mono_ns: int) -> None:
        self.net.set_timer(self.index, at_mono_ns)

    # -- Endpoint (driven by the network) ---------------------------------------------------

    def deliver(self, src: str, msg: object) -> None:
        if isinstance(msg, Exchange):
            self._exchange(src, msg)
            return
        if isinstance(msg, Batch):
            for part in msg.msgs:
                self._deliver(src, part)
        else:
            self._deliver(src, msg)

    def _deliver(self, src: str, msg: object) -> None:
        # a node's v1 input goes through its node port, as over TCP; the rest to its role
        if self.answer is not None and isinstance(msg, v1.Announce | v1.Gossip):
            self.answer(msg, src, len(v1.encode_message(msg)))
        elif self.endpoint is not None:
            self.endpoint.deliver(src, msg)

    def on_timer(self) -> None:
        if self.endpoint is not None:
            self.endpoint.on_timer()

    def _exchange(self, src: str, ex: Exchange) -> None:
        if ex.reply:
            fut = self._asks.pop(ex.id, None)
            if fut is not None and not fut.done():
                fut.set_result(ex.data)
            return
        if self.answer is None:
            return  # nothing listens: the asker times out, as against a silent port
        reply = self.answer(v1.decode_message(ex.data), src, len(ex.data))
        if reply:
            self.net.send(self.index, src, Exchange(ex.id, reply, True), True)

    # -- Asker ------------------------------------------------------------------------------

    async def ask(self, to: str, info_hash: str, timeout_s: float) -> list[Record]:
        self._next_id += 1
        ask_id = self._next_id
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._asks[ask_id] = fut
        data = v1.encode_message(v1.Lookup(info_hash, 0))
        self.net.send(self.index, to, Exchange(ask_id, data, False), True)
        try:
            with peer_errors(to, timeout_s):
                async with asyncio.timeout(timeout_s):
                    raw = await fut
        finally:
            self._asks.pop(ask_id, None)
        return v1.decode_providers(raw, 1 << 24)


class _VirtualSelector(selectors.BaseSelector):
    """A real selector that never waits: where the loop would sleep, the network runs its
    events up to the loop's next timer (or its own next event, if sooner)."""

    def __init__(self, net: MemoryNetwork) -> None:
        self.net = net
        self.real = selectors.DefaultSelector()

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self.real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self.real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self.real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self.real.select(0)
        if ready or timeout == 0:
            return ready
        net = self.net
        nxt = net.next_event_ns()
        if timeout is None:
            if nxt == NEVER_NS:
                return self.real.select(0.05)  # nothing scheduled anywhere: real sockets only
            net.run_until(nxt)
            return []
        deadline = net.now_ns + max(1, int(timeout * 1e9))
        net.run_until(min(nxt, deadline))
        return []

    def close(self) -> None:
        self.real.close()

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self.real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on a :class:`MemoryNetwork`'s virtual clock: ``time()`` is the
    network's, and instead of sleeping the loop runs the network's events (its timers, the
    nodes' deliveries) up to its own next timer. Whole nodes then run in virtual time, as
    fast as the CPU allows: a test of a 30 s failure detection takes milliseconds.

        net = MemoryNetwork(NodeCodec(), rng=random.Random(1))
        VirtualTimeLoop(net).run_until_complete(scenario(net))
    """

    def __init__(self, net: MemoryNetwork) -> None:
        super().__init__(_VirtualSelector(net))
        self.net = net

    def time(self) -> float:
        return self.net.now_ns / 1e9
