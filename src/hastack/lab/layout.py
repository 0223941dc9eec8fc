"""Where a spec's nodes live in the lab: bridges, links, addresses, boot files.

Pure: a `Layout` is computed from the spec alone, so `lab up`, `lab down` and
the tests agree on every name without asking the machine. The machine side
of each bridge takes the highest free address of its network (the deploy
reaches the hosts from there); the client host takes the next one down.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from hastack.spec.catalog import RUN
from hastack.spec.model import Role, Spec

# Linux caps interface names at 15 characters: "hs" + 5 hex + "-" + 7.
_IFNAMSIZ = 15


@dataclass(frozen=True)
class Link:
    """One network of the lab: a bridge on the machine, a veth per host."""

    index: int  # 0 = management, 1.. = heartbeat rings
    network: IPv4Network
    bridge: str
    gateway: IPv4Address  # the machine's own address on the bridge

    @property
    def mac(self) -> str:
        """The bridge's own MAC, fixed. Left alone, Linux gives a bridge its
        lowest port's MAC, so a host's veth leaving (a fence, a wipe) changes
        the gateway's MAC under every other host's ARP cache: their fence
        agents then miss the power switch for up to ~20 s (seen in CI)."""
        digest = hashlib.sha256(self.bridge.encode()).digest()
        return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))  # 02: locally administered, unicast


@dataclass(frozen=True)
class HostIf:
    link: int
    inside: str  # name inside the container (the spec's interface for management)
    outside: str  # host-side veth, attached to the link's bridge
    address: IPv4Address


@dataclass(frozen=True)
class LabHost:
    name: str
    index: int
    interfaces: tuple[HostIf, ...]
    # Directories shared by hosts (lab name, path inside the host): the lab's stand-in for NFS.
    shared: tuple[tuple[str, str], ...] = ()

    @property
    def address(self) -> IPv4Address:
        return self.interfaces[0].address


@dataclass(frozen=True)
class Layout:
    cluster: str
    tag: str  # short, stable id of this lab: keeps two labs' names apart
    links: tuple[Link, ...]
    hosts: tuple[LabHost, ...]
    client_netns: str
    client_veth: str
    client_address: IPv4Address

    @property
    def management(self) -> Link:
        return self.links[0]

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


def _top_free(network: IPv4Network, used: set[IPv4Address], skip: int = 0) -> IPv4Address:
    free = (a for a in reversed(list(network.hosts())) if a not in used)
    for _ in range(skip):
        next(free)
    return next(free)


def layout(spec: Spec) -> Layout:
    tag = hashlib.sha256(spec.cluster.encode()).hexdigest()[:5]
    nets = (spec.networks.management, *spec.networks.heartbeat)
    used: list[set[IPv4Address]] = [set() for _ in nets]
    used[0] |= {v.address for v in spec.vips}
    for node in spec.nodes:
        used[0].add(node.address)
        for i, hb in enumerate(node.heartbeat, start=1):
            used[i].add(hb)
    links = tuple(Link(i, net, f"hs{tag}-br{i}", _top_free(net, used[i])) for i, net in enumerate(nets))
    hosts = []
    for n, node in enumerate(spec.nodes):
        ifs = [HostIf(0, node.interface, f"hs{tag}-{n}m", node.address)]
        ifs += [HostIf(i, f"hb{i}", f"hs{tag}-{n}h{i}", hb) for i, hb in enumerate(node.heartbeat, start=1)]
        shared: tuple[tuple[str, str], ...] = ()
        if node.has(Role.CONTROLLER) and "glance" in RUN and "glance" in spec.openstack.services:
            shared = (("glance-images", spec.openstack.glance.path),)
        hosts.append(LabHost(node.name, n, tuple(ifs), shared))
    names = [i.outside for h in hosts for i in h.interfaces] + [link.bridge for link in links]
    if any(len(n) > _IFNAMSIZ for n in names):  # only past 999 nodes
        raise ValueError("the lab supports at most 999 hosts")
    return Layout(spec.cluster, tag, links, tuple(hosts), client_netns=f"hs{tag}-client",
                  client_veth=f"hs{tag}-cl", client_address=_top_free(nets[0], used[0], skip=1))


# The lab power switch listens on the management gateway at this port.
POWER_PORT = 7410
# Where the lab's fence agent finds the power switch's token on every host.
POWER_TOKEN_PATH = "/etc/hastack/lab-power.token"
FENCE_AGENT_PATH = "/usr/sbin/fence_hastack_lab"


@dataclass(frozen=True)
class BootFile:
    body: str
    mode: int = 0o644


def host_token(master: str, host: str) -> str:
    """`host`'s own credential for the switch, derived from the lab's secret: the switch keeps one
    secret, each host holds only its own, and a request says who made it."""
    return hmac.new(master.encode(), f"hastack-lab-power\0{host}".encode(), "sha256").hexdigest()


def fencers(lay: Layout) -> frozenset[str]:
    """The hosts that may run fence devices: those on the heartbeat rings (the cluster's possible
    members). A compute host without ring links may power nothing, as in production, where it has no
    credentials for the other servers' BMCs."""
    return frozenset(h.name for h in lay.hosts if any(i.link > 0 for i in h.interfaces))


def boot_files(lay: Layout, host: LabHost, authorized_key: str, power_token: str | None, fence_agent: str
               ) -> dict[str, BootFile]:
    """Files written into a host's root before it boots: who it is, how it is reached, how it is fenced."""
    hosts_lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    hosts_lines += [f"{h.address} {h.name}" for h in lay.hosts]
    files = {
        "/etc/hostname": BootFile(f"{host.name}\n"),
        "/etc/hosts": BootFile("# Written by hastack lab.\n" + "\n".join(hosts_lines) + "\n"),
        "/root/.ssh/authorized_keys": BootFile(authorized_key.strip() + "\n", 0o600),
        FENCE_AGENT_PATH: BootFile(fence_agent, 0o755),
    }
    if power_token is not None:  # this host's own credential: only hosts that may fence get one
        files[POWER_TOKEN_PATH] = BootFile(power_token.strip() + "\n", 0o600)
    for hif in host.interfaces:
        link = lay.links[hif.link]
        files[f"/etc/systemd/network/10-{hif.inside}.network"] = BootFile(
            f"# Written by hastack lab.\n[Match]\nName={hif.inside}\n\n[Network]\n"
            f"Address={hif.address}/{link.network.prefixlen}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        )
    return files
