"""Lifeguard suspicion: the timer of one suspected member, shrinking as confirmations arrive.

[Lifeguard] LHA-suspicion, as memberlist suspicion.go and suspectNode implement it: a
suspicion starts at its maximum timeout and falls towards the minimum
(:func:`~chisme.core.swim.config.suspicion_timeout_ns`) as independent members confirm it.
The state machine keeps every live timer in a heap by deadline and decides what happens when
one fires, one last probe and then dead (``Membership._expire_suspicions``, ``_next_check``).
"""

from __future__ import annotations

import math

from chisme.core.swim.config import SwimConfig, suspicion_timeout_ns


class Suspicion:
    """Lifeguard's dynamic suspicion timer (memberlist suspicion.go).

    Starts at ``max`` (``min`` when no confirmations can be expected, k < 1) and, with n of the k
    wanted independent confirmations, falls to ``max - log(n+1)/log(k+1) * (max - min)``.
    The accuser itself does not count as a confirmation.
    """

    __slots__ = ("checking", "confirmers", "deadline_ns", "k", "max_ns", "min_ns", "n", "start_ns")

    def __init__(self, from_id: str, k: int, min_ns: int, max_ns: int, start_ns: int) -> None:
        self.k = k
        self.n = 0
        self.min_ns = min_ns
        self.max_ns = max_ns
        self.start_ns = start_ns
        self.confirmers = {from_id}
        self.deadline_ns = start_ns + (max_ns if k >= 1 else min_ns)
        self.checking = False  # timer fired; a last probe decides (see Membership._next_check)

    @classmethod
    def start(cls, from_id: str, config: SwimConfig, num_members: int, now_ns: int) -> Suspicion:
        """The suspicion ``from_id`` raises at ``now_ns`` in a cluster of ``num_members``."""
        # memberlist: k = mult - 2 confirmations wanted, none if the cluster cannot supply them
        # (n - 2: neither we nor the suspect can confirm).
        k = config.suspicion_mult - 2
        if num_members - 2 < k:
            k = 0
        min_ns = suspicion_timeout_ns(config.suspicion_mult, num_members, config.probe_interval_ns)
        max_ns = config.suspicion_max_timeout_mult * min_ns
        return cls(from_id, k, min_ns, max_ns, now_ns)

    def confirm(self, from_id: str) -> bool:
        """Count a new independent confirmation; False if duplicate or already at k."""
        if self.n >= self.k or from_id in self.confirmers:
            return False
        self.confirmers.add(from_id)
        self.n += 1
        frac = math.log(self.n + 1) / math.log(self.k + 1)
        timeout = max(self.min_ns, int(self.max_ns - frac * (self.max_ns - self.min_ns)))
        self.deadline_ns = self.start_ns + timeout
        return True
