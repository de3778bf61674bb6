"""The command line: run a node, announce, look up, list members, simulate.

Errors are one line on stderr and a non-zero exit; :data:`EXIT_CODES` says which error gives
which code (2 for usage and configuration errors). ``--debug`` adds the traceback (and debug
logs), never another code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import signal
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, Final, NoReturn, TypeVar

import msgspec

from chisme.config import DEFAULT_PROFILE, LOG_LEVELS, PROFILES, Config, load_config
from chisme.core.keys import parse_addr, parse_info_hash
from chisme.core.records import Record, parse_peer_id, to_provider
from chisme.errors import ChismeError, ConfigError, InvalidInput, ListenError, WireError
from chisme.net import tcp
from chisme.node import Node
from chisme.wire import v1
from chisme.wire.framing import NOT_AN_OBJECT, NOT_JSON
from chisme.wire.rfc3339 import format_rfc3339

log = logging.getLogger("chisme")
_T = TypeVar("_T")

EXIT_CODES: Final[tuple[tuple[type[Exception], int], ...]] = (
    (ConfigError, 2),  # a bad flag, argument or config file (argparse's own code for usage)
    (WireError, 1),  # the node's answer: a refusal ("peer said: ..."), or not v1 at all
    (InvalidInput, 2),  # a value given on the command line (an info hash, an address)
    (ChismeError, 1),  # the node could not be reached or did not answer in time (PeerError)
    (OSError, 1),  # the system refused something the checks cannot foresee
)
"""Which error gives which exit code: the first row the error is an instance of. Ctrl-C is 130."""


def exit_code(error: Exception) -> int:
    """The exit code of an error that ends a command (:data:`EXIT_CODES`)."""
    return next((code for kind, code in EXIT_CODES if isinstance(error, kind)), 1)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's default prints usage; keep one line
        raise ConfigError(message)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default unless its help says it (the node's come from Config) or it has
    none worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


class _Version(argparse.Action):
    """``--version``: the installed package's version, read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print chisme's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        try:
            version = importlib.metadata.version("chisme")
        except importlib.metadata.PackageNotFoundError:  # a source tree never installed
            version = "(not installed)"
        print(f"chisme {version}")
        parser.exit()


def _shown(value: object) -> str:
    if value == ():
        return "none"
    if value == "":
        return "''"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _defaults() -> Callable[[str], str]:
    """``(default: 8; profile local: 1, wan: 15)`` for a Config field, from Config itself, so
    the help cannot drift from what a node runs with."""
    base = Config.profile(DEFAULT_PROFILE)
    profiles = {name: Config.profile(name) for name in PROFILES if name != DEFAULT_PROFILE}

    def default(field: str) -> str:
        value = getattr(base, field)
        other = [f"{name}: {_shown(getattr(c, field))}" for name, c in profiles.items()
                 if getattr(c, field) != value]
        per_profile = f"; profile {', '.join(other)}" if other else ""
        return f"(default: {_shown(value)}{per_profile})"

    return default


