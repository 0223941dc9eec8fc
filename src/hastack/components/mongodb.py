"""Replica set state from `replSetGetStatus`, and the initiate decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hastack.spec.model import Node, Spec

# The user hastack creates in the replica set (under the localhost exception) and probes with.
MONGO_ADMIN = "hastack_admin"
PORT = 27017


def member_name(node: Node) -> str:
    """How the replica set names the mongod on `node`: host:port."""
    return f"{node.address}:{PORT}"


def set_hosts(spec: Spec) -> dict[str, str]:
    """Every host of the set, members and arbiter -> the name the set knows it by."""
    hosts = [n for _, n in spec.mongo_members()] + ([spec.node(spec.mongodb.arbiter)] if spec.mongodb.arbiter else [])
    return {n.name: member_name(n) for n in hosts}


@dataclass(frozen=True)
class MongoMemberState:
    name: str
    state: str  # PRIMARY, SECONDARY, ARBITER, STARTUP2, (not reachable/healthy)...
    healthy: bool


@dataclass(frozen=True)
class ReplSet:
    name: str
    members: tuple[MongoMemberState, ...]

    @property
    def primary(self) -> str | None:
        return next((m.name for m in self.members if m.state == "PRIMARY"), None)

    def healthy(self) -> bool:
        return self.primary is not None and all(m.healthy and m.state in ("PRIMARY", "SECONDARY", "ARBITER")
                                                for m in self.members)


def parse_replset_status(doc: Mapping[str, Any]) -> ReplSet:
    return ReplSet(str(doc.get("set", "")), tuple(
        MongoMemberState(str(m["name"]), str(m.get("stateStr", "")), m.get("health", 0) == 1)
        for m in doc.get("members", [])
    ))
