"""The transport seam: how a node's cluster role sends, is woken, and asks other nodes.

A cluster role (:mod:`chisme.cluster`) is an :class:`Endpoint`: it is handed the messages that
arrive (``deliver``) and woken when its one timer is due (``on_timer``). What it sends, and
when it wants to be woken, goes through a :class:`Transport`. Two implementations:

- :class:`SocketTransport` (here): v2 datagrams and streams on the node port
  (:mod:`chisme.net.v2`), v1 messages over one TCP connection each (:mod:`chisme.net.tcp`),
  the timer on the asyncio loop;
- :class:`~chisme.net.memory.MemoryTransport`: the in-memory network, on its virtual clock,
  which the simulator and the tests drive with the very same cluster roles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from chisme.clock import Clock
from chisme.core.records import Record
from chisme.errors import ChismeError, PeerError
from chisme.net import tcp
from chisme.net.v2 import V2Transport
from chisme.wire import v1

log = logging.getLogger("chisme.net")

Spawn = Callable[[Coroutine[Any, Any, None]], object]
Count = Callable[[str, str, int], None]
"""``count(direction, kind, n)``: bytes ``in``/``out``, or a ``drop`` of ``n`` for a reason."""


class Endpoint(Protocol):
    """What a transport drives: the node's cluster role."""

    def deliver(self, src: str, msg: object) -> None:
        """A node-to-node message from ``src`` (a v2 message, or a v1 announce/gossip)."""
        ...

    def on_timer(self) -> None:
        """The time set with :meth:`Transport.set_timer` has come."""
        ...


class Transport(Protocol):
    """What a cluster role sends through (see the module docstring)."""

    def send(self, to: str, msg: object, reliable: bool) -> None:
        """A v2 message: a stream frame if ``reliable``, else one datagram. Never blocks;
        a message that cannot go is dropped and counted (the protocols repair losses)."""
        ...

    def send_v1(self, to: str, msgs: Sequence[v1.Message]) -> None:
        """v1 messages to a node of the original design, one TCP connection each, in the
        background, bounded: past the bound they are dropped and counted (the next round
        carries the same state)."""
        ...

    def set_timer(self, at_mono_ns: int) -> None:
        """Call the endpoint's ``on_timer`` at ``at_mono_ns`` (replacing the earlier time)."""
        ...


class Asker(Protocol):
    """How a node asks another node's store (an overlay lookup), on either transport."""

    async def ask(self, to: str, info_hash: str, timeout_s: float) -> list[Record]:
        """The live records ``to`` holds for ``info_hash``; PeerError if it cannot answer."""
        ...


class SocketTransport:
    """The node port's sockets behind the :class:`Transport` seam."""

    def __init__(
        self,
        *,
        clock: Clock,
        spawn: Spawn,
        count: Count,
        peer_timeout_s: float,
        max_message_bytes: int,
        max_concurrent_sends: int,
    ) -> None:
        self.clock = clock
        self.spawn = spawn
        self.count = count
        self.peer_timeout_s = peer_timeout_s
        self.max_message_bytes = max_message_bytes
        self.v2: V2Transport | None = None
        self.endpoint: Endpoint | None = None
        self._slots = asyncio.Semaphore(max_concurrent_sends)
        self._max_pending = max_concurrent_sends * 16
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = -1
        self._closed = False

    def attach(self, endpoint: Endpoint, v2: V2Transport | None) -> None:
        self.endpoint = endpoint
        self.v2 = v2

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- Transport ----------------------------------------------------------------------

    def send(self, to: str, msg: object, reliable: bool) -> None:
        if self.v2 is not None and not self._closed:
            self.v2.send(to, msg, reliable)

    def send_v1(self, to: str, msgs: Sequence[v1.Message]) -> None:
        if self._closed or not msgs:
            return
        if self._pending >= self._max_pending:
            self.count("drop", "backlog", len(msgs))
            return
        self._pending += 1
        self._idle.clear()
        try:
            self.spawn(self._send_all(to, [v1.encode_message(m) for m in msgs]))
        except RuntimeError:  # the node is stopping
            self._done()

    def set_timer(self, at_mono_ns: int) -> None:
        if self._closed or at_mono_ns == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at_mono_ns
        loop = asyncio.get_running_loop()
        delay_s = max(0.0, (at_mono_ns - self.clock.mono_ns()) / 1e9)
        self._timer = loop.call_later(delay_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = -1
        if self.endpoint is None or self._closed:
            return
        try:
            self.endpoint.on_timer()
        except Exception:
            log.exception("bug: the cluster timer failed")

    # -- v1 sends -------------------------------------------------------------------------

    async def _send_all(self, to: str, payloads: list[bytes]) -> None:
        """A few messages in flight per peer (the send slots bound the total), so a round
        over 10^5 keys never holds 10^5 coroutines at once."""
        try:
            for i in range(0, len(payloads), 16):
                batch = payloads[i : i + 16]
                await asyncio.gather(*(self._send_one(to, data) for data in batch))
        finally:
            self._done()

    def _done(self) -> None:
        self._pending -= 1
        if not self._pending:
            self._idle.set()

    async def flush(self) -> None:
        """Wait until every v1 send handed over so far has been sent or has failed."""
        await self._idle.wait()

    async def _send_one(self, to: str, data: bytes) -> None:
        async with self._slots:
            try:
                await tcp.send_message(to, data, self.peer_timeout_s)
            except PeerError as e:
                self.count("drop", type(e).__name__, 1)
                log.debug("send to %s failed: %s", to, e)
                return
        self.count("out", "v1", len(data))

    # -- Asker ----------------------------------------------------------------------------

    async def ask(self, to: str, info_hash: str, timeout_s: float) -> list[Record]:
        msg = v1.encode_message(v1.Lookup(info_hash, 0))
        try:
            raw = await tcp.request(to, msg, timeout_s, self.max_message_bytes)
            return v1.decode_providers(raw, self.max_message_bytes)
        except ChismeError as e:
            self.count("drop", type(e).__name__, 1)
            log.debug("lookup at %s failed: %s", to, e)
            raise
