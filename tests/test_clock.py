"""The clock seam."""

from __future__ import annotations

import time

import pytest

from chisme.clock import ManualClock, SystemClock


def test_the_system_clock_reads_the_os_clocks() -> None:
    c = SystemClock()
    before = time.time_ns()
    assert before <= c.wall_ns() <= time.time_ns()
    assert c.mono_ns() <= time.monotonic_ns()


def test_a_manual_clock_moves_both_readings_together_and_never_back() -> None:
    c = ManualClock(wall_ns=1_000, mono_ns=5)
    assert (c.wall_ns(), c.mono_ns()) == (1_000, 5)
    c.advance(1.5)
    assert (c.wall_ns(), c.mono_ns()) == (1_500_001_000, 1_500_000_005)
    with pytest.raises(ValueError):
        c.advance(-1)
    c.set_wall(7)  # an NTP step moves the wall clock only
    assert (c.wall_ns(), c.mono_ns()) == (7, 1_500_000_005)
