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
    """Cluster members with stable node ids (their order in the spec, from 1)."""
    return tuple(
        Member(n.name, i, link_addresses(spec, n)) for i, n in enumerate(spec.corosync_nodes(), start=1)
    )


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