_NODE_PORT: Final = Config().listen


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="chisme", description="A decentralized provider tracker.",
                formatter_class=_Help)
    p.add_argument("--version", action=_Version)
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error, and debug logs")
    sub = p.add_subparsers(dest="command", title="commands", metavar="COMMAND",
                           parser_class=_Parser)
    default = _defaults()

    n = sub.add_parser("node", help="run a node (and its JSON API and tracker front ends)",
                       formatter_class=_Help)
    n.add_argument("--config", metavar="FILE",
                   help="TOML config file with the keys of chisme.Config; flags win "
                        "(default: none)")
    n.add_argument("--profile", choices=sorted(PROFILES),
                   help=f"named config profile (default: the file's, else {DEFAULT_PROFILE})")
    n.add_argument("--listen", metavar="HOST:PORT",
                   help=f"node port: v1 JSON, and v2 on TCP and UDP {default('listen')}")
    n.add_argument("--api", metavar="HOST:PORT",
                   help=f"JSON API and /metrics, '' = off {default('api')}")
    n.add_argument("--tracker-http", metavar="HOST:PORT",
                   help=f"BitTorrent HTTP tracker, '' = off {default('tracker_http')}")
    n.add_argument("--tracker-udp", metavar="HOST:PORT",
                   help=f"BitTorrent UDP tracker, '' = off {default('tracker_udp')}")
    n.add_argument("--peer", action="append", dest="peers", metavar="HOST:PORT",
                   help=f"a peer's node port, repeatable; with --protocol v2 a seed "
                        f"{default('peers')}")
    n.add_argument("--v1-peer", action="append", dest="v1_peers", metavar="HOST:PORT",
                   help=f"v2 mode: a node of the original design, gossiped with in v1 "
                        f"{default('v1_peers')}")
    n.add_argument("--ttl", type=float, dest="ttl_s", metavar="SECONDS",
                   help=f"provider TTL {default('ttl_s')}")
    n.add_argument("--gossip-interval", type=float, dest="gossip_interval_s", metavar="SECONDS",
                   help=f"seconds between gossip rounds {default('gossip_interval_s')}")
    n.add_argument("--protocol", choices=["v1", "v2"],
                   help=f"node-to-node protocol {default('protocol')}")
    n.add_argument("--node-id", metavar="ID",
                   help=f"stable node id; '' = a random one per start {default('node_id')}")
    n.add_argument("--cluster", dest="cluster_name", metavar="NAME",
                   help=f"cluster name: v2 members of another are refused "
                        f"{default('cluster_name')}")
    n.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS,
                   help=f"log level {default('log_level')}")

    node_help = f"a node port (default: {_NODE_PORT}; not the JSON API or tracker port)"
    info_hash_help = "the key: 40 or 64 hex digits (either case) or any other printable text"
    a = sub.add_parser("announce", help="announce a provider to a node (v1)",
                       formatter_class=_Help)
    a.add_argument("--node", default=_NODE_PORT, metavar="HOST:PORT", help=node_help)
    a.add_argument("--peer-id", default="", help="optional peer id (default: none)")
    a.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="deadline")
    a.add_argument("info_hash", metavar="INFO_HASH", help=info_hash_help)
    a.add_argument("addr", metavar="ADDR", help="the provider's HOST:PORT")

    lk = sub.add_parser("lookup", help="ask a node for the providers of a key (v1)",
                        formatter_class=_Help)
    lk.add_argument("--node", default=_NODE_PORT, metavar="HOST:PORT", help=node_help)
    lk.add_argument("--limit", type=int, default=0, metavar="N", help="at most N, 0 = all")
    lk.add_argument("--json", action="store_true", help="print the raw JSON array")
    lk.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="deadline")
    lk.add_argument("info_hash", metavar="INFO_HASH", help=info_hash_help)

    mb = sub.add_parser("members", help="list a node's cluster members and their state",
                        formatter_class=_Help)
    mb.add_argument("--node", default=_NODE_PORT, metavar="HOST:PORT", help=node_help)
    mb.add_argument("--json", action="store_true", help="print the raw JSON array")
    mb.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="deadline")

    sm = sub.add_parser("simulate", help="run N nodes in one process on a virtual clock",
                        formatter_class=_Help)
    sm.add_argument("--nodes", type=int, default=50, help="nodes")
    sm.add_argument("--keys", type=int, default=100, help="info hashes")
    sm.add_argument("--providers-per-key", type=int, default=10, help="records = keys x this")
    sm.add_argument("--refresh-s", type=float, default=60.0,
                    help="seconds between a provider's announces")
    sm.add_argument("--ttl-s", type=float, default=90.0, help="provider TTL")
    sm.add_argument("--announce-rate", type=float, default=1.0,
                    help="new announces per second, cluster-wide (their spread is measured)")
    sm.add_argument("--duration-s", type=float, default=60.0, help="measured virtual seconds")
    sm.add_argument("--warmup-s", type=float, default=5.0, help="virtual seconds not measured")
    sm.add_argument("--settle-s", type=float, default=15.0,
                    help="no new announces in the last S seconds (v1 needs ~40 to land)")
    sm.add_argument("--loss", type=float, default=0.0, help="loss of unreliable messages, 0..1")
    sm.add_argument("--kill", type=int, default=0, help="kill N random nodes (--kill-at-s)")
    sm.add_argument("--kill-at-s", type=float, default=10.0, help="when --kill kills")
    sm.add_argument("--partition-s", type=float, default=0.0,
                    help="a 2-way partition of S seconds (--partition-at-s), then heal")
    sm.add_argument("--partition-at-s", type=float, default=10.0, help="when it starts")
    sm.add_argument("--protocol", choices=["v1", "v2"], default="v2", help="protocol")
    sm.add_argument("--v1-peers", type=int, default=3, help="static peers per node (v1)")
    sm.add_argument("--sweep-interval-s", type=float, default=1.0,
                    help="store sweep period per node (a node sweeps 2,000 keys a time)")
    sm.add_argument("--seed", type=int, default=1, help="random seed")
    sm.add_argument("--verify-codec", action="store_true",
                    help="encode and decode every message with the real codec")
    sm.add_argument("--json", action="store_true", help="print one JSON summary object")
    sm.add_argument("--plot", metavar="FILE.png", help="plot convergence and bandwidth")
    return p


