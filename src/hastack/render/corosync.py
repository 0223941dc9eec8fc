"""corosync.conf (corosync 3, knet, one link per heartbeat network) and the authkey."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from hastack.credentials.model import Secrets
from hastack.render.files import RenderedFile, text
from hastack.render.templating import render
from hastack.spec.model import Node, Spec

CONF = "/etc/corosync/corosync.conf"
AUTHKEY = "/etc/corosync/authkey"


@dataclass(frozen=True)
class Member:
    name: str
    nodeid: int
    addrs: tuple[str, ...]


def members(spec: Spec) -> tuple[Member, ...]:
    """Cluster members with stable node ids: each node's place in the spec's `nodes`, from 1.

    Not the place in `corosync.nodes`: taking a member out of that list must not
    renumber the others (corosync cannot change a running node's id; pacemaker
    keys its nodes by it)."""
    ids = {n.name: i for i, n in enumerate(spec.nodes, start=1)}
    return tuple(Member(n.name, ids[n.name], link_addresses(spec, n)) for n in spec.corosync_nodes())


def link_addresses(spec: Spec, node: Node) -> tuple[str, ...]:
    # No heartbeat networks: the management network is the only link.
    return tuple(str(a) for a in node.heartbeat) if spec.networks.heartbeat else (str(node.address),)


def render_corosync(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    nodes = members(spec)
    conf = render(
        "corosync.conf.j2",
        cluster=spec.cluster,
        transport=spec.corosync.transport,
        crypto=spec.corosync.crypto,
        timing=spec.timing,
        links=list(range(len(nodes[0].addrs))) if nodes else [],
        nodes=nodes,
    )
    key = base64.b64decode(secrets["corosync_authkey"])
    files = [text(CONF, conf), RenderedFile(AUTHKEY, key, 0o400)]
    return {m.name: files for m in nodes}
