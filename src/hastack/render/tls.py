"""Which certificate each node gets from the cluster's CA, and the files that carry them.

Each daemon gets its own copy of the node's key, owned by the user it runs as, so no key file
is shared between services (a service user reads only its own).
"""

from __future__ import annotations

from dataclasses import dataclass

from hastack.credentials.model import Secrets
from hastack.credentials.pki import CA_SECRET, Authority, Issued
from hastack.render.files import RenderedFile
from hastack.spec.model import Node, Spec

# The CA for OpenStack's services (every node that runs one): they check the broker against it.
CA_PATH = "/etc/hastack/tls/ca.pem"


@dataclass(frozen=True)
class NodeTls:
    ca: bytes
    issued: Issued


def authority(spec: Spec, secrets: Secrets) -> Authority | None:
    return Authority(spec.cluster, secrets[CA_SECRET]) if spec.tls.enabled else None


def for_node(spec: Spec, secrets: Secrets, node: Node) -> NodeTls | None:
    """The node's certificate: its name and every address it serves on, plus loopback (hastack's
    own clients reach a daemon through an SSH tunnel to 127.0.0.1) and the VIPs (haproxy passes
    database and, where the spec says so, AMQP and mongo connections through to the node)."""
    ca = authority(spec, secrets)
    if ca is None:
        return None
    ips = (str(node.address), *(str(a) for a in node.heartbeat), *(str(v.address) for v in spec.vips), "127.0.0.1")
    return NodeTls(ca.cert, ca.issue(node.name, ("localhost",), ips))


def files(tls: NodeTls, directory: str, owner: str = "root", group: str = "root",
          bundle: bool = False) -> list[RenderedFile]:
    """ca.pem and cert.pem (public) and key.pem (the owner's only), or one bundle.pem of certificate
    and key where the daemon wants them together."""
    ca = RenderedFile(f"{directory}/ca.pem", tls.ca)
    if bundle:
        return [ca, RenderedFile(f"{directory}/bundle.pem", tls.issued.bundle, 0o600, owner, group)]
    return [ca, RenderedFile(f"{directory}/cert.pem", tls.issued.cert),
            RenderedFile(f"{directory}/key.pem", tls.issued.key, 0o600 if group == "root" else 0o640, owner, group)]
