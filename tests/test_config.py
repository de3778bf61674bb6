"""Config: embedded defaults, named profiles, validation (ConfigError with a clear text), TOML."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from chisme import Config, ConfigError, load_config
from chisme.config import LOG_LEVELS, PROFILES, from_mapping


def test_embedded_defaults_are_the_documented_ones() -> None:
    c = Config()
    assert (c.listen, c.api, c.peers) == ("127.0.0.1:7070", "127.0.0.1:7080", ())
    assert (c.ttl_s, c.gossip_interval_s, c.max_clock_skew_s) == (90.0, 8.0, 5.0)
    assert c.max_message_bytes == 1 << 20
    assert c.lookup_fanout == 3
    assert c.protocol == "v2"  # v2 is the default; v1 stays spoken for the original design
    assert (c.ttl_ns, c.tombstone_ttl_ns, c.max_clock_skew_ns) == (90 * 10**9, 90 * 10**9,
                                                                   5 * 10**9)
    assert Config.profile() == Config.profile("lan") == c


def test_profiles() -> None:
    local, wan = Config.profile("local"), Config.profile("wan")
    assert local.gossip_interval_s < Config().gossip_interval_s < wan.gossip_interval_s
    assert wan.read_timeout_s > local.read_timeout_s
    for name, values in PROFILES.items():
        c = Config.profile(name)
        for key, value in values.items():
            assert getattr(c, key) == value
    # overrides win over the profile
    assert Config.profile("local", gossip_interval_s=0.25).gossip_interval_s == 0.25
    with pytest.raises(ConfigError, match=r"unknown profile 'moon' \(local, lan, wan\)"):
        Config.profile("moon")


def test_frozen_and_replace_validates() -> None:
    c = Config.profile("local")
    with pytest.raises(AttributeError):
        c.ttl_s = 1  # type: ignore[misc]
    d = c.replace(ttl_s=30, peers=["127.0.0.1:7071"])
    assert (d.ttl_s, d.peers, c.ttl_s) == (30, ("127.0.0.1:7071",), 90)
    with pytest.raises(ConfigError, match="ttl_s must be positive"):
        c.replace(ttl_s=0)


def test_listeners_may_bind_port_0_but_peers_may_not() -> None:
    c = Config(listen="127.0.0.1:0", api="[::1]:0", tracker_http="", tracker_udp="localhost:0")
    assert c.listen == "127.0.0.1:0"
    with pytest.raises(ConfigError, match=r"peers: port must be an integer in 1-65535"):
        Config(peers=("127.0.0.1:0",))
    with pytest.raises(ConfigError, match=r"advertise: port"):
        Config(advertise="10.0.0.1:0")


def test_derived_intervals() -> None:
    c = Config(ttl_s=90)
    assert (c.announce_interval, c.min_announce_interval) == (60, 30)
    c = Config(ttl_s=90, announce_interval_s=45, min_announce_interval_s=10, tombstone_ttl_s=120)
    assert (c.announce_interval, c.min_announce_interval, c.tombstone_ttl_ns) == (45, 10,
                                                                                  120 * 10**9)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"ttl_s": 0}, "ttl_s must be positive"),
    ({"ttl_s": -1.5}, "ttl_s must be positive"),
    ({"ttl_s": float("nan")}, r"ttl_s must be a finite number \(got nan\)"),
    ({"gossip_interval_s": float("inf")}, "gossip_interval_s must be a finite number"),
    ({"gossip_interval_s": 0}, "gossip_interval_s must be positive"),
    ({"sweep_interval_s": 0}, "sweep_interval_s must be positive"),
    ({"read_timeout_s": -1}, "read_timeout_s must be positive"),
    ({"peer_timeout_s": 0}, "peer_timeout_s must be positive"),
    ({"lookup_timeout_s": 0}, "lookup_timeout_s must be positive"),
    ({"max_clock_skew_s": 0}, "max_clock_skew_s must be positive"),
    ({"max_per_key": 0}, "max_per_key must be at least 1"),
    ({"max_records": 0}, "max_records must be at least 1"),
    ({"max_connections": 0}, "max_connections must be at least 1"),
    ({"max_concurrent_sends": 0}, "max_concurrent_sends must be at least 1"),
    ({"max_message_bytes": 100}, "max_message_bytes must be at least 512"),
    ({"gossip_jitter": 1.0}, r"gossip_jitter must be in \[0, 1\)"),
    ({"gossip_jitter": -0.1}, r"gossip_jitter must be in \[0, 1\)"),
    ({"tombstone_ttl_s": 10}, "tombstone_ttl_s must be at least ttl_s"),
    ({"announce_interval_s": 90}, "announce_interval_s must be less than ttl_s"),
    ({"min_announce_interval_s": -1}, "min_announce_interval_s must be 0"),
    ({"lookup_fanout": 17}, "lookup_fanout must be in 0-16"),
    ({"lookup_fanout": -1}, "lookup_fanout must be in 0-16"),
    ({"numwant_default": 0}, "numwant_default must be in 1..numwant_max"),
    ({"numwant_default": 300}, "numwant_default must be in 1..numwant_max"),
    ({"cluster_name": ""}, "cluster_name must be 1-64 characters"),
    ({"cluster_name": "c" * 65}, "cluster_name must be 1-64 characters"),
    ({"listen": ""}, r"listen \(the node port\) cannot be switched off"),
    ({"listen": "127.0.0.1"}, r"listen: addr must be host:port \(got '127.0.0.1'\)"),
    ({"api": "::1:80"}, "api: addr with an IPv6 host needs brackets"),
    ({"tracker_http": "127.0.0.1:70000"}, "tracker_http: port must be an integer in 1-65535"),
    ({"peers": ("nohost",)}, "peers: addr must be host:port"),
    ({"v1_peers": ("10.0.0.1:0",)}, "v1_peers: port must be"),
    ({"protocol": "v3"}, r"^protocol: 'v1' or 'v2', got 'v3'$"),
    ({"membership": "moon"}, r"^membership: 'local' or 'lan' or 'wan', got 'moon'$"),
    ({"ttl_s": "soon"}, r"^ttl_s: expected float, got str$"),
    ({"max_records": 1.5}, r"^max_records: expected int, got float$"),
    ({"peers": (1,)}, r"^peers\[0\]: expected str, got int$"),
    ({"full_scrape": "yes"}, r"^full_scrape: expected bool, got str$"),
    ({"log_level": "LOUD"}, r"^log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL "
                            r"\(got 'LOUD'\)$"),
    ({"no_such_setting": 1}, r"^unknown key 'no_such_setting'$"),
    ({"ttl": 30}, r"^unknown key 'ttl' \(did you mean 'ttl_s'\?\)$"),
    ({"gossip_interval": 3}, r"^unknown key 'gossip_interval' \(did you mean 'gossip_interval_s'"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD,
                         ids=[f"{next(iter(o))}={next(iter(o.values()))!r}"[:40] for o, _ in BAD])
def test_bad_values_are_config_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.profile("lan", **overrides)


def test_toml(tmp_path: Path) -> None:
    f = tmp_path / "chisme.toml"
    f.write_text(
        '# a node of the test cluster\n'
        'profile = "wan"\n'
        'listen = "0.0.0.0:7070"\n'
        'peers = ["10.0.0.2:7070", "[2001:db8::3]:7070"]\n'
        "ttl_s = 120\n"
        "gossip_interval_s = 4.5\n"
    )
    c = load_config(f)
    assert c.peers == ("10.0.0.2:7070", "[2001:db8::3]:7070")
    assert (c.listen, c.ttl_s, c.gossip_interval_s) == ("0.0.0.0:7070", 120.0, 4.5)
    assert c.read_timeout_s == PROFILES["wan"]["read_timeout_s"]  # the file's profile
    # flags (overrides) win over the file, a profile argument over the file's profile
    c = load_config(f, profile="local", ttl_s=30.0, peers=("10.0.0.9:1",))
    assert (c.ttl_s, c.peers, c.gossip_interval_s) == (30.0, ("10.0.0.9:1",), 4.5)
    assert c.read_timeout_s == PROFILES["local"]["read_timeout_s"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttl_s = \n", r"is not valid TOML"),
        (b"\xff\xfe = 1\n", r"is not valid TOML"),
        ("ttl_s = nan\n", "ttl_s must be a finite number"),
        ("ttl_s = -inf\n", "ttl_s must be a finite number"),
        ("profile = 3\n", "profile must be a string"),
        ('profile = "moon"\n', "unknown profile 'moon'"),
        ("[table]\nttl_s = 1\n", "^bad.toml: unknown key 'table'$"),
        ('peers = "10.0.0.2:7070"\n', "^bad.toml: peers: expected array, got str$"),
        ("gossip_interval_s = 0\n", "^bad.toml: gossip_interval_s must be positive$"),
        ("ttl = 30\n", r"^bad.toml: unknown key 'ttl' \(did you mean 'ttl_s'\?\)$"),
        ('ttl_s = "soon"\n', "^bad.toml: ttl_s: expected float, got str$"),
        ('peers = ["nohost"]\n', "^bad.toml: peers: addr must be host:port"),
        ('log_level = "LOUD"\n', "^bad.toml: log_level must be one of DEBUG, INFO"),
        ('protocol = "v3"\n', "^bad.toml: protocol: 'v1' or 'v2', got 'v3'$"),
        ('profile = "moon"\n', "^bad.toml: unknown profile 'moon'"),
        ("profile = 3\n", "^bad.toml: profile must be a string$"),
        ("ttl_s = 10\ntombstone_ttl_s = 5\n", "^bad.toml: tombstone_ttl_s must be at least"),
    ],
)
def test_bad_toml(tmp_path: Path, text: str | bytes, message: str) -> None:
    f = tmp_path / "bad.toml"
    if isinstance(text, bytes):
        f.write_bytes(text)
    else:
        f.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("bad.toml", re.escape(str(f)))):
        load_config(f)


def test_a_bad_override_is_not_blamed_on_the_file(tmp_path: Path) -> None:
    f = tmp_path / "node.toml"
    f.write_text("ttl_s = 0\n")
    assert load_config(f, ttl_s=5.0).ttl_s == 5.0  # the flag wins: the file's 0 never counts
    f.write_text("gossip_interval_s = 2.0\n")
    with pytest.raises(ConfigError, match=r"^ttl_s must be positive$"):
        load_config(f, ttl_s=0.0)
    f.write_text('profile = "moon"\n')
    assert load_config(f, profile="wan").membership == "wan"
    f.write_text("ttl = 1\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(f))}: unknown key 'ttl' "):
        load_config(f, ttl_s=5.0)


def test_a_mapping_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^env: unknown key 'ttl' \(did you mean 'ttl_s'\?\)$"):
        from_mapping({"ttl": 1}, "env")
    with pytest.raises(ConfigError, match=r"^ttl_s must be positive$"):
        from_mapping({"ttl_s": 0})
    assert from_mapping({"ttl_s": 30, "peers": ["10.0.0.1:1"]}) == Config(ttl_s=30,
                                                                           peers=("10.0.0.1:1",))


def test_log_levels_in_any_case() -> None:
    for level in LOG_LEVELS:
        assert Config(log_level=level.lower()).log_level == level.lower()
        assert Config(log_level=level).log_level == level


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*missing.toml: No such file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path)  # a directory
