"""The faults hastack injects, as data, and whom each one hits. Pure."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import Enum

from hastack.lab.layout import LabHost, Layout
from hastack.spec.model import Spec
from hastack.status.model import Facts, galera_writer

# Every cluster healthy again after every host was off at once: a cold start of the whole room. On
# the lab's 2 cores, five hosts booting every daemon and API together answered SSH only after
# ~100 s, RabbitMQ's starts took 140-146 s and every cluster was healthy after 455 s (b5d8b79).
COLD_START_BOUND_S = 600.0


class Fault(Enum):
    KILL_HOST = "kill-host"  # the whole host at once, as a power cut: no goodbye
    KILL_PROCESSES = "kill-processes"  # SIGKILL to named processes on the host
    CUT_LINKS = "cut-links"  # the host's links taken down from outside, as cables pulled
    POWER_LOSS = "power-loss"  # every host off at once, on again after the power returns
    LOSS = "loss"  # random packet loss on the host's links, both ways, for a bounded window
    SPLIT = "split"  # the host and its peers cannot reach each other; clients still reach everyone
    DELAY = "delay"  # every frame to and from the host held back, both ways, for a bounded window
    ROLLING = "rolling-restart"  # every host rebooted cleanly in turn, each waited on until healthy


class Cut(Enum):
    """CUT_LINKS: which of the host's links (link 0: management; 1, 2: the corosync rings)."""

    ALL = "every link"
    RINGS = "the corosync rings"
    MANAGEMENT = "the management network"
    FIRST_RING = "the first corosync ring"

    def takes(self, link: int) -> bool:
        return {Cut.ALL: True, Cut.RINGS: link > 0, Cut.MANAGEMENT: link == 0, Cut.FIRST_RING: link == 1}[self]


class Aim(Enum):
    VIP_HOLDER = "vip-holder"
    GALERA_WRITER = "galera-writer"
    EVERY_HOST = "every-host"
    COMPUTE = "compute"  # a compute instance HA evacuates, with servers pinned on it before the fault


