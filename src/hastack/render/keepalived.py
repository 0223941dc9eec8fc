"""keepalived.conf: VRRP (unicast, no preemption), alone or gated by corosync's quorum."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from hastack.credentials.model import Secrets
from hastack.render.files import RenderedFile, text
from hastack.render.templating import render
from hastack.spec.model import Spec, VipManager

CONF = "/etc/keepalived/keepalived.conf"


@dataclass(frozen=True)
class VrrpVip:
    name: str
    address: str
    router_id: int


def router_id(cluster: str, vip: str) -> int:
    # Stable per cluster and VIP so two hastack clusters on one L2 segment
    # are unlikely to collide (1..255).
    return zlib.crc32(f"{cluster}/{vip}".encode()) % 255 + 1


def render_keepalived(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    if not spec.vip_manager.runs_keepalived:
        return {}
    nodes = spec.haproxy_nodes()
    vips = [VrrpVip(v.name, str(v.address), router_id(spec.cluster, v.name)) for v in spec.vips]
    advert = spec.timing.keepalived_advert_ms / 1000
    out: dict[str, list[RenderedFile]] = {}
    for i, node in enumerate(nodes):
        conf = render(
            "keepalived.conf.j2",
            cluster=spec.cluster,
            quorum=spec.vip_manager is VipManager.KEEPALIVED_QUORUM,
            node=node,
            vips=vips,
            priority=150 - 10 * i,
            advert_int=f"{advert:g}",
            peers=[str(n.address) for n in nodes if n.name != node.name],
            prefix=spec.networks.management.prefixlen,
            ping_targets=spec.ping_targets(node),
            ping_s=spec.timing.pacemaker_ping_s,
        )
        out[node.name] = [text(CONF, conf)]
    return out
