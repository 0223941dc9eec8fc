"""memcached on each cache node, listening on its management address only."""

from __future__ import annotations

from hastack.credentials.model import Secrets
from hastack.render.files import RenderedFile, text
from hastack.spec.model import Spec

CONF = "/etc/memcached.conf"


def render_memcached(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    out: dict[str, list[RenderedFile]] = {}
    for node in spec.memcached_nodes():
        body = ("# Rendered by hastack.\n-u memcache\n-m 256\n-c 4096\n"
                f"-l {node.address}\n-p 11211\n-U 0\n")
        out[node.name] = [text(CONF, body)]
    return out
