"""Which certificate each node gets from the cluster's CA, and the files that carry them.

Each daemon gets its own copy of the node's key, owned by the user it runs as, so no key file
is shared between services (a service user reads only its own).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from hastack.credentials.pki import CA_SECRET, Authority, Issued
from hastack.render.files import RenderedFile
from hastack.spec.model import Node, Spec

# The CA for OpenStack's services (every node that runs one): they check the broker against it.
CA_PATH = "/etc/hastack/tls/ca.pem"


@dataclass(frozen=True)
class NodeTls:
    ca: bytes
    issued: Issued


def authority(spec: Spec, secrets: Mapping[str, str]) -> Authority | None:
    return _authority(spec.cluster, secrets[CA_SECRET]) if spec.tls.enabled else None


# Every renderer asks for the same CA and the same node certificates (a signature costs milliseconds; a
# thousand computes each get the CA file): made once per process.
@functools.lru_cache(maxsize=8)
def _authority(cluster: str, secret: str) -> Authority:
    return Authority(cluster, secret)


@functools.lru_cache(maxsize=4096)
def _node(ca: Authority, name: str, ips: tuple[str, ...]) -> NodeTls:
    return NodeTls(ca.cert, ca.issue(name, ("localhost",), ips))


def for_node(spec: Spec, secrets: Mapping[str, str], node: Node) -> NodeTls | None:
    """The node's certificate: its name and every address it serves on, plus loopback (hastack's
    own clients reach a daemon through an SSH tunnel to 127.0.0.1) and the VIPs (haproxy passes
    database and, where the spec says so, AMQP and mongo connections through to the node)."""
    ca = authority(spec, secrets)
    if ca is None:
        return None
    ips = (str(node.address), *(str(a) for a in node.heartbeat), *(str(v.address) for v in spec.vips), "127.0.0.1")
    return _node(ca, node.name, ips)


def files(tls: NodeTls, directory: str, owner: str = "root", group: str = "root",
          bundle: bool = False) -> list[RenderedFile]:
    """ca.pem and cert.pem (public) and key.pem (the owner's only), or one bundle.pem of certificate
    and key where the daemon wants them together."""
    ca = RenderedFile(f"{directory}/ca.pem", tls.ca)
    if bundle:
        return [ca, RenderedFile(f"{directory}/bundle.pem", tls.issued.bundle, 0o600, owner, group)]
    return [ca, RenderedFile(f"{directory}/cert.pem", tls.issued.cert),
            RenderedFile(f"{directory}/key.pem", tls.issued.key, 0o600 if group == "root" else 0o640, owner, group)]
