"""Rendering: Spec + Secrets -> {host: {path: RenderedFile}}. Pure."""

from __future__ import annotations

from collections.abc import Callable

from hastack.credentials.model import Secrets
from hastack.render.agent import render_agent
from hastack.render.corosync import render_corosync
from hastack.render.evacuator import render_evacuator
from hastack.render.files import RenderedFile, Tree
from hastack.render.fingerprints import render_fingerprints
from hastack.render.galera import render_galera
from hastack.render.haproxy import render_haproxy
from hastack.render.keepalived import render_keepalived
from hastack.render.kernel import render_kernel
from hastack.render.memcached import render_memcached
from hastack.render.mongodb import render_mongodb
from hastack.render.openstack import render_openstack
from hastack.render.openstack_run import render_openstack_run
from hastack.render.pacemaker import render_pacemaker
from hastack.render.rabbitmq import render_rabbitmq
from hastack.spec.model import Spec

Renderer = Callable[[Spec, Secrets], dict[str, list[RenderedFile]]]

RENDERERS: dict[str, Renderer] = {
    "corosync": render_corosync,
    "pacemaker": render_pacemaker,
    "galera": render_galera,
    "rabbitmq": render_rabbitmq,
    "mongodb": render_mongodb,
    "memcached": render_memcached,
    "haproxy": render_haproxy,
    "keepalived": render_keepalived,
    "openstack": render_openstack,
    "openstack-run": render_openstack_run,
    "agent": render_agent,
    "evacuator": render_evacuator,
    "fingerprints": render_fingerprints,
    "kernel": render_kernel,
}


def render_all(spec: Spec, secrets: Secrets) -> Tree:
    tree: dict[str, dict[str, RenderedFile]] = {n.name: {} for n in spec.nodes}
    for component, renderer in RENDERERS.items():
        for host, files in renderer(spec, secrets).items():
            for f in files:
                if f.path in tree[host]:
                    # Two renderers claiming one file is a bug, not an input error.
                    raise RuntimeError(f"{component} renders {f.path} on {host} a second time")
                tree[host][f.path] = f
    return tree
