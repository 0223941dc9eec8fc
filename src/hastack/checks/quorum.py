"""HA1xx: corosync membership, quorum, fencing and the VIP manager."""

from __future__ import annotations

from collections.abc import Iterator

from hastack.checks.finding import Hit, Severity, rule
from hastack.spec.model import Role, Spec, VipManager

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def _voters(spec: Spec) -> int:
    return len(spec.corosync.nodes)


@rule("HA101", W, "two-node cluster with no third vote",
      why="""With two voters corosync runs in two_node mode: each side of a broken link
      keeps quorum alone and only fencing decides who survives; both nodes may
      fence each other at once.""",
      fix="""Add a small third node with the arbitrator role (a corosync vote, garbd,
      the MongoDB arbiter), as the seed topology does.""")
def two_node(spec: Spec) -> Iterator[Hit]:
    if _voters(spec) == 2:
        yield Hit("corosync", f"cluster members: {', '.join(spec.corosync.nodes)}")


@rule("HA102", W, "even number of cluster voters",
      why="""An even membership can split in half: neither half has a majority and
      everything stops, while an odd count tolerates the same failures with one
      node less.""",
      fix="Add or remove one voter (an arbitrator node is enough).")
def even_voters(spec: Spec) -> Iterator[Hit]:
    n = _voters(spec)
    if n > 2 and n % 2 == 0:
        yield Hit("corosync", f"{n} voters")


@rule("HA103", E, "cluster with a single member",
      why="One member is no cluster: its failure takes the VIP and haproxy with it.",
      fix="List at least three members (two controllers and an arbitrator).")
def single_member(spec: Spec) -> Iterator[Hit]:
    if _voters(spec) < 2:
        yield Hit("corosync", f"{_voters(spec)} member(s)")


@rule("HA104", W, "single heartbeat link",
      why="""The guide runs two corosync rings so that one failed switch or NIC does not
      look like a dead node; with one link a network blip means a failover (and
      a fence).""",
      fix="""List two networks under networks.heartbeat and a heartbeat address per
      network on each member.""")
def single_link(spec: Spec) -> Iterator[Hit]:
    if len(spec.networks.heartbeat) < 2:
        yield Hit("corosync", f"{max(len(spec.networks.heartbeat), 1)} link(s)")


@rule("HA105", W, "heartbeat links share a network",
      why="Two links on the same network fail together; the second link protects nothing.",
      fix="Put each heartbeat link on its own network (separate switch, separate NIC).")
def shared_links(spec: Spec) -> Iterator[Hit]:
    nets = [spec.networks.management, *spec.networks.heartbeat]
    hb = spec.networks.heartbeat
    for i, net in enumerate(hb):
        for other in nets[: i + 1]:
            if net.overlaps(other):
                yield Hit(f"heartbeat[{i}]", f"{net} overlaps {other}")
                break


@rule("HA106", E, "multiple heartbeat links without knet",
      why="""corosync 3 supports one link only with the udp and udpu transports; the
      second ring would be ignored or refused.""",
      fix="Use corosync.transport: knet (the default).")
def links_need_knet(spec: Spec) -> Iterator[Hit]:
    if spec.corosync.transport != "knet" and len(spec.networks.heartbeat) > 1:
        yield Hit("corosync", f"transport {spec.corosync.transport} with {len(spec.networks.heartbeat)} links")


@rule("HA107", E, "cluster traffic unencrypted",
      why="""Without crypto anyone on the heartbeat network can join the membership or
      forge messages; the guide's `secauth: off`.""",
      fix="Set corosync.crypto: true; hastack generates the authkey.")
def crypto_off(spec: Spec) -> Iterator[Hit]:
    if not spec.corosync.crypto:
        yield Hit("corosync", "crypto_cipher none")


@rule("HA110", E, "fencing disabled",
      why="""Without fencing a node that stops answering may still hold the VIP or
      write data: measured here, killing corosync on the VIP holder left two
      nodes answering for the VIP. Pacemaker calls stonith-enabled=false
      inappropriate for production.""",
      fix="Set pacemaker.fencing: true and give every cluster member a fence device.")
def fencing_off(spec: Spec) -> Iterator[Hit]:
    if not spec.pacemaker.fencing:
        yield Hit("pacemaker", "stonith-enabled=false")


@rule("HA111", E, "no-quorum-policy=ignore",
      why="""A partition that lost quorum keeps running resources: both halves of a
      split cluster raise the VIP (the guide's setting, for two nodes).""",
      fix="Use no-quorum-policy: stop and a third vote instead of ignoring quorum.")
def quorum_ignored(spec: Spec) -> Iterator[Hit]:
    if spec.pacemaker.no_quorum_policy == "ignore":
        yield Hit("pacemaker", "no-quorum-policy=ignore")


@rule("HA112", E, "cluster member without a fence device",
      why="""A member that cannot be fenced cannot be recovered safely: pacemaker
      blocks its resources until a human confirms the node is off.""",
      fix="Give the node a fence: block (IPMI, redfish or the lab agent).")
def unfenced(spec: Spec) -> Iterator[Hit]:
    if spec.pacemaker.fencing:
        for node in spec.corosync_nodes():
            if node.fence is None:
                yield Hit(node.name, f"{node.name} has no fence device")


