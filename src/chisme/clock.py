"""The node's two clocks, as one seam: wall time stamps records, monotonic time drives timers.

Every shell reads time through a :class:`Clock`, never through :mod:`time` inline, so a whole
node can run on the in-memory network's virtual time (:mod:`chisme.net.memory`) or on a clock a
test moves by hand (:class:`ManualClock`). Both readings are integer nanoseconds: ``wall_ns``
is what ``last_seen`` carries on the wire (docs/WIRE.md, Unix time), ``mono_ns`` never jumps
with the wall clock (probes, suspicion, deadlines).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where a node reads the time."""

    def wall_ns(self) -> int:
        """Unix time in ns: stamps records (``last_seen``)."""
        ...

    def mono_ns(self) -> int:
        """Monotonic time in ns: timers and deadlines."""
        ...


class SystemClock:
    """The operating system's clocks."""

    __slots__ = ()

    def wall_ns(self) -> int:
        return time.time_ns()

    def mono_ns(self) -> int:
        return time.monotonic_ns()


class ManualClock:
    """A clock moved by hand (``advance``); wall and monotonic time move together.

    It starts at the real wall time by default, so stamps look like today's to other code.
    """

    __slots__ = ("mono", "wall0")

    def __init__(self, wall_ns: int | None = None, mono_ns: int = 0) -> None:
        self.wall0 = (time.time_ns() if wall_ns is None else wall_ns) - mono_ns
        self.mono = mono_ns

    def wall_ns(self) -> int:
        return self.wall0 + self.mono

    def mono_ns(self) -> int:
        return self.mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.mono += int(seconds * 1e9)

    def set_wall(self, wall_ns: int) -> None:
        """Step the wall clock (as NTP or an operator would); monotonic time stays."""
        self.wall0 = wall_ns - self.mono