@dataclass(frozen=True)
class Splice:
    """A delay line put into a host's links: commands around the line's own process."""

    prepare: tuple[str, ...]  # before the line runs: its veth pairs
    attach: tuple[str, ...]  # once it runs: the bridges switched over to it
    # While it still runs: the host's veths back on their bridges. For a moment frames pass
    # twice (TCP drops duplicates) rather than not at all (a lost SYN waits 1 s).
    reattach: tuple[str, ...]
    restore: tuple[str, ...]  # once it stopped: the same again where needed, and its veth pairs gone
    pairs: tuple[tuple[str, str], ...]  # (the host's veth, the line's end of the pair)


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    fault: Fault
    aim: Aim
    processes: tuple[str, ...] = ()  # exact process names
    # Or a unit's main process (KILL_PROCESSES), for daemons whose process name is their
    # interpreter's (hastack runs nova-compute as `python3 -c ...`).
    unit: str = ""
    # Units kept from restarting (masked until the next boot): a crash that
    # systemd undoes within a second is not the crash this scenario is about.
    keep_down: tuple[str, ...] = ()
    cut: Cut = Cut.ALL  # CUT_LINKS: which links
    # Nothing may happen: no fence, the VIP stays where it is, no operation fails or stalls.
    quiet: bool = False
    # Every cluster healthy again within this, or the run fails. 360 s: a fenced host's reboot and
    # rejoin takes ~60 s on an idle machine, but the returning host's RabbitMQ start competes with
    # every OpenStack daemon starting beside it: 158 s of a 237 s heal in a fast-tier run here (the
    # unit's 180 s limit, for rabbitmq-server#6034, no longer kills such a start).
    heal_bound_s: float = 360.0
    # `hastack recover` runs once the hosts are back: the operator's one command after an outage.
    recover: bool = False
    off_s: float = 5.0  # POWER_LOSS: how long the power stays off
    loss_percent: int = 0  # LOSS: share of frames dropped, each way
    delay_ms: int = 0  # DELAY: added to every frame, each way (so twice this to every round trip)
    # A fault that ends by itself after this long (LOSS); healthy counts only after it ended.
    duration_s: float | None = None
    # Aim.COMPUTE: servers pinned on the target before the fault; whether instance HA must move them
    # (the compute is lost) or leave them (it is not), and by when they must be ACTIVE elsewhere.
    instances: int = 0
    moves: bool = True
    # 180 s: under the chaos workload on this 2-core lab each rebuild took 40-70 s on the other
    # compute, the last server ACTIVE there 80-82 s after the fault (dev lab, crash and isolation);
    # a failure, not a slow lab, is what this bound is for. bench/chaos.py gives the medians.
    evacuate_bound_s: float = 180.0
    # The workload's server every 5 s (api-servers). Off for the compute scenarios: with one of two
    # computes gone, every new server and every rebuild queued on the other one's nova-compute, whose
    # builds took 40-280 s each on this 2-core lab, and the pinned servers were ACTIVE elsewhere after
    # 351 s instead of ~10 s: a measure of the lab's nova throughput, not of instance HA.
    server_stream: bool = True

    def impair_commands(self, lay: Layout, host: str, table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """LOSS or SPLIT: nft commands on the lab's bridges that impair `host`'s links, and the undo.

        nftables' bridge family, not tc netem: the kernel of the machine hastack's lab was
        built on has no sch_netem (latency has its own delay line, see `splice`), and
        filtering at the bridge needs nothing inside the hosts. Only forwarded frames are
        touched: the client's port and the power switch (the bridge's own address) stay
        reachable from every host, so fencing works across a split as it would over an
        out-of-band IPMI network.
        """
        ports = [i.outside for i in lay.host(host).interfaces]
        add = [f"nft add table bridge {table}",
               f"nft add chain bridge {table} impair {{ type filter hook forward priority 0 ; policy accept ; }}"]
        if self.fault is Fault.SPLIT:
            mine = "{ " + ", ".join(ports) + " }"
            peers = "{ " + ", ".join(i.outside for h in lay.hosts if h.name != host for i in h.interfaces) + " }"
            verdict = "drop"
            pairs = [f"iifname {mine} oifname {peers}", f"iifname {peers} oifname {mine}"]
        else:
            verdict = f"numgen random mod 100 lt {self.loss_percent} drop"
            pairs = [f"{way} {p}" for p in ports for way in ("iifname", "oifname")]
        add += [f"nft add rule bridge {table} impair {pair} {verdict}" for pair in pairs]
        return tuple(add), (f"nft delete table bridge {table}",)

    def splice(self, lay: Layout, host: str) -> Splice:
        """DELAY: how to put a delay line into each of `host`'s links, and take it out again.

        Per link a veth pair: one end on the link's bridge in place of the host's
        veth, the other end and the host's veth for the delay line to read and
        write. Neither end may talk for this machine meanwhile (no ARP replies
        from the machine's own addresses, no IPv6 of its own), or the host would
        see this machine answer on a wire that is not the bridge.
        """
        prepare: list[str] = []
        attach: list[str] = []
        reattach: list[str] = []
        restore: list[str] = []
        pairs: list[tuple[str, str]] = []
        for i in lay.host(host).interfaces:
            bridge = lay.links[i.link].bridge
            on_bridge, line_end = f"{i.outside}s", f"{i.outside}f"
            prepare += [f"ip link add {on_bridge} type veth peer name {line_end}",
                        f"sysctl -qw net.ipv6.conf.{line_end}.disable_ipv6=1",
                        f"ip link set {line_end} arp off up", f"ip link set {i.outside} arp off",
                        f"ip link set {on_bridge} up"]
            attach += [f"ip link set {on_bridge} master {bridge}", f"ip link set {i.outside} nomaster"]
            reattach.append(f"ip link set {i.outside} master {bridge} arp on up")
            restore += [reattach[-1], f"ip link del {on_bridge}"]
            pairs.append((i.outside, line_end))
        return Splice(tuple(prepare), tuple(attach), tuple(reattach), tuple(restore), tuple(pairs))

    def kill_command(self) -> tuple[str, ...]:
        """The command run on the target for KILL_PROCESSES (its units masked first, when kept down)."""
        if self.unit:
            # Its main process, by the PID systemd holds (`systemctl kill` cannot signal through the lab
            # hosts' cgroups); 0 when it is not running, which must never reach kill.
            unit = shlex.quote(self.unit)
            return ("sh", "-c", f'pid=$(systemctl show --property MainPID --value {unit}); '
                                f'[ "${{pid:-0}}" -gt 0 ] && kill -KILL "$pid"')
        kill = ("pkill", "--signal", "KILL", "--exact", "|".join(self.processes))
        if not self.keep_down:
            return kill
        mask = ("systemctl", "mask", "--runtime", "--quiet", *self.keep_down)
        return ("sh", "-c", f"{shlex.join(mask)} && {shlex.join(kill)}")

    def links_to_cut(self, host: LabHost) -> tuple[str, ...]:
        """CUT_LINKS: the host-side veths to take down (link 0 is management, the rest the rings)."""
        return tuple(i.outside for i in host.interfaces if self.cut.takes(i.link))


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("host-crash", "the VIP holder's whole host killed at once; the cluster fences it and it reboots",
             Fault.KILL_HOST, Aim.VIP_HOLDER),
    Scenario("stack-crash", "corosync and pacemaker killed on the VIP holder (and kept down) while haproxy and "
             "the VIP keep running there; fencing must leave exactly one holder", Fault.KILL_PROCESSES,
             Aim.VIP_HOLDER, processes=("corosync", "pacemakerd", "pacemaker-.*"),
             keep_down=("corosync", "pacemaker")),
    Scenario("isolation", "every link of the VIP holder cut (as if unplugged): the others fence it and take "
             "over", Fault.CUT_LINKS, Aim.VIP_HOLDER),
    Scenario("ring-loss", "both corosync rings of the VIP holder cut while clients still reach it: the "
             "majority fences it before taking the VIP, never two holders", Fault.CUT_LINKS, Aim.VIP_HOLDER,
             cut=Cut.RINGS),
    Scenario("mgmt-loss", "the VIP holder's management (client) network cut for 30 s while its corosync rings "
             "stay up: the VIP, the galera writer and every leader leave it; back by themselves once the link "
             "returns", Fault.CUT_LINKS, Aim.VIP_HOLDER, cut=Cut.MANAGEMENT, duration_s=30.0),
    Scenario("link1-loss", "the VIP holder's first corosync ring cut for 30 s (the guide's reason for two rings): "
             "nothing may happen, no fence, no VIP move, no operation failed or stalled", Fault.CUT_LINKS,
             Aim.VIP_HOLDER, cut=Cut.FIRST_RING, duration_s=30.0, quiet=True),
    Scenario("power-loss", "every host of the lab off at once (the whole room), on again 5 s later; "
             "`hastack recover` brings every cluster back without a person choosing a node",
             Fault.POWER_LOSS, Aim.EVERY_HOST, recover=True, heal_bound_s=COLD_START_BOUND_S),
    Scenario("link-loss", "10% of frames dropped at random, each way, on every link of the VIP holder for 30 s: "
             "lossy but alive; nothing may be lost and no cluster may split", Fault.LOSS, Aim.VIP_HOLDER,
             loss_percent=10, duration_s=30.0),
    Scenario("link-latency", "100 ms added each way to every frame on every link of the VIP holder for 30 s: "
             "slow but alive; nothing may be lost, no cluster may split and the VIP must not move",
             Fault.DELAY, Aim.VIP_HOLDER, delay_ms=100, duration_s=30.0),
    Scenario("split", "a 2/1 split: the VIP holder and every other cluster host stop reaching each other on "
             "every network for 30 s while the client still reaches all of them; only the majority may "
             "answer", Fault.SPLIT, Aim.VIP_HOLDER, duration_s=30.0),
    Scenario("rolling-restart", "every host rebooted cleanly, one at a time, the next only once every "
             "cluster is healthy again: a maintenance window as users see it", Fault.ROLLING, Aim.EVERY_HOST,
             heal_bound_s=1200.0),
    Scenario("service-crash", "mariadb killed on the galera writer; systemd restarts it, haproxy moves writes "
             "to a backup meanwhile", Fault.KILL_PROCESSES, Aim.GALERA_WRITER, processes=("mariadbd",)),
    # Instance HA: two servers pinned on a compute first.
    Scenario("compute-crash", "a compute with two servers loses power: pacemaker fences it, and only then "
             "are its servers rebuilt on another compute", Fault.KILL_HOST, Aim.COMPUTE, instances=2,
             server_stream=False),
    Scenario("compute-isolation", "every link of a compute with two servers cut (it keeps running, unseen): "
             "it must be fenced before anything moves, or its servers would run twice", Fault.CUT_LINKS,
             Aim.COMPUTE, instances=2, server_stream=False),
    Scenario("compute-service-crash", "nova-compute killed on a compute with two servers: systemd restarts "
             "it, pacemaker_remote never stopped, and nothing is fenced or evacuated", Fault.KILL_PROCESSES,
             Aim.COMPUTE, unit="nova-compute", instances=2, moves=False, server_stream=False),
)}