@rule("HA113", E, "two-node fencing race",
      why="""With two voters both nodes can shoot each other at the same time after a
      link failure and the cluster ends with no node running.""",
      fix="""Give one node's fence device a delay (fence.delay: 10) so the other side
      always wins the race, or add an arbitrator.""")
def fence_race(spec: Spec) -> Iterator[Hit]:
    if _voters(spec) == 2 and spec.pacemaker.fencing:
        nodes = spec.corosync_nodes()
        if not any(n.fence and n.fence.delay for n in nodes):
            yield Hit("pacemaker", "neither fence device has a delay")


@rule("HA114", W, "fence password in the spec",
      why="A password written into the spec ends up in the CIB and in every copy of the spec.",
      fix="Use the agent's password_script parameter, pointing at a file only root can read.")
def fence_password(spec: Spec) -> Iterator[Hit]:
    for node in spec.nodes:
        if node.fence and any(k in ("password", "passwd") for k in node.fence.params):
            yield Hit(node.name, f"fence device of {node.name} carries a password")


@rule("HA120", W, "keepalived manages the VIP",
      why="""VRRP has no quorum and no fencing: a node cut off from the others makes
      itself MASTER too and two hosts answer for the VIP until the link heals.""",
      fix="Prefer vip_manager: pacemaker with fencing; with keepalived keep the VRRP traffic on a redundant link.")
def keepalived_split(spec: Spec) -> Iterator[Hit]:
    if spec.vip_manager is VipManager.KEEPALIVED:
        yield Hit("vip", "VIP moved by VRRP, without fencing")


@rule("HA122", INFO, "VRRP moves the VIP ahead of fencing",
      why="""With keepalived-quorum a backup takes the VIP after a few missed
      adverts (sub-second), before corosync has a new membership and before
      the old holder is fenced. A host crash costs well under a second; but
      if only the VRRP adverts are lost while clients still reach both nodes,
      both answer for the VIP until corosync sees the split and the cut-off
      node drops it (its quorum check) or is fenced: up to the corosync
      failover time plus one second.""",
      fix="Keep VRRP on the management network the clients use, so losing it means losing the clients too; "
          "choose vip_manager: pacemaker where two holders for a second are worse than a slower failover.")
def vrrp_ahead_of_fencing(spec: Spec) -> Iterator[Hit]:
    if spec.vip_manager is VipManager.KEEPALIVED_QUORUM:
        t = spec.timing
        yield Hit("vip", f"VRRP failover ~{t.keepalived_failover_ms()} ms; quorum loss seen after "
                         f"~{t.corosync_failover_ms(_voters(spec)) + 1000} ms")


@rule("HA123", W, "a VIP holder with one ping target",
      why="""A VIP holder gives the address up when it reaches no other node and no ping
      target on the management network (it lost its clients' network, rings up). With a
      single target, that target's own failure looks the same: the last haproxy node
      standing would give the VIP up too, and nobody holds it.""",
      fix="Add the management network's gateway (or another always-on address) to networks.ping_targets.")
def single_ping_target(spec: Spec) -> Iterator[Hit]:
    for node in spec.haproxy_nodes():
        if len(spec.ping_targets(node)) < 2:
            yield Hit(node.name, f"pings only {', '.join(spec.ping_targets(node)) or 'nothing'}")


@rule("HA121", E, "haproxy on fewer than two nodes",
      why="The VIP can only move to a node that runs haproxy; with one such node the VIP has nowhere to go.",
      fix="Run haproxy on at least two nodes (haproxy.nodes).")
def lonely_haproxy(spec: Spec) -> Iterator[Hit]:
    if len(spec.haproxy.nodes) < 2:
        yield Hit("haproxy", f"haproxy on {len(spec.haproxy.nodes)} node(s)")


@rule("HA130", W, "compute nodes without fencing",
      why="""Evacuating instances (nova host-evacuate, the guide's answer to a dead
      compute node) while the node may still be running starts a second copy of
      every instance on the same disk: fence first, then evacuate.""",
      fix="Give compute nodes a fence device, so evacuation can follow a confirmed power-off.")
def compute_fencing(spec: Spec) -> Iterator[Hit]:
    for node in spec.with_role(Role.COMPUTE):
        if node.fence is None:
            yield Hit(node.name, f"compute node {node.name} cannot be fenced")


@rule("HA131", INFO, "arbitrator also runs services",
      why="""The voting node should stay small and independent: a service on it
      competes with its only job, breaking ties.""",
      fix="Keep the arbitrator out of haproxy, rabbitmq and memcached lists.")
def busy_arbitrator(spec: Spec) -> Iterator[Hit]:
    for node in spec.with_role(Role.ARBITRATOR):
        busy = [name for name, nodes in (
            ("haproxy", spec.haproxy.nodes), ("rabbitmq", spec.rabbitmq.nodes),
            ("memcached", spec.memcached.nodes), ("galera", spec.galera.nodes),
        ) if node.name in nodes]
        if busy:
            yield Hit(node.name, f"{node.name} also runs {', '.join(busy)}")
