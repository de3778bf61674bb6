"""The command line: run a node, announce, look up, list members, simulate.

Errors are one line on stderr and a non-zero exit (2 for usage and config errors);
``--debug`` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import msgspec

from chisme.config import Config, load_config
from chisme.core.keys import parse_addr, parse_info_hash
from chisme.core.records import MAX_PEER_ID_BYTES, Record
from chisme.errors import ChismeError, ConfigError, InvalidInput, WireError
from chisme.net import tcp
from chisme.node import Node
from chisme.wire import v1
from chisme.wire.rfc3339 import format_rfc3339

log = logging.getLogger("chisme")
_T = TypeVar("_T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's default prints usage; keep one line
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="chisme", description="A decentralized provider tracker.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    n = sub.add_parser("node", help="run a node")
    n.add_argument("--config", help="TOML config file (same keys as chisme.Config)")
    n.add_argument("--profile", choices=["local", "lan", "wan"], help="named config profile")
    n.add_argument("--listen", help="node port HOST:PORT (default 127.0.0.1:7070)")
    n.add_argument("--api", help="JSON API HOST:PORT (default 127.0.0.1:7080; '' = off)")
    n.add_argument("--tracker-http", help="BitTorrent HTTP tracker HOST:PORT ('' = off)")
    n.add_argument("--tracker-udp", help="BitTorrent UDP tracker HOST:PORT ('' = off)")
    n.add_argument("--peer", action="append", dest="peers",
                   help="peer HOST:PORT (repeatable; with --protocol v2: seeds)")
    n.add_argument("--v1-peer", action="append", dest="v1_peers",
                   help="v2 mode: a node of the original design, gossiped with in v1")
    n.add_argument("--ttl", type=float, dest="ttl_s", help="provider TTL in seconds (90)")
    n.add_argument("--gossip-interval", type=float, dest="gossip_interval_s",
                   help="seconds between gossip rounds (8)")
    n.add_argument("--protocol", choices=["v1", "v2"], help="node-to-node gossip protocol")
    n.add_argument("--node-id", help="stable node id (default: random per start)")
    n.add_argument("--cluster", dest="cluster_name", help="cluster name")
    n.add_argument("--log-level", help="DEBUG, INFO, WARNING")

    a = sub.add_parser("announce", help="announce a provider to a node (v1)")
    a.add_argument("--node", required=True, help="node HOST:PORT")
    a.add_argument("--peer-id", default="", help="optional peer id")
    a.add_argument("--timeout", type=float, default=5.0)
    a.add_argument("info_hash")
    a.add_argument("addr")

    lk = sub.add_parser("lookup", help="ask a node for the providers of a key (v1)")
    lk.add_argument("--node", required=True, help="node HOST:PORT")
    lk.add_argument("--limit", type=int, default=0)
    lk.add_argument("--json", action="store_true", help="print the raw JSON array")
    lk.add_argument("--timeout", type=float, default=5.0)
    lk.add_argument("info_hash")

    mb = sub.add_parser("members", help="list a node's cluster members and their state")
    mb.add_argument("--node", required=True, help="node HOST:PORT")
    mb.add_argument("--json", action="store_true", help="print the raw JSON array")
    mb.add_argument("--timeout", type=float, default=5.0)

    sm = sub.add_parser("simulate", help="run N nodes in one process on a virtual clock")
    sm.add_argument("--nodes", type=int, default=50)
    sm.add_argument("--keys", type=int, default=100)
    sm.add_argument("--providers-per-key", type=int, default=10, help="records = keys x this")
    sm.add_argument("--refresh-s", type=float, default=60.0, help="providers re-announce (60)")
    sm.add_argument("--ttl-s", type=float, default=90.0)
    sm.add_argument("--announce-rate", type=float, default=1.0,
                    help="new announces per second, cluster-wide (their spread is measured)")
    sm.add_argument("--duration-s", type=float, default=60.0, help="measured virtual seconds")
    sm.add_argument("--warmup-s", type=float, default=5.0, help="virtual seconds not measured")
    sm.add_argument("--settle-s", type=float, default=15.0,
                    help="no new announces in the last S seconds (v1 needs ~40 to land)")
    sm.add_argument("--loss", type=float, default=0.0, help="loss of unreliable messages, 0..1")
    sm.add_argument("--kill", type=int, default=0, help="kill N random nodes (--kill-at-s)")
    sm.add_argument("--kill-at-s", type=float, default=10.0)
    sm.add_argument("--partition-s", type=float, default=0.0,
                    help="a 2-way partition of S seconds (--partition-at-s), then heal")
    sm.add_argument("--partition-at-s", type=float, default=10.0)
    sm.add_argument("--protocol", choices=["v1", "v2"], default="v2")
    sm.add_argument("--v1-peers", type=int, default=3, help="static peers per node (v1)")
    sm.add_argument("--sweep-interval-s", type=float, default=1.0,
                    help="store sweep period per node (node.py: 1 s, 2,000 keys each)")
    sm.add_argument("--seed", type=int, default=1)
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
    return Config.profile(args.profile or "lan", **flags)


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


async def _announce(args: argparse.Namespace) -> int:
    info_hash = _arg("INFO_HASH", parse_info_hash, args.info_hash)
    key = _arg("ADDR", parse_addr, args.addr)
    _arg("--node", parse_addr, args.node)
    if len(args.peer_id.encode()) > MAX_PEER_ID_BYTES:
        raise InvalidInput(f"--peer-id: at most {MAX_PEER_ID_BYTES} bytes")
    rec = Record(key, time.time_ns(), args.peer_id.encode())
    data = v1.encode_message(v1.Announce(info_hash, [rec]))
    await tcp.send_message(args.node, data, args.timeout)
    print(f"announced {args.addr} for {info_hash} to {args.node}")
    return 0


async def _members(args: argparse.Namespace) -> int:
    _arg("--node", parse_addr, args.node)
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
    raw = await tcp.request(args.node, msg, args.timeout, 1 << 24)
    records = v1.decode_providers(raw)
    if args.json:
        sys.stdout.write(raw.decode("utf-8").rstrip("\n") + "\n")
        return 0
    if not records:
        print(f"no providers for {info_hash}")
        return 0
    from chisme.core.records import to_provider  # noqa: PLC0415

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
    parser = build_parser()
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
        if args.command == "node":
            cfg = _node_config(args)
            _setup_logging(cfg.log_level, args.debug)
            _run(_run_node(cfg))
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
    except ConfigError as e:
        print(f"chisme: error: {e}", file=sys.stderr)
        if debug:
            raise
        return 2
    except ChismeError as e:
        print(f"chisme: error: {getattr(e, 'reason', None) or e}", file=sys.stderr)
        if debug:
            raise
        return 1
    except OSError as e:  # the system refused something the checks above cannot foresee
        print(f"chisme: error: {e}", file=sys.stderr)
        if debug:
            raise
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
