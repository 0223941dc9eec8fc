"""Cross-field rules of a spec: names that must exist, addresses that must fit.

Pure: takes a shape-valid Spec, returns errors anchored at the field to fix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

from hastack.spec.catalog import BY_NAME, KNOWN_SERVICES
from hastack.spec.errors import Path, SpecError
from hastack.spec.model import Role, Spec


def validate_references(spec: Spec) -> list[SpecError]:
    return [
        *_unique_names(spec),
        *_addresses(spec),
        *_vips(spec),
        *_placement(spec),
        *_services(spec),
        *_fence_targets(spec),
        *_instance_ha(spec),
    ]


def _instance_ha(spec: Spec) -> Iterator[SpecError]:
    """Instance HA fences a failed compute before anything moves: without pacemaker and a fence
    device for every compute there is nothing to fence it with."""
    iha = spec.instance_ha
    if not iha.enabled:
        return
    computes = {n.name for n in spec.with_role(Role.COMPUTE)}
    if not spec.vip_manager.runs_pacemaker or not spec.pacemaker.fencing:
        yield SpecError(("instance_ha", "enabled"), "instance HA needs pacemaker with fencing on",
                        "set pacemaker.fencing: true (and a VIP manager that runs pacemaker)")
    if not {"keystone", "nova"} <= set(spec.openstack.services):
        yield SpecError(("instance_ha", "enabled"), "instance HA evacuates through nova: keystone and nova must run",
                        "list keystone and nova in openstack.services")
    if not computes:
        yield SpecError(("instance_ha", "enabled"), "no node has the compute role",
                        "give the compute role to the hosts whose instances should survive them")
    for i, node in enumerate(spec.nodes):
        if node.name in computes and node.fence is None:
            yield SpecError(("nodes", i, "fence"), f"compute {node.name} has no fence device",
                            "give it one (its BMC): a compute is fenced before its instances move")
        if node.name in spec.corosync.nodes and node.name in computes:
            yield SpecError(("nodes", i, "roles"), f"{node.name} is a cluster member and a compute",
                            "instance HA watches computes through pacemaker_remote: keep them out of corosync.nodes")
    for j, name in enumerate(iha.reserved):
        if name not in computes:
            yield SpecError(("instance_ha", "reserved", j), f"{name!r} is not a compute node",
                            "list computes only: a reserved host takes evacuated instances")


def _fence_targets(spec: Spec) -> Iterator[SpecError]:
    """A node's fence device fences that node alone: hastack sets its pcmk_host_list and its delay.
    A `pcmk_*` parameter would override them (ctl1's device fencing ctl2, with no finding)."""
    for i, node in enumerate(spec.nodes):
        for key in (node.fence.params if node.fence else {}):
            if key.startswith("pcmk_"):
                yield SpecError(("nodes", i, "fence", "params", key),
                                f"{key} is set by hastack: this device fences {node.name} only",
                                "remove it; use fence.delay for a delay, and give each node its own device")


def _unique_names(spec: Spec) -> Iterator[SpecError]:
    seen: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        if node.name in seen:
            yield SpecError(
                ("nodes", i, "name"),
                f"node name {node.name!r} is used twice (first at nodes[{seen[node.name]}])",
                "give every node its own name",
            )
        seen.setdefault(node.name, i)
    vip_names = Counter(v.name for v in spec.vips)
    for i, vip in enumerate(spec.vips):
        if vip_names[vip.name] > 1:
            yield SpecError(("vips", i, "name"), f"VIP name {vip.name!r} is used twice", "rename one")


def _in(net: IPv4Network, addr: IPv4Address) -> bool:
    return addr in net and addr not in (net.network_address, net.broadcast_address)


def _addresses(spec: Spec) -> Iterator[SpecError]:
    owner: dict[IPv4Address, str] = {}

    def claim(addr: IPv4Address, path: Path, what: str) -> Iterator[SpecError]:
        if addr in owner:
            yield SpecError(
                path,
                f"address {addr} is already used by {owner[addr]}",
                "every node, heartbeat link and VIP needs an address of its own",
            )
        else:
            owner[addr] = what

    mgmt = spec.networks.management
    hb_nets = spec.networks.heartbeat
    corosync = set(spec.corosync.nodes)
    for i, node in enumerate(spec.nodes):
        yield from claim(node.address, ("nodes", i, "address"), f"nodes[{i}] ({node.name})")
        if not _in(mgmt, node.address):
            yield SpecError(
                ("nodes", i, "address"),
                f"{node.address} is not a host address in the management network {mgmt}",
                "use an address inside networks.management, or widen that network",
            )
        for j, addr in enumerate(node.heartbeat):
            yield from claim(addr, ("nodes", i, "heartbeat", j), f"nodes[{i}].heartbeat[{j}]")
            if j < len(hb_nets) and not _in(hb_nets[j], addr):
                yield SpecError(
                    ("nodes", i, "heartbeat", j),
                    f"{addr} is not a host address in heartbeat network {j} ({hb_nets[j]})",
                    f"use an address inside networks.heartbeat[{j}]",
                )
        if node.name in corosync and hb_nets and len(node.heartbeat) != len(hb_nets):
            yield SpecError(
                ("nodes", i, "heartbeat"),
                f"node {node.name!r} is a cluster member and has {len(node.heartbeat)} heartbeat "
                f"address(es), but networks.heartbeat lists {len(hb_nets)} link(s)",
                "give one heartbeat address per heartbeat network, in the same order",
            )
    for i, vip in enumerate(spec.vips):
        yield from claim(vip.address, ("vips", i, "address"), f"vips[{i}] ({vip.name})")


def _vips(spec: Spec) -> Iterator[SpecError]:
    mgmt = spec.networks.management
    for i, vip in enumerate(spec.vips):
        if not _in(mgmt, vip.address):
            yield SpecError(
                ("vips", i, "address"),
                f"VIP {vip.address} is outside its network {mgmt} (networks.{vip.network})",
                "pick a free host address inside that network: IPaddr2 and keepalived "
                "can only raise an address on a link that routes it",
            )


def _known(names: set[str], name: str | None, path: Path, what: str) -> Iterator[SpecError]:
    if name is not None and name not in names:
        yield SpecError(path, f"{what} {name!r} is not a node of this spec", "use a name from nodes[].name")


def _each(names: set[str], listed: tuple[str, ...], path: Path, what: str) -> Iterator[SpecError]:
    for j, name in enumerate(listed):
        yield from _known(names, name, (*path, j), what)
    for name, count in Counter(listed).items():
        if count > 1:
            yield SpecError(path, f"{name!r} is listed {count} times", "list each node once")


def _placed(section: str, key: str, items: tuple[object, ...]) -> Iterator[SpecError]:
    if not items:
        yield SpecError((section, key), f"{section} is enabled but has no {key}",
                        f"list {key}, give some nodes the controller role, or set {section}.enabled: false")


def _placement(spec: Spec) -> Iterator[SpecError]:
    names = {n.name for n in spec.nodes}
    yield from _each(names, spec.corosync.nodes, ("corosync", "nodes"), "cluster member")
    yield from _known(names, spec.pacemaker.vip_preferred_node, ("pacemaker", "vip_preferred_node"), "node")
    pref = spec.pacemaker.vip_preferred_node
    if pref in names and pref not in spec.haproxy.nodes:
        yield SpecError(
            ("pacemaker", "vip_preferred_node"),
            f"{pref!r} does not run haproxy, so it can never hold the VIP",
            "name one of haproxy.nodes",
        )
    yield from _galera_placement(spec, names)
    yield from _rabbit_placement(spec, names)
    yield from _mongo_placement(spec, names)
    yield from _each(names, spec.haproxy.nodes, ("haproxy", "nodes"), "haproxy node")
    if not spec.haproxy.nodes:
        yield SpecError(("haproxy", "nodes"), "no node runs haproxy",
                        "list haproxy.nodes or give some nodes the controller role")
    yield from _each(names, spec.memcached.nodes, ("memcached", "nodes"), "memcached node")
    for i, node in enumerate(spec.nodes):
        if node.has(Role.ARBITRATOR) and len(node.roles) > 1 and node.has(Role.COMPUTE):
            yield SpecError(("nodes", i, "roles"),
                            "an arbitrator must not also be a compute node",
                            "keep the voting node small and separate: its only job is to break ties")


def _members(names: set[str], section: str, nodes: tuple[str, ...]) -> Iterator[SpecError]:
    """A cluster's `nodes`: each a node of the spec, listed once, and at least one."""
    yield from _each(names, nodes, (section, "nodes"), f"{section} node")
    yield from _placed(section, "nodes", nodes)


def _galera_placement(spec: Spec, names: set[str]) -> Iterator[SpecError]:
    g = spec.galera
    if not g.enabled:
        return
    yield from _members(names, "galera", g.nodes)
    yield from _known(names, g.arbitrator, ("galera", "arbitrator"), "arbitrator")
    for key, value in (("writer", g.writer), ("donor", g.donor)):
        yield from _known(names, value, ("galera", key), key)
        if value is not None and value in names and value not in g.nodes:
            yield SpecError(("galera", key), f"{key} {value!r} is not one of galera.nodes",
                            "name a node that runs galera")


def _rabbit_placement(spec: Spec, names: set[str]) -> Iterator[SpecError]:
    r = spec.rabbitmq
    if not r.enabled:
        return
    yield from _members(names, "rabbitmq", r.nodes)
    for j, name in enumerate(r.ram_nodes):
        if name not in r.nodes:
            yield SpecError(("rabbitmq", "ram_nodes", j), f"{name!r} is not one of rabbitmq.nodes",
                            "RAM nodes must be cluster members (better: use none)")


def _mongo_placement(spec: Spec, names: set[str]) -> Iterator[SpecError]:
    m = spec.mongodb
    if not m.enabled:
        return
    for j, mm in enumerate(m.members):
        yield from _known(names, mm.node, ("mongodb", "members", j, "node"), "mongodb member")
    for name, count in Counter(mm.node for mm in m.members).items():
        if count > 1:
            yield SpecError(("mongodb", "members"), f"{name!r} is a member {count} times",
                            "list each node once")
    yield from _placed("mongodb", "members", m.members)
    yield from _known(names, m.arbiter, ("mongodb", "arbiter"), "arbiter")


def _services(spec: Spec) -> Iterator[SpecError]:
    for j, name in enumerate(spec.haproxy.services):
        if name not in BY_NAME:
            yield SpecError(("haproxy", "services", j), f"unknown endpoint {name!r}",
                            "known endpoints: " + ", ".join(sorted(BY_NAME)))
    for j, name in enumerate(spec.openstack.services):
        if name not in KNOWN_SERVICES:
            yield SpecError(("openstack", "services", j), f"unknown OpenStack service {name!r}",
                            "known services: " + ", ".join(sorted(KNOWN_SERVICES)))
