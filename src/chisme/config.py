"""One typed, frozen configuration object, with named profiles and a TOML loader.

Units are in the names (``*_s`` seconds, ``*_bytes``). Profiles follow memberlist's
Local / LAN / WAN split: ``local`` is tuned for a laptop or a test (fast rounds),
``lan`` is the default, ``wan`` tolerates long round trips.

Every error is a :class:`~chisme.errors.ConfigError` that names the key (and the file, for
a key a file set): ``node.toml: unknown key 'ttl' (did you mean 'ttl_s'?)``.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from chisme.core.keys import parse_addr
from chisme.errors import ConfigError, InvalidInput

Protocol = Literal["v1", "v2"]
DEFAULT_PROFILE: Final = "lan"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""The values of ``log_level`` (the :mod:`logging` level names; any case)."""


class _BadKey(ConfigError):
    """A ConfigError about one key: :func:`load_config` names the file when the file set it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything a node needs. Build one with :meth:`Config.profile` or :func:`load_config`."""

    # identity and membership
    cluster_name: str = "chisme"
    node_id: str = ""  # empty: a fresh random id per start
    # listeners ("" switches a listener off)
    listen: str = "127.0.0.1:7070"  # node port: v1 JSON and v2 frames
    api: str = "127.0.0.1:7080"  # HTTP JSON API and /metrics
    tracker_http: str = "127.0.0.1:6969"
    tracker_udp: str = "127.0.0.1:6969"
    peers: tuple[str, ...] = ()  # v1: the peers gossiped with; v2: seeds (their node ports)
    v1_peers: tuple[str, ...] = ()  # v2 mode: nodes of the original design, gossiped in v1
    advertise: str = ""  # the address peers should use for us; "" = listen
    # store
    ttl_s: float = 90.0
    tombstone_ttl_s: float = 0.0  # 0: same as ttl_s
    max_clock_skew_s: float = 5.0
    max_per_key: int = 500
    max_records: int = 1_000_000
    sweep_interval_s: float = 1.0
    # node-to-node protocol
    protocol: Protocol = "v2"  # v1: the seed's full push to static peers (still spoken)
    membership: Literal["local", "lan", "wan"] = "lan"  # SWIM timing profile (v2)
    gossip_interval_s: float = 8.0
    gossip_jitter: float = 0.1  # fraction of the interval, each way
    max_message_bytes: int = 1 << 20
    read_timeout_s: float = 5.0  # a connection must deliver its message within this
    peer_timeout_s: float = 2.0  # dial + send (+ reply) to a peer
    max_connections: int = 1024
    max_concurrent_sends: int = 64
    lookup_fanout: int = 3
    lookup_timeout_s: float = 1.0
    # BitTorrent tracker front ends
    announce_interval_s: float = 0.0  # 0: two thirds of ttl_s
    min_announce_interval_s: float = 0.0  # 0: half the announce interval
    numwant_default: int = 50
    numwant_max: int = 200
    tracker_lookup_timeout_s: float = 0.3
    connection_id_key: str = "chisme-default-connection-id-key"  # share it across the cluster
    real_ip_header: str = ""  # e.g. "X-Forwarded-For" behind a reverse proxy; off by default
    allow_list: str = ""  # file of allowed info hashes (hex, one per line); "" = all
    deny_list: str = ""  # file of denied info hashes
    full_scrape: bool = False
    # logging
    log_level: str = "INFO"  # one of LOG_LEVELS

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            # TOML and float() accept nan and inf; they would fail later, far from the cause
            if isinstance(value, float) and not math.isfinite(value):
                raise _BadKey(name, f"{name} must be a finite number (got {value})")
        for name in ("listen", "api", "tracker_http", "tracker_udp", "advertise"):
            value = getattr(self, name)
            if value:
                # a listener may bind port 0 (the OS picks one); what peers dial may not
                _check_addr(name, value, allow_port_0=name != "advertise")
        for name in ("peers", "v1_peers"):
            for peer in getattr(self, name):
                _check_addr(name, peer, allow_port_0=False)
        if not self.listen:
            raise _BadKey("listen", "listen (the node port) cannot be switched off")
        positive = (
            "ttl_s",
            "max_clock_skew_s",
            "sweep_interval_s",
            "gossip_interval_s",
            "read_timeout_s",
            "peer_timeout_s",
            "lookup_timeout_s",
            "tracker_lookup_timeout_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise _BadKey(name, f"{name} must be positive")
        for name in ("max_per_key", "max_records", "max_message_bytes", "max_connections",
                     "max_concurrent_sends", "numwant_max"):
            if getattr(self, name) < 1:
                raise _BadKey(name, f"{name} must be at least 1")
        if self.max_message_bytes < 512:  # a one-provider gossip with a long key needs ~300
            raise _BadKey("max_message_bytes", "max_message_bytes must be at least 512")
        if self.min_announce_interval_s < 0:
            raise _BadKey("min_announce_interval_s",
                            "min_announce_interval_s must be 0 (automatic) or positive")
        if not 0 <= self.gossip_jitter < 1:
            raise _BadKey("gossip_jitter", "gossip_jitter must be in [0, 1)")
        if self.tombstone_ttl_s and self.tombstone_ttl_s < self.ttl_s:
            raise _BadKey("tombstone_ttl_s", "tombstone_ttl_s must be at least ttl_s")
        if self.announce_interval_s < 0 or self.announce_interval_s >= self.ttl_s:
            raise _BadKey("announce_interval_s",
                            "announce_interval_s must be less than ttl_s, or clients expire")
        if not 0 <= self.lookup_fanout <= 16:
            raise _BadKey("lookup_fanout", "lookup_fanout must be in 0-16")
        if not 0 < self.numwant_default <= self.numwant_max:
            raise _BadKey("numwant_default", "numwant_default must be in 1..numwant_max")
        if not self.cluster_name or len(self.cluster_name) > 64:
            raise _BadKey("cluster_name", "cluster_name must be 1-64 characters")
        if self.log_level.upper() not in LOG_LEVELS:
            raise _BadKey("log_level", f"log_level must be one of {', '.join(LOG_LEVELS)} "
                                         f"(got {self.log_level!r})")

    # derived values ---------------------------------------------------------------------

    @property
    def ttl_ns(self) -> int:
        return int(self.ttl_s * 1e9)

    @property
    def tombstone_ttl_ns(self) -> int:
        return int((self.tombstone_ttl_s or self.ttl_s) * 1e9)

    @property
    def max_clock_skew_ns(self) -> int:
        return int(self.max_clock_skew_s * 1e9)

    @property
    def announce_interval(self) -> int:
        """Seconds a BitTorrent client waits between announces (two thirds of the TTL)."""
        return max(1, int(self.announce_interval_s or self.ttl_s * 2 / 3))

    @property
    def min_announce_interval(self) -> int:
        return max(1, int(self.min_announce_interval_s or self.announce_interval / 2))

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed, validated again."""
        return from_mapping({**msgspec.structs.asdict(self), **changes})

    @classmethod
    def profile(cls, name: str = DEFAULT_PROFILE, **overrides: Any) -> Config:
        """A named profile (``local``, ``lan``, ``wan``), with ``overrides`` applied."""
        try:
            base = PROFILES[name]
        except KeyError:
            raise _BadKey("profile", f"unknown profile {name!r} (local, lan, wan)") from None
        return from_mapping({**base, **overrides})


def _check_addr(name: str, value: object, *, allow_port_0: bool) -> None:
    try:
        if allow_port_0 and isinstance(value, str) and value.endswith(":0"):
            value = value[:-1] + "1"  # validate the host; port 0 means "any free port"
        parse_addr(value)
    except InvalidInput as e:
        raise _BadKey(name, f"{name}: {e.reason} (got {value!r})") from None


PROFILES: dict[str, dict[str, Any]] = {
    "lan": {},
    "local": {
        "membership": "local",
        "gossip_interval_s": 1.0,
        "read_timeout_s": 2.0,
        "peer_timeout_s": 1.0,
        "lookup_timeout_s": 0.5,
        "sweep_interval_s": 0.5,
    },
    "wan": {
        "membership": "wan",
        "gossip_interval_s": 15.0,
        "read_timeout_s": 15.0,
        "peer_timeout_s": 6.0,
        "lookup_timeout_s": 3.0,
        "max_clock_skew_s": 30.0,
        "tracker_lookup_timeout_s": 1.0,
    },
}


def from_mapping(values: Mapping[str, Any], source: str = "") -> Config:
    """Validate a mapping (TOML table, flags) into a Config; errors are ConfigError naming the
    key, and ``source`` (e.g. a file name) first when given."""
    try:
        return _convert(values)
    except ConfigError as e:
        if source:
            raise ConfigError(f"{source}: {e}") from None
        raise


def _convert(values: Mapping[str, Any]) -> Config:
    data = dict(values)
    fields = Config.__struct_fields__
    for key in data:
        if key not in fields:
            raise _BadKey(key, f"unknown key {key!r}{_did_you_mean(str(key), fields)}")
    for name in ("peers", "v1_peers"):
        if name in data and isinstance(data[name], list):
            data[name] = tuple(data[name])
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as e:
        raise _type_error(str(e)) from None


def _did_you_mean(key: str, fields: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    if not close:  # a prefix reads as intended too: "gossip" -> "gossip_interval_s"
        close = [f for f in fields if f.startswith(key)][:1] if len(key) >= 3 else []
    return f" (did you mean {close[0]!r}?)" if close else ""


_MSGSPEC_ERROR_RE: Final = re.compile(r"(.*) - at `\$\.([A-Za-z_0-9]+)(.*)`$")


def _type_error(text: str) -> ConfigError:
    """``ttl_s: expected float, got str`` from msgspec's ``Expected `float`, got `str` - at
    `$.ttl_s```; the allowed values for a choice (``protocol: 'v1' or 'v2', got 'v3'``)."""
    m = _MSGSPEC_ERROR_RE.match(text)
    if m is None:
        return ConfigError(f"config: {text}")
    what, key, rest = m.groups()
    choices = typing.get_args(typing.get_type_hints(Config).get(key))
    if what.startswith("Invalid enum value") and choices:
        got = what.removeprefix("Invalid enum value ")
        return _BadKey(key, f"{key}: {' or '.join(map(repr, choices))}, got {got}")
    what = what.replace("`", "")
    return _BadKey(key, f"{key}{rest}: {what[:1].lower()}{what[1:]}")


def load_config(path: str | Path, profile: str | None = None, **overrides: Any) -> Config:
    """Read a TOML file (the same keys as :class:`Config`, optional ``profile``); flags win.

    An error about a key the file set (and ``overrides`` did not) names the file.
    """
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from None
    file_profile = raw.pop("profile", None)
    if file_profile is not None and not isinstance(file_profile, str):
        raise ConfigError(f"{path}: profile must be a string")
    from_file = set(raw) - set(overrides)
    if profile is None and file_profile is not None:
        from_file.add("profile")
    try:
        return Config.profile(profile or file_profile or DEFAULT_PROFILE, **{**raw, **overrides})
    except _BadKey as e:
        if e.key in from_file:
            raise ConfigError(f"{path}: {e}") from None
        raise
