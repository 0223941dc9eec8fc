"""RabbitMQ cluster membership and quorum queues, from rabbitmqctl's JSON output."""

from __future__ import annotations

import json
from dataclasses import dataclass

CLUSTER_CMD = "rabbitmqctl -q cluster_status --formatter json"
QUEUES_CMD = "rabbitmqctl -q list_queues name type leader members online --formatter json"


@dataclass(frozen=True)
class RabbitCluster:
    running: tuple[str, ...]
    disk_nodes: tuple[str, ...]
    ram_nodes: tuple[str, ...]
    partitions: tuple[str, ...]  # nodes reporting a partition
    alarms: tuple[str, ...]
    # Nodes with an AMQP listener. A node whose Erlang VM runs but whose rabbit
    # app has not started (booting, or stuck: rabbitmq-server#6034) is in
    # running_nodes with no listener at all.
    serving: tuple[str, ...] = ()

    def complete(self, expected: set[str]) -> bool:
        return set(self.running) == expected and not self.partitions


def parse_cluster_status(text: str) -> RabbitCluster:
    data = json.loads(text)
    alarms = [f"{a.get('node', '?')}: {a.get('type', a)}" if isinstance(a, dict) else str(a)
              for a in data.get("alarms", [])]
    return RabbitCluster(
        running=tuple(sorted(data.get("running_nodes", []))),
        disk_nodes=tuple(sorted(data.get("disk_nodes", []))),
        ram_nodes=tuple(sorted(data.get("ram_nodes", []))),
        partitions=tuple(sorted(k for k, v in (data.get("partitions") or {}).items() if v)),
        alarms=tuple(alarms),
        serving=tuple(sorted(
            n for n, ls in listeners.items() if any(ls_.get("protocol") == "amqp" for ls_ in ls)
        )) if isinstance(listeners := data.get("listeners"), dict) else tuple(sorted(data.get("running_nodes", []))),
    )


@dataclass(frozen=True)
class QuorumQueue:
    name: str
    leader: str
    members: tuple[str, ...]
    online: tuple[str, ...]

    @property
    def degraded(self) -> bool:
        """A member is not running: the queue has lost redundancy (not yet availability)."""
        return set(self.online) != set(self.members)


def parse_quorum_queues(text: str) -> tuple[QuorumQueue, ...]:
    return tuple(
        QuorumQueue(str(q["name"]), str(q.get("leader", "")), tuple(q.get("members", [])), tuple(q.get("online", [])))
        for q in json.loads(text or "[]") if q.get("type") == "quorum"
    )
