"""Fencing in the lab: the spec's fence devices, pointed at the lab power switch.

A lab host has no BMC; the lab power switch plays one. The spec keeps its real
devices (fence_ipmilan for the real servers); for its lab, every node that has
a device gets fence_hastack_lab instead, with the same delay, so pacemaker
runs with fencing on exactly as it would in production.
"""

from __future__ import annotations

from hastack.lab.layout import POWER_PORT, Layout
from hastack.spec.model import Fence, Spec

AGENT = "fence_hastack_lab"


def lab_fencing(spec: Spec, lay: Layout) -> Spec:
    params = {"ip": str(lay.management.gateway), "ipport": str(POWER_PORT)}
    nodes = tuple(
        n.model_copy(update={"fence": Fence(agent=AGENT, params=params, delay=n.fence.delay)}) if n.fence else n
        for n in spec.nodes
    )
    return spec.model_copy(update={"nodes": nodes})