def _node_config(args: argparse.Namespace) -> Config:
    flags = {
        k: getattr(args, k)
        for k in ("listen", "api", "tracker_http", "tracker_udp", "ttl_s", "gossip_interval_s",
                  "protocol", "node_id", "cluster_name", "log_level")
        if getattr(args, k) is not None
    }
    if args.peers:
        flags["peers"] = tuple(args.peers)
    if args.v1_peers:
        flags["v1_peers"] = tuple(args.v1_peers)
    if args.config:
        return load_config(args.config, profile=args.profile, **flags)
    return Config.profile(args.profile or DEFAULT_PROFILE, **flags)


async def _run_node(cfg: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Node(cfg) as node:
        log.info("node %s ready: %s", node.node_id, node.status()["listeners"])
        await stop.wait()
        log.info("shutting down")


def _arg(name: str, parse: Callable[[str], _T], value: str) -> _T:
    """Validate one argument; the error names it (``--node: addr must be host:port``)."""
    try:
        return parse(value)
    except InvalidInput as e:
        raise InvalidInput(f"{name}: {e.reason}") from None


_NOT_V1: Final = (NOT_AN_OBJECT, NOT_JSON, v1.NOT_AN_ARRAY)


@contextlib.contextmanager
def _answer_of(node: str) -> Iterator[None]:
    """Say so when ``--node`` is not a node port: its answer was HTTP, or not v1 at all."""
    try:
        yield
    except WireError as e:
        fix = f"--node takes a node port (default {_NODE_PORT}), not the JSON API or tracker port"
        if e.reason == v1.ANSWERED_HTTP:
            raise WireError(f"{node} answered HTTP: {fix}") from e
        if e.reason in _NOT_V1:
            raise WireError(f"{node} did not answer in v1 ({e.reason}): {fix}") from e
        raise


async def _announce(args: argparse.Namespace) -> int:
    info_hash = _arg("INFO_HASH", parse_info_hash, args.info_hash)
    key = _arg("ADDR", parse_addr, args.addr)
    _arg("--node", parse_addr, args.node)
    rec = Record(key, time.time_ns(), _arg("--peer-id", parse_peer_id, args.peer_id))
    data = v1.encode_message(v1.Announce(info_hash, [rec]))
    # wait for the node to close: it does once the announce is applied, and what it writes
    # instead (a refusal, an HTTP error page) is reported, not taken for success
    answer = await tcp.send_confirmed(args.node, data, args.timeout, 1 << 16)
    with _answer_of(args.node):
        if v1.is_http(answer):
            raise WireError(v1.ANSWERED_HTTP)
        if answer.strip() and v1.decode_providers(answer) is not None:  # {"error"} raises
            raise WireError("unexpected answer to an announce")
    print(f"announced {args.addr} for {info_hash} to {args.node}")
    return 0


async def _members(args: argparse.Namespace) -> int:
    _arg("--node", parse_addr, args.node)
    with _answer_of(args.node):
        raw = await tcp.request(args.node, v1.encode_message(v1.Members()), args.timeout, 1 << 24)
    try:
        members = msgspec.json.decode(raw, type=list[_MemberRow])
    except msgspec.DecodeError:
        raise WireError("the node's answer is not a member list (a node of the original "
                        "design does not know 'members')") from None
    if args.json:
        sys.stdout.write(raw.decode("utf-8").rstrip("\n") + "\n")
        return 0
    for m in members:
        print(f"{m.addr}\t{m.state}\t{m.id}\tincarnation={m.incarnation}")
    return 0


class _MemberRow(msgspec.Struct):
    id: str
    addr: str
    state: str
    incarnation: int


async def _lookup(args: argparse.Namespace) -> int:
    info_hash = _arg("INFO_HASH", parse_info_hash, args.info_hash)
    _arg("--node", parse_addr, args.node)
    if args.limit < 0:
        raise InvalidInput("--limit must be 0 (no limit) or more")
    msg = v1.encode_message(v1.Lookup(info_hash, args.limit))
    with _answer_of(args.node):
        raw = await tcp.request(args.node, msg, args.timeout, 1 << 24)
        records = v1.decode_providers(raw)
    if args.json:
        sys.stdout.write(raw.decode("utf-8").rstrip("\n") + "\n")
        return 0
    if not records:
        print(f"no providers for {info_hash}")
        return 0
    for rec in records:
        p = to_provider(rec)
        line = f"{p.addr}\t{format_rfc3339(p.last_seen_ns)}"
        print(f"{line}\t{p.peer_id}" if p.peer_id else line)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from chisme.sim import SimConfig, simulate  # noqa: PLC0415 (only this command needs it)

    cfg = SimConfig(
        nodes=args.nodes, keys=args.keys, providers_per_key=args.providers_per_key,
        refresh_s=args.refresh_s, ttl_s=args.ttl_s, announce_rate=args.announce_rate,
        duration_s=args.duration_s, warmup_s=args.warmup_s, settle_s=args.settle_s,
        loss=args.loss, kill=args.kill,
        kill_at_s=args.kill_at_s, partition_s=args.partition_s,
        partition_at_s=args.partition_at_s, protocol=args.protocol, v1_peers=args.v1_peers,
        sweep_interval_s=args.sweep_interval_s, seed=args.seed, verify_codec=args.verify_codec,
    )
    bar = _ProgressBar() if sys.stderr.isatty() else None
    try:
        sim = simulate(cfg, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    summary = sim.summary()
    if args.plot:
        sim.plot(args.plot)
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
        return 0
    for key, value in summary.items():
        if key == "by_kind":
            continue
        shown = "-" if value is None else value
        if isinstance(value, dict):
            shown = "  ".join(f"{k} {'-' if v is None else v}" for k, v in value.items())
        print(f"{key:28} {shown}")
    return 0


class _ProgressBar:
    """One line on stderr (a terminal only): phase, percentage, wall seconds."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, phase: str, fraction: float) -> None:
        width = 30
        done = int(width * min(1.0, fraction))
        elapsed = time.monotonic() - self.started
        sys.stderr.write(
            f"\r{phase:8} [{'#' * done}{'.' * (width - done)}] {100 * fraction:5.1f}% "
            f"{elapsed:6.1f} s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def _setup_logging(level: str, debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(coro: Coroutine[Any, Any, int | None]) -> int | None:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop  # noqa: PLC0415

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # known before parsing: a usage error shows its traceback too
    try:
        return _command(build_parser(), argv)
    except (ChismeError, OSError) as e:
        if debug:
            traceback.print_exception(e, file=sys.stderr)
        print(f"chisme: error: {getattr(e, 'reason', None) or e}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        return 130


def _command(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    args = parser.parse_args(argv)
    if args.command is None:  # bare `chisme`: what there is to run
        parser.print_help(sys.stderr)
        return 2
    if args.command == "node":
        cfg = _node_config(args)
        _setup_logging(cfg.log_level, args.debug)
        try:
            _run(_run_node(cfg))
        except ListenError as e:
            example = f"{e.flag} HOST:PORT" if e.listener == "node" else f"{e.flag} ''"
            raise ConfigError(f'{e} (make run ARGS="{example}" passes flags)') from e
        return 0
    _setup_logging("WARNING", args.debug)
    if args.command == "announce":
        return _run(_announce(args)) or 0
    if args.command == "lookup":
        return _run(_lookup(args)) or 0
    if args.command == "members":
        return _run(_members(args)) or 0
    if args.command == "simulate":
        return _simulate(args)
    raise ConfigError(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
