"""The membership messages: frozen values, distinct by type, with a size estimate."""

from __future__ import annotations

import dataclasses

import pytest

from chisme.core.swim import Dead, Message, Ping, Suspect, estimate_size

# ------------------------------------------------------------------------------------------
# Messages


def test_messages_are_frozen_and_distinct_by_type() -> None:
    s, d = Suspect("a", 1, "b"), Dead("a", 1, "b")
    same_fields: list[object] = [s, d]
    assert same_fields[0] != same_fields[1]  # dataclasses compare by type, unlike NamedTuples
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.incarnation = 2  # type: ignore[misc]
    msg: Message = Ping(1, "a", "b", "c")
    assert estimate_size(msg) > 0


def test_a_dead_sent_by_the_node_itself_means_left() -> None:
    # memberlist encodes a graceful leave as a dead message a node sends about itself.
    assert Dead("a", 3, "a").left
    assert not Dead("a", 3, "b").left
