"""Origin numbers: 32 bits, never 0 (0 is a v1 record's), the same on every node."""

from __future__ import annotations

from chisme.core.records import MAX_ORIGIN
from chisme.core.replication.origins import origin_id


def test_an_origin_is_a_nonzero_32_bit_number_fixed_by_the_member_id() -> None:
    assert origin_id("node0") == 2718163315  # golden: every node computes the same
    ids = {origin_id(f"{i:016x}.0000002a") for i in range(2000)}
    assert all(1 <= o <= MAX_ORIGIN for o in ids)
    assert len(ids) == 2000  # a restart (another member id) is another origin
