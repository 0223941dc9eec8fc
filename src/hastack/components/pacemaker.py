"""Pacemaker state from `crm_mon -1 --output-as=xml`: a pure parser."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from hastack.components.fact import Fact, on_success


@dataclass(frozen=True)
class NodeState:
    name: str
    online: bool
    standby: bool
    unclean: bool
    is_dc: bool
    remote: bool = False  # a pacemaker_remote node (a compute), not a corosync member


@dataclass(frozen=True)
class FenceEvent:
    """One entry of the fencing history (crm_mon's, or `stonith_admin --history`)."""

    target: str
    action: str  # reboot, off, on
    status: str  # success, failed, pending
    completed: float | None  # epoch seconds; None while pending
    by: str = ""  # the node whose device did it (pacemaker's "delegate")
    client: str = ""  # who asked: "pacemaker-controld.N" (the cluster itself) or "stonith_admin.N" (a person)


@dataclass(frozen=True)
class ResourceState:
    id: str
    agent: str
    role: str
    active: bool
    failed: bool
    nodes: tuple[str, ...]
    clone: str | None = None
    orphaned: bool = False  # left from an older configuration; stopped by definition


@dataclass(frozen=True)
class FailedAction:
    """One line of crm_mon's "Failed Resource Actions": it stays until cleaned up."""

    resource: str
    task: str
    node: str
    status: str
    reason: str
    when: str = ""  # crm_mon's last-rc-change, as it prints it


@dataclass(frozen=True)
class PacemakerState:
    nodes: tuple[NodeState, ...]
    resources: tuple[ResourceState, ...]
    stonith_enabled: bool
    no_quorum_policy: str
    has_quorum: bool | None
    failures: tuple[FailedAction, ...] = ()
    fencing: tuple[FenceEvent, ...] = ()

    def where(self, rid: str) -> tuple[str, ...]:
        """Nodes an active resource (or every instance of a clone) runs on."""
        return tuple(
            n for r in self.resources if rid in (r.id, r.clone) and r.active for n in r.nodes
        )

    def stopped(self) -> tuple[str, ...]:
        """Configured resources (a clone by its name) with an instance not running; leftovers of an older CIB aside."""
        return tuple(sorted({r.clone or r.id for r in self.resources if not r.active and not r.orphaned}))

    def recovered(self, rid: str) -> bool:
        """Whether a resource with a failure on record runs again (every instance, for a clone)."""
        rid = rid.split(":", 1)[0]  # an anonymous clone's instance, "haproxy:1"
        mine = [r for r in self.resources if rid in (r.id, r.clone)]
        return bool(mine) and all((r.active or r.orphaned) and not r.failed for r in mine)

    def online(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if n.online)


def strays(mon: PacemakerState, members: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Cluster nodes pacemaker knows that are not `members`: (offline, online). Remote nodes (the
    computes) are the CIB's resources, not members: they come and go with it."""
    want = set(members)
    out = [n for n in mon.nodes if n.name not in want and not n.remote]
    return tuple(n.name for n in out if not n.online), tuple(n.name for n in out if n.online)


def remote_strays(mon: PacemakerState, remotes: Iterable[str]) -> tuple[str, ...]:
    """pacemaker_remote nodes pacemaker knows that the spec no longer has as remote nodes (instance HA
    turned off, a compute taken out of it or out of the spec)."""
    want = set(remotes)
    return tuple(n.name for n in mon.nodes if n.remote and n.name not in want)


def _bool(value: str | None) -> bool:
    return value == "true"


def _when(text: str | None) -> float | None:
    """pacemaker's "2026-12-01 07:20:23Z" (UTC) as epoch seconds."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_fence_events(root: ET.Element) -> tuple[FenceEvent, ...]:
    """Every fence_event under `root`: crm_mon's fence_history, or stonith_admin's list."""
    return tuple(FenceEvent(e.get("target", ""), e.get("action", ""), e.get("status", ""),
                            _when(e.get("completed")), e.get("delegate", ""), e.get("client", ""))
                 for e in root.iter("fence_event"))


def parse_fence_history(xml: str) -> tuple[FenceEvent, ...]:
    """`stonith_admin --history '*' --output-as=xml`."""
    return parse_fence_events(ET.fromstring(xml))


def _resource(el: ET.Element, clone: str | None) -> ResourceState:
    return ResourceState(
        id=el.get("id", ""),
        agent=el.get("resource_agent", ""),
        role=el.get("role", ""),
        active=_bool(el.get("active")),
        failed=_bool(el.get("failed")),
        nodes=tuple(n.get("name", "") for n in el.findall("node")),
        clone=clone,
        orphaned=_bool(el.get("orphaned")),
    )


def parse_crm_mon(xml: str) -> PacemakerState:
    root = ET.fromstring(xml)
    summary = root.find("summary")
    opts = summary.find("cluster_options") if summary is not None else None
    dc = summary.find("current_dc") if summary is not None else None
    nodes = tuple(
        NodeState(
            name=n.get("name", ""),
            online=_bool(n.get("online")),
            standby=_bool(n.get("standby")),
            unclean=_bool(n.get("unclean")),
            is_dc=_bool(n.get("is_dc")),
            remote=n.get("type") == "remote",
        )
        for n in root.iterfind("nodes/node")
    )
    resources: list[ResourceState] = []
    for el in root.iterfind("resources/*"):
        if el.tag == "resource":
            resources.append(_resource(el, None))
        elif el.tag in ("clone", "group", "bundle"):
            resources.extend(_resource(r, el.get("id")) for r in el.iter("resource"))
    failures = tuple(
        FailedAction(
            resource=f.get("op_key", "").rsplit("_", 2)[0],
            task=f.get("task", ""),
            node=f.get("node", ""),
            status=f.get("status", ""),
            reason=f.get("exitreason", "") or f.get("exitstatus", ""),
            when=f.get("last-rc-change", ""),
        )
        for f in root.iterfind("failures/failure")
    )
    quorum = dc.get("with_quorum") if dc is not None and dc.get("present") == "true" else None
    return PacemakerState(
        nodes=nodes,
        resources=tuple(resources),
        stonith_enabled=_bool(opts.get("stonith-enabled")) if opts is not None else False,
        no_quorum_policy=opts.get("no-quorum-policy", "") if opts is not None else "",
        has_quorum=None if quorum is None else quorum == "true",
        failures=failures,
        fencing=parse_fence_events(root),
    )


MON = Fact("pacemaker status", ("crm_mon", "-1", "--output-as=xml"), on_success(parse_crm_mon))
