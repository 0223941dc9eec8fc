"""haproxy in front of every API, memcached and galera; rsyslog and sysctl beside it."""

from __future__ import annotations

from dataclasses import dataclass

from hastack.credentials.model import AGENT_TOKEN, Secrets
from hastack.render import tls as tls_files
from hastack.render.files import RenderedFile, text
from hastack.render.rabbitmq import amqp_port
from hastack.render.templating import render
from hastack.spec.catalog import BY_NAME
from hastack.spec.model import Node, Role, Spec

CONF = "/etc/haproxy/haproxy.cfg"
RSYSLOG = "/etc/rsyslog.d/49-hastack-haproxy.conf"
SYSCTL = "/etc/sysctl.d/60-hastack.conf"
TLS_DIR = "/etc/haproxy/tls"
# Certificate and key in one file, read as root before haproxy drops its privileges.
TLS_BUNDLE = f"{TLS_DIR}/bundle.pem"
# What makes haproxy reload when it changed.
RELOAD_ON = (CONF, TLS_BUNDLE)

RSYSLOG_BODY = """\
# Rendered by hastack: haproxy logs to /dev/log inside its chroot.
$AddUnixListenSocket /var/lib/haproxy/dev/log
local0.* /var/log/haproxy.log
& stop
"""

# haproxy runs on every node and binds the VIP before the VIP is there;
# nonlocal bind lets it, so failover moves only the address.
SYSCTL_BODY = """\
# Rendered by hastack.
net.ipv4.ip_nonlocal_bind = 1
"""


@dataclass(frozen=True)
class Server:
    name: str
    address: str
    backup: bool = False


def _servers(nodes: tuple[Node, ...]) -> list[Server]:
    return [Server(n.name, str(n.address)) for n in nodes]


def galera_servers(spec: Spec) -> list[Server]:
    """The writer first and alone; the rest are backups (unless multi-writer)."""
    writer = spec.galera_writer()
    single = spec.galera.writers == "single"
    ordered = [writer, *(n for n in spec.galera_nodes() if n.name != writer.name)]
    return [Server(n.name, str(n.address), backup=single and n.name != writer.name) for n in ordered]


def haproxy_cfg(spec: Spec, secrets: Secrets, node: Node) -> str:
    galera = None
    if spec.galera.enabled:
        http = spec.galera.health_check == "http"
        galera = {"servers": galera_servers(spec), "http_check": http, "token": secrets[AGENT_TOKEN] if http else ""}
    return render(
        "haproxy.cfg.j2",
        cluster=spec.cluster,
        node=node,
        t=spec.timing,
        extra_defaults=spec.haproxy.defaults.extra,
        stats_port=spec.haproxy.stats_port,
        stats_user=spec.haproxy.stats_user,
        stats_password=secrets["haproxy_stats_password"],
        stats_tls=TLS_BUNDLE if spec.tls.enabled else None,
        api_tls=TLS_BUNDLE if spec.tls.enabled else None,
        health_port=spec.haproxy.health_port,
        vips=spec.vips,
        galera=galera,
        services=[BY_NAME[s] for s in spec.haproxy.services],
        backends=_servers(spec.with_role(Role.CONTROLLER)),
        memcached=_servers(spec.memcached_nodes()) if spec.memcached.via_haproxy else [],
        rabbitmq=_servers(spec.rabbit_nodes()) if spec.rabbitmq.via_haproxy else [],
        amqp_port=amqp_port(spec),
        mongodb=[Server(n.name, str(n.address)) for _, n in spec.mongo_members()]
        if spec.mongodb.via_haproxy else [],
    )


def render_haproxy(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    out: dict[str, list[RenderedFile]] = {}
    for node in spec.haproxy_nodes():
        out[node.name] = [
            text(CONF, haproxy_cfg(spec, secrets, node), 0o640, group="haproxy"),
            text(RSYSLOG, RSYSLOG_BODY),
            text(SYSCTL, SYSCTL_BODY),
        ]
        if (node_tls := tls_files.for_node(spec, secrets, node)) is not None:
            out[node.name] += tls_files.files(node_tls, TLS_DIR, bundle=True)
    return out
