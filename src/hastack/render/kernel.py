"""Kernel settings on every host: TCP keepalive short enough to find a connection whose peer died."""

from __future__ import annotations

from hastack.credentials.model import Secrets
from hastack.render.files import RenderedFile, text
from hastack.spec.model import Spec

KEEPALIVE = "/etc/sysctl.d/61-hastack-keepalive.conf"


def keepalive_body(spec: Spec) -> str:
    t = spec.timing
    interval, count = t.keepalive_probes()
    return ("# Rendered by hastack (timing.tcp_keepalive_s): a connection through a VIP whose holder\n"
            "# died is probed after this idle time, and reset by the new holder.\n"
            f"net.ipv4.tcp_keepalive_time = {t.tcp_keepalive_s}\n"
            f"net.ipv4.tcp_keepalive_intvl = {interval}\n"
            f"net.ipv4.tcp_keepalive_probes = {count}\n")


def render_kernel(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    body = keepalive_body(spec)
    return {node.name: [text(KEEPALIVE, body)] for node in spec.nodes}
