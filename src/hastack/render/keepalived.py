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


def priorities(count: int) -> list[int]:
    """VRRP priorities, first node highest, as far apart as the range allows.

    When the holder dies, each backup takes over once its master-down timer runs out, and that
    timer differs between two backups by (their priority gap / 256) of an advert: with 150, 140,
    130 that was 4 ms at the fast profile's 0.1 s adverts, less than a starved host's scheduling
    delay, and both backups took the VIP (two holders in the fast keepalived lab). A gap of 100
    gives the higher one 39 ms to be heard first."""
    step = max(1, min(100, 200 // max(1, count - 1)))
    return [250 - step * i for i in range(count)]


def render_keepalived(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    if not spec.vip_manager.runs_keepalived:
        return {}
    nodes = spec.haproxy_nodes()
    vips = [VrrpVip(v.name, str(v.address), router_id(spec.cluster, v.name)) for v in spec.vips]
    advert = spec.timing.keepalived_advert_ms / 1000
    out: dict[str, list[RenderedFile]] = {}
    for node, priority in zip(nodes, priorities(len(nodes)), strict=True):
        conf = render(
            "keepalived.conf.j2",
            cluster=spec.cluster,
            quorum=spec.vip_manager is VipManager.KEEPALIVED_QUORUM,
            node=node,
            vips=vips,
            priority=priority,
            advert_int=f"{advert:g}",
            peers=[str(n.address) for n in nodes if n.name != node.name],
            prefix=spec.networks.management.prefixlen,
            ping_targets=spec.ping_targets(node),
            ping_s=spec.timing.pacemaker_ping_s,
        )
        out[node.name] = [text(CONF, conf)]
    return out
