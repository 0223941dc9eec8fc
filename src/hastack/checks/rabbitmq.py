"""HA3xx: RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator

from hastack.checks.finding import Hit, Severity, rule
from hastack.spec.model import QueueType, Spec

E, W = Severity.ERROR, Severity.WARNING


@rule("HA301", E, "classic mirrored queues",
      why="""The guide's `ha-mode: all` policy: mirrored queues were deprecated in
      RabbitMQ 3.9 and removed in 4.0, and they lose messages after a partition
      or an unsynchronised failover.""",
      fix="Use rabbitmq.queue_type: quorum (oslo.messaging rabbit_quorum_queue).")
def mirrored(spec: Spec) -> Iterator[Hit]:
    if spec.rabbitmq.enabled and spec.rabbitmq.queue_type is QueueType.MIRRORED:
        yield Hit("rabbitmq", "ha-mode: all")


@rule("HA302", W, "RAM nodes",
      why="""RAM nodes (the guide's `join_cluster --ram`) are deprecated; they keep
      metadata only in memory and add nothing with quorum queues.""",
      fix="Remove rabbitmq.ram_nodes; every node is a disc node.")
def ram_nodes(spec: Spec) -> Iterator[Hit]:
    for name in spec.rabbitmq.ram_nodes if spec.rabbitmq.enabled else ():
        yield Hit(name, f"{name} is a RAM node")


@rule("HA303", W, "two-node RabbitMQ cluster",
      why="""A quorum queue on two nodes needs both to accept messages: it tolerates no
      failure. Two nodes also cannot tell a dead peer from a partition.""",
      fix="Run RabbitMQ on three nodes (or one, accepting downtime, not two).")
def two_rabbits(spec: Spec) -> Iterator[Hit]:
    if spec.rabbitmq.enabled and len(spec.rabbitmq.nodes) == 2:
        yield Hit("rabbitmq", "2 nodes")


@rule("HA304", W, "even number of RabbitMQ nodes",
      why="pause_minority stops both halves of an even split; an odd count always leaves a majority side.",
      fix="Use an odd number of RabbitMQ nodes.")
def even_rabbits(spec: Spec) -> Iterator[Hit]:
    n = len(spec.rabbitmq.nodes)
    if spec.rabbitmq.enabled and n > 2 and n % 2 == 0:
        yield Hit("rabbitmq", f"{n} nodes")


@rule("HA305", E, "partitions ignored",
      why="""With cluster_partition_handling=ignore both sides of a partition keep
      running and diverge; the cluster stays split after the network heals.""",
      fix="Use rabbitmq.partition_handling: pause_minority.")
def partitions_ignored(spec: Spec) -> Iterator[Hit]:
    if spec.rabbitmq.enabled and spec.rabbitmq.partition_mode == "ignore":
        yield Hit("rabbitmq", "cluster_partition_handling=ignore")


@rule("HA309", W, "pause_minority on two RabbitMQ nodes",
      why="""One node of two is never a majority: when either node fails the other
      pauses as well, and when the failed node boots the paused one restarts
      against a peer still starting (incompatible_feature_flags in the lab) and
      may stay down, leaving neither running.""",
      fix="Leave rabbitmq.partition_handling unset (autoheal for two nodes) or run three nodes.")
def pause_minority_on_two(spec: Spec) -> Iterator[Hit]:
    if spec.rabbitmq.enabled and len(spec.rabbitmq.nodes) == 2 and spec.rabbitmq.partition_mode == "pause_minority":
        yield Hit("rabbitmq", "cluster_partition_handling=pause_minority with 2 nodes")


@rule("HA306", E, "guest user enabled",
      why="guest/guest is the first credential anyone tries (the guide logs in to the management UI with it).",
      fix="Leave rabbitmq.guest_user: false; hastack creates users with generated passwords.")
def guest(spec: Spec) -> Iterator[Hit]:
    if spec.rabbitmq.enabled and spec.rabbitmq.guest_user:
        yield Hit("rabbitmq", "guest user")


@rule("HA307", W, "RabbitMQ behind haproxy",
      why="""oslo.messaging fails over between the nodes of transport_url itself and
      needs to know they are different nodes; behind a VIP a dead node looks like
      a broken connection and queue leaders stay invisible.""",
      fix="Set rabbitmq.via_haproxy: false; hastack lists every node in transport_url.")
def rabbit_behind_vip(spec: Spec) -> Iterator[Hit]:
    if spec.rabbitmq.enabled and spec.rabbitmq.via_haproxy:
        yield Hit("rabbitmq", "clients reach RabbitMQ through the VIP")


@rule("HA308", W, "classic queues without replication",
      why="A classic queue lives on one node; its messages are lost or unavailable while that node is down.",
      fix="Use rabbitmq.queue_type: quorum.")
def classic(spec: Spec) -> Iterator[Hit]:
    if spec.rabbitmq.enabled and spec.rabbitmq.queue_type is QueueType.CLASSIC and len(spec.rabbitmq.nodes) > 1:
        yield Hit("rabbitmq", "queue_type: classic")
