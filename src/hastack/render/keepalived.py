"""keepalived.conf: VRRP (unicast, no preemption), alone or gated by corosync's quorum; the gate that
runs its checks outside it (agent/vrrp_gate.py) and its unit."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from hastack.agent.vrrp_gate import DIR as GATE_DIR
from hastack.agent.vrrp_gate import LAUNCHER as GATE_LAUNCHER
from hastack.credentials.model import Secrets
from hastack.render.files import RenderedFile, text
from hastack.render.templating import render
from hastack.spec.model import Spec, VipManager

CONF = "/etc/keepalived/keepalived.conf"
GATE = "hastack-vrrp-gate"
GATE_UNIT = f"/etc/systemd/system/{GATE}.service"
# keepalived starts after the gate, so a booting host's files hold verdicts, not init_file's 1.
DROP_IN = "/etc/systemd/system/keepalived.service.d/hastack.conf"
DROP_IN_BODY = f"""\
# Rendered by hastack: keepalived's checks are the VRRP gate's files.
[Unit]
Wants={GATE}.service
After={GATE}.service
"""
GATE_UNIT_BODY = """\
# Rendered by hastack: keepalived's checks, run outside keepalived so that its VRRP process never
# forks (hastack.agent.vrrp_gate). Each verdict is a file in {dir} that keepalived tracks.
[Unit]
Description=hastack VRRP gate (keepalived's checks)
After=network-online.target corosync.service
Before=keepalived.service

[Service]
Type=notify
NotifyAccess=main
ExecStart={launcher} --dir {dir}{args}
Restart=always
RestartSec=1
# A gate that stopped checking would leave its last verdicts standing: killed and started again.
WatchdogSec=60
RuntimeDirectory={runtime}
# The verdicts outlive a restart of the gate: keepalived keeps what it read.
RuntimeDirectoryPreserve=yes
# Root for corosync's IPC (corosync-quorumtool), raw ICMP (fping) and deleting the VIPs; nothing else.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


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
    prefix = spec.networks.management.prefixlen
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
            down_adverts=spec.timing.keepalived_down_adverts,
            peers=[str(n.address) for n in nodes if n.name != node.name],
            prefix=prefix,
            ping_s=spec.timing.pacemaker_ping_s,
            gate_dir=GATE_DIR,
        )
        args = (" --quorum" if spec.vip_manager is VipManager.KEEPALIVED_QUORUM else "") + \
            f" --ping-every {spec.timing.pacemaker_ping_s} --ping {' '.join(spec.ping_targets(node))}" + \
            f" --device {node.interface} --vip {' '.join(f'{v.address}/{prefix}' for v in vips)}"
        gate = GATE_UNIT_BODY.format(dir=GATE_DIR, launcher=GATE_LAUNCHER, args=args,
                                     runtime=GATE_DIR.removeprefix("/run/"))
        out[node.name] = [text(CONF, conf), text(GATE_UNIT, gate), text(DROP_IN, DROP_IN_BODY)]
    return out
