"""chisme's v1 extensions: fields and types a node of the original design ignores."""

from __future__ import annotations

import pytest

from chisme.core.keys import parse_addr
from chisme.core.records import FLAG_SEEDER, Provider, Record
from chisme.errors import WireError
from chisme.wire import v1


def test_gossip_carries_download_counters_that_go_ignores() -> None:
    rec = Record(parse_addr("10.0.0.5:6881"), 1_790_000_000_000_000_000)
    data = v1.encode_message(v1.Gossip("ab", [rec], {"node-a": 3}))
    assert data.endswith(b',"downloaded":{"node-a":3}}\n')
    msg = v1.decode_message(data)
    assert isinstance(msg, v1.Gossip) and msg.downloaded == {"node-a": 3}


def test_gossip_without_counters_is_the_seed_bytes() -> None:
    rec = Record(parse_addr("10.0.0.5:6881"), 1_790_000_000_000_000_000)
    assert b"downloaded" not in v1.encode_message(v1.Gossip("ab", [rec]))


@pytest.mark.parametrize(
    "counters",
    [b'{"":1}', b'{"a":-1}', b'{"a":"x"}', b"[1]", b'{"' + b"x" * 65 + b'":1}'],
)
def test_bad_counters_are_a_wire_error(counters: bytes) -> None:
    data = b'{"type":"gossip","info_hash":"ab","downloaded":' + counters + b"}"
    with pytest.raises(WireError):
        v1.decode_message(data)


def test_members_request() -> None:
    assert v1.encode_message(v1.Members()) == b'{"type":"members"}\n'
    assert isinstance(v1.decode_message(b'{"type":"members"}'), v1.Members)


def test_gossip_carries_tombstones_in_removed() -> None:
    tomb = Record(parse_addr("10.0.0.6:6881"), 1_790_000_000_000_000_001, flags=2)
    data = v1.encode_message(v1.Gossip("ab", [], removed=[tomb]))
    assert data == (
        b'{"type":"gossip","info_hash":"ab","removed":'
        b'[{"addr":"10.0.0.6:6881","last_seen":"2026-09-21T14:13:20.000000001Z"}]}\n'
    )
    msg = v1.decode_message(data)
    assert isinstance(msg, v1.Gossip)
    assert msg.records == [] and msg.removed == [tomb._replace(peer_id=b"")]


def test_a_removal_needs_its_time() -> None:
    with pytest.raises(WireError, match="removed"):
        v1.decode_message(b'{"type":"gossip","info_hash":"ab","removed":[{"addr":"1.2.3.4:5"}]}')


def test_a_seeder_carries_chisme_s_seeder_field_and_a_leecher_the_seed_bytes() -> None:
    """A seeder is marked ``"seeder":true`` (Go ignores the field), so a chisme node's lookup
    answer lets another chisme tracker count it as a seeder; other providers are unchanged."""
    seeder = Provider("10.0.0.5:6881", 1_790_000_000_000_000_000, "s", True)
    leecher = Provider("10.0.0.6:6881", 1_790_000_000_000_000_000, "l", False)
    data = v1.encode_providers([seeder, leecher])
    assert data == (
        b'[{"addr":"10.0.0.5:6881","peer_id":"s","last_seen":"2026-09-21T14:13:20Z",'
        b'"seeder":true},{"addr":"10.0.0.6:6881","peer_id":"l",'
        b'"last_seen":"2026-09-21T14:13:20Z"}]\n'
    )
    got = v1.decode_providers(data, 1 << 20)
    assert [(r.addr, r.seeder) for r in got] == [
        (parse_addr("10.0.0.5:6881"), True), (parse_addr("10.0.0.6:6881"), False),
    ]
    gossip = v1.encode_message(v1.Gossip("ab", [Record(parse_addr("10.0.0.5:6881"), 1, b"",
                                                        FLAG_SEEDER)]))
    assert b'"seeder":true' in gossip
    (rec,) = v1.decode_message(gossip).records  # type: ignore[union-attr]
    assert rec.seeder
