"""HA7xx: the OpenStack side of HA."""

from __future__ import annotations

from collections.abc import Iterator

from hastack.checks.finding import Hit, Severity, rule
from hastack.spec.catalog import NO_DAEMON, RUN
from hastack.spec.model import Role, Spec

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


@rule("HA701", W, "neutron routers without L3 HA",
      why="""A legacy router lives on one L3 agent: when its network node dies, every
      tenant network behind it loses its gateway until something moves the
      router (the guide's rescheduling script). VRRP routers fail over in seconds.""",
      fix="Set openstack.neutron.l3_ha: true with two or more network nodes.")
def l3_ha(spec: Spec) -> Iterator[Hit]:
    if "neutron" in spec.openstack.services and not spec.openstack.neutron.l3_ha:
        yield Hit("neutron", "l3_ha = false")


@rule("HA702", W, "routers cannot move off a dead L3 agent",
      why="""Without l3_ha and allow_automatic_l3agent_failover a router stays on a
      dead agent until an operator moves it.""",
      fix="Enable openstack.neutron.allow_automatic_l3agent_failover (or l3_ha).")
def l3_failover(spec: Spec) -> Iterator[Hit]:
    n = spec.openstack.neutron
    if "neutron" in spec.openstack.services and not n.l3_ha and not n.allow_automatic_l3agent_failover:
        yield Hit("neutron", "no automatic router failover")


@rule("HA703", W, "fewer than two network nodes",
      why="L3 HA and DHCP HA need at least two network nodes to place a standby on.",
      fix="Give the network role to two or more nodes.")
def network_nodes(spec: Spec) -> Iterator[Hit]:
    if "neutron" in spec.openstack.services and len(spec.with_role(Role.NETWORK)) < 2:
        yield Hit("neutron", f"{len(spec.with_role(Role.NETWORK))} network node(s)")


@rule("HA704", W, "one L3 agent per router",
      why="max_l3_agents_per_router 1 makes an HA router with no standby.",
      fix="Set openstack.neutron.max_l3_agents_per_router to 2 or more (0 means every network node).")
def one_agent(spec: Spec) -> Iterator[Hit]:
    if "neutron" in spec.openstack.services and spec.openstack.neutron.max_l3_agents_per_router == 1:
        yield Hit("neutron", "max_l3_agents_per_router = 1")


@rule("HA705", INFO, "OpenStack services hastack fronts but does not run",
      why="""hastack deploys and runs keystone, glance, placement, neutron-server, nova,
      cinder (API and scheduler), heat and horizon (Debian bookworm's packages). The
      other services of openstack.services (nova's SPICE console proxy) get their HA
      settings and a haproxy frontend only: their servers are yours to run, and status
      reports those backends without judging them.""",
      fix="Run those services yourself behind the rendered frontends, or drop them from openstack.services.")
def not_run(spec: Spec) -> Iterator[Hit]:
    others = [s for s in spec.openstack.services if s not in RUN and s not in NO_DAEMON]
    if others:
        yield Hit("openstack", "fronted, not run: " + ", ".join(others))


# Below this bcrypt cost a stolen keystone database gives up weak human passwords quickly.
WEAK_ROUNDS = 10


@rule("HA706", INFO, "cheap keystone password hashes",
      why="""openstack.password_hash_rounds below 10 makes each login cheap (bcrypt at 4
      rounds: ~1 ms of CPU, at 12: ~250 ms), which keeps logins fast on a CPU-starved
      controller while a failed host's services restart. Generated passwords (every
      account hastack creates) lose nothing; a password a human chose can be brute-forced
      from a stolen keystone database.""",
      fix="Keep it below 10 only where every password is generated; otherwise 12 (keystone's default).")
def weak_hashes(spec: Spec) -> Iterator[Hit]:
    rounds = spec.openstack.password_hash_rounds
    if "keystone" in spec.openstack.services and rounds < WEAK_ROUNDS:
        yield Hit("keystone", f"password_hash_rounds = {rounds}")
