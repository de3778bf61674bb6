"""chisme: a decentralized provider tracker.

Embed a node::

    import asyncio, chisme

    async def main() -> None:
        async with chisme.Node(chisme.Config.profile("local", api="", tracker_http="",
                                                     tracker_udp="")) as node:
            await node.announce("3f2a" * 10, "10.0.0.5:6881")
            print(await node.lookup("3f2a" * 10))

    asyncio.run(main())
"""

from chisme.config import Config, load_config
from chisme.core.records import Provider, Record
from chisme.core.store import Store
from chisme.errors import (
    ChismeError,
    ConfigError,
    InvalidInput,
    MessageTooLarge,
    PeerError,
    PeerTimeout,
    PeerUnreachable,
    TrackerRequestError,
    WireError,
)
from chisme.net.client import Client
from chisme.node import Node

__version__ = "0.1.0"

__all__ = [
    "ChismeError",
    "Client",
    "Config",
    "ConfigError",
    "InvalidInput",
    "MessageTooLarge",
    "Node",
    "PeerError",
    "PeerTimeout",
    "PeerUnreachable",
    "Provider",
    "Record",
    "Store",
    "TrackerRequestError",
    "WireError",
    "__version__",
    "load_config",
]
