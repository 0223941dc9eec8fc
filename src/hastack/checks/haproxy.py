"""HA5xx: haproxy and the endpoints behind it."""

from __future__ import annotations

from collections.abc import Iterator

from hastack.checks.finding import Hit, Severity, rule
from hastack.spec.catalog import BY_NAME
from hastack.spec.model import Spec

E, W = Severity.ERROR, Severity.WARNING

# haproxy 1.x keywords the guide uses; haproxy 2.x refuses to start with them.
REMOVED_KEYWORDS = {
    "contimeout": "timeout connect",
    "clitimeout": "timeout client",
    "srvtimeout": "timeout server",
    "redispatch": "option redispatch",
}


@rule("HA501", E, "haproxy keyword that no longer exists",
      why="haproxy 2.x rejects the 1.x timeout keywords the guide uses and will not start.",
      fix="Replace them (contimeout -> timeout connect, clitimeout -> timeout client, srvtimeout -> timeout server).")
def removed_keywords(spec: Spec) -> Iterator[Hit]:
    for line in spec.haproxy.defaults.extra:
        word = line.split()[0]
        if word in REMOVED_KEYWORDS:
            yield Hit("haproxy", f"`{line}`", f"write `{REMOVED_KEYWORDS[word]} ...` instead")


@rule("HA502", E, "endpoint that no longer exists",
      why="The service behind it was removed from OpenStack: the backend would stay DOWN forever and hide real alarms.",
      fix="Remove it from haproxy.services.")
def removed_endpoint(spec: Spec) -> Iterator[Hit]:
    for name in spec.haproxy.services:
        ep = BY_NAME[name]
        if ep.removed:
            yield Hit(name, f"{name} (port {ep.port}): {ep.removed}")


@rule("HA503", W, "endpoint of a service that is not deployed",
      why="The backend has no server listening and is always DOWN.",
      fix="Add the project to openstack.services or remove the endpoint from haproxy.services.")
def orphan_endpoint(spec: Spec) -> Iterator[Hit]:
    for name in spec.haproxy.services:
        ep = BY_NAME[name]
        if ep.removed is None and ep.service not in spec.openstack.services:
            yield Hit(name, f"{name} serves {ep.service}, which is not in openstack.services")


@rule("HA504", E, "port used twice on the VIP",
      why="haproxy cannot bind two listeners to the same address and port and refuses to start.",
      fix="Remove one of the endpoints or move the stats/health port.")
def port_clash(spec: Spec) -> Iterator[Hit]:
    ports: dict[int, str] = {}
    if spec.galera.enabled:
        ports[3306] = "galera"
    if spec.memcached.via_haproxy:
        ports[11211] = "memcached"
    for name in spec.haproxy.services:
        port = BY_NAME[name].port
        if port in ports:
            yield Hit(name, f"{name} and {ports[port]} both want port {port}")
        ports.setdefault(port, name)
    for name, port in (("stats", spec.haproxy.stats_port), ("health", spec.haproxy.health_port)):
        if port in ports:
            yield Hit(name, f"the {name} port {port} is also used by {ports[port]}")