EVERY_HOST = "every host"


class NoTarget(Exception):
    pass


def _compute(spec: Spec, facts: Facts) -> str:
    """The first compute instance HA evacuates that the evacuator last saw healthy, with another
    healthy compute to take its servers."""
    if not spec.remote_nodes():
        raise NoTarget("instance_ha is off in this spec: no compute is watched or evacuated")
    seen = facts.evacuator.hosts if facts.evacuator else {}
    healthy = [n.name for n in spec.remote_nodes() if seen.get(n.name) and seen[n.name].state == "healthy"]
    movable = [n.name for n in spec.remote_nodes() if n.evacuate and n.name in healthy]
    if not movable or len(healthy) < 2:
        raise NoTarget(f"needs a healthy compute that is evacuated and another to take its servers (healthy: "
                       f"{', '.join(healthy) or 'none'})")
    return movable[0]


def pick_target(scenario: Scenario, spec: Spec, facts: Facts) -> str:
    """The host the fault hits, from what status saw; refuses rather than guessing."""
    if scenario.aim is Aim.EVERY_HOST:
        return EVERY_HOST
    if scenario.aim is Aim.COMPUTE:
        return _compute(spec, facts)
    if scenario.aim is Aim.VIP_HOLDER:
        vip = spec.vips[0].address
        holders = sorted(h for h, addrs in facts.addresses.items() if vip in addrs)
        if len(holders) != 1:
            raise NoTarget(f"the VIP {vip} has {len(holders)} holders ({', '.join(holders) or 'none'})")
        return holders[0]
    writer = galera_writer(facts)
    if writer is None or writer not in {n.name for n in spec.galera_nodes()}:
        raise NoTarget(f"no galera writer behind haproxy (saw {writer!r})")
    return writer
