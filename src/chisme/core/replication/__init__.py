"""Replication between chisme nodes: what a node tells the others of its store, and when.

The package owns the node-to-node replication of the provider store, pure and sans-I/O
(docs/v2.md): the v2 protocol of chisme members (origins and leases, rumors, digest
anti-entropy, composed with SWIM membership by :class:`ClusterEngine`) and the seed design's
v1 full push (:func:`plan_full_push`), still sent to nodes of the original design. It does
not own the store's semantics (:mod:`chisme.core.store`: merge, expiry, leases as the store
applies them), membership itself (:mod:`chisme.core.swim`), bytes
(:mod:`chisme.wire.v2`) or sockets (:mod:`chisme.net.v2`).

- :mod:`.messages`: the messages replication sends (:class:`Rumors`, the sync exchange,
  :class:`Out`);
- :mod:`.digest`: the two-level XOR digest of replicated records;
- :mod:`.origins`: a member's origin number;
- :mod:`.replicator`: rumors, anti-entropy and leases over one store;
- :mod:`.engine`: membership + replication for one node (:class:`ClusterEngine`);
- :mod:`.full_push`: the v1 round.
"""

from collections.abc import Sequence

from chisme.core.replication.digest import (
    BUCKETS,
    GROUPS,
    PER_GROUP,
    Digest,
    bucket_of,
    record_hash,
)
from chisme.core.replication.engine import ClusterConfig, ClusterEngine, SwimPacket
from chisme.core.replication.full_push import plan_full_push
from chisme.core.replication.messages import (
    Counter,
    Delta,
    ItemRecord,
    Out,
    Rumors,
    SyncBuckets,
    SyncGroups,
    SyncOk,
    SyncRoot,
)
from chisme.core.replication.origins import origin_id
from chisme.core.replication.replicator import ReplicationConfig, Replicator

__all__: Sequence[str] = (
    "BUCKETS",
    "GROUPS",
    "PER_GROUP",
    "ClusterConfig",
    "ClusterEngine",
    "Counter",
    "Delta",
    "Digest",
    "ItemRecord",
    "Out",
    "ReplicationConfig",
    "Replicator",
    "Rumors",
    "SwimPacket",
    "SyncBuckets",
    "SyncGroups",
    "SyncOk",
    "SyncRoot",
    "bucket_of",
    "origin_id",
    "plan_full_push",
    "record_hash",
)
