"""A node's part in its cluster, one role per protocol, on the transport and clock seams.

- :class:`~chisme.cluster.v1.V1Role`: the original design's replication (full push of every
  live record to a static peer list every ``gossip_interval_s``, an ``announce`` push per
  first-hand change);
- :class:`~chisme.cluster.v2.V2Role`: SWIM membership, rumors and digest anti-entropy
  (docs/v2.md), plus the original design's pushes to the nodes of that design it knows.

A role is synchronous and owns no task: a transport (:mod:`chisme.net.transport`) hands it the
messages that arrive and wakes it when its timer is due. The node (sockets, the asyncio loop)
and the simulator (the in-memory network, virtual time) drive the same roles.
"""
