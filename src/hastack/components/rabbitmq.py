"""RabbitMQ cluster membership from `rabbitmqctl cluster_status --formatter json`."""

from __future__ import annotations

import json
from dataclasses import dataclass

CLUSTER_CMD = "rabbitmqctl -q cluster_status --formatter json"


@dataclass(frozen=True)
class RabbitCluster:
    running: tuple[str, ...]
    disk_nodes: tuple[str, ...]
    ram_nodes: tuple[str, ...]
    partitions: tuple[str, ...]  # nodes reporting a partition
    alarms: tuple[str, ...]

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
    )
