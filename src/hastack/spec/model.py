"""The cluster spec: a validated, immutable description of an HA control plane.

Only shape and single-field rules live here (pydantic). Rules that relate
fields to each other (a VIP inside its network, a galera node that exists)
live in ``references.py`` so each error can name the exact field it is about.
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from hastack.spec.timing import Timing

# Names end up in config files, XML ids, DNS-ish host names and shell
# commands: a conservative charset makes injection impossible by construction.
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
Interface = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,15}$")]
# Values copied into fence-agent parameters: no quotes, spaces, newlines or
# shell metacharacters.
SafeValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.,:/@%+=-]{1,255}$")]
ParamKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
# Printed to terminals: no control character (a newline, an escape sequence) gets through.
Reason = Annotated[str, StringConstraints(min_length=10, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]
Code = Annotated[str, StringConstraints(pattern=r"^HA[0-9]{3}$")]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Role(StrEnum):
    CONTROLLER = "controller"
    NETWORK = "network"
    COMPUTE = "compute"
    STORAGE = "storage"
    ARBITRATOR = "arbitrator"


class Fence(Frozen):
    """A fence (STONITH) device that powers this node off from outside."""

    agent: Annotated[str, StringConstraints(pattern=r"^fence_[a-z0-9_]{1,40}$")]
    params: dict[ParamKey, SafeValue] = Field(default_factory=dict)
    # Seconds to wait before fencing this node: the two-node tie-breaker.
    delay: int = Field(default=0, ge=0, le=120)


class Node(Frozen):
    name: Name
    roles: tuple[Role, ...] = Field(min_length=1)
    address: IPv4Address
    heartbeat: tuple[IPv4Address, ...] = Field(default=(), max_length=8)
    interface: Interface = "eth0"
    fence: Fence | None = None
    # With instance_ha: a compute whose instances stay put when it fails (it is fenced all the same).
    evacuate: bool = True

    def has(self, role: Role) -> bool:
        return role in self.roles


class Networks(Frozen):
    management: IPv4Network
    heartbeat: tuple[IPv4Network, ...] = Field(default=(), max_length=8)
    # Besides every other node's management address, what a VIP holder pings to know it still
    # reaches its clients (a gateway): a node that reaches none of them gives the VIP up.
    ping_targets: tuple[IPv4Address, ...] = Field(default=(), max_length=16)

    @model_validator(mode="after")
    def _targets_on_management(self) -> Networks:
        outside = [str(a) for a in self.ping_targets if a not in self.management]
        if outside:
            raise ValueError(f"ping_targets {', '.join(outside)} not in the management network {self.management}")
        return self


class Vip(Frozen):
    name: Name
    address: IPv4Address
    # Which network (by name: "management" or "heartbeatN") the address lives in.
    network: Literal["management"] = "management"


class VipManager(StrEnum):
    """Who moves the VIPs.

    pacemaker: IPaddr2 in the CIB; a VIP moves only after its old holder is
    fenced (never two holders), seconds after a crash (corosync's failover).
    keepalived: VRRP alone; sub-second, but no quorum and no fencing.
    keepalived-quorum: VRRP moves the address (sub-second) and only a node in
    corosync's quorate partition may hold it; pacemaker still runs haproxy
    and fences every node that leaves the membership.
    """

    PACEMAKER = "pacemaker"
    KEEPALIVED = "keepalived"
    KEEPALIVED_QUORUM = "keepalived-quorum"

    @property
    def runs_pacemaker(self) -> bool:
        return self is not VipManager.KEEPALIVED

    @property
    def runs_keepalived(self) -> bool:
        return self is not VipManager.PACEMAKER


class Corosync(Frozen):
    nodes: tuple[Name, ...] = ()
    transport: Literal["knet", "udpu", "udp"] = "knet"
    crypto: bool = True


class Pacemaker(Frozen):
    fencing: bool = True
    no_quorum_policy: Literal["stop", "freeze", "ignore", "demote", "suicide"] = "stop"
    resource_stickiness: int = Field(default=100, ge=0, le=1_000_000)
    # Preferred VIP holder (the guide's `location cli-prefer-VIP`), optional.
    vip_preferred_node: Name | None = None
    time_sync: Literal["chrony", "ntp", "none"] = "chrony"


class SstMethod(StrEnum):
    MARIABACKUP = "mariabackup"
    RSYNC = "rsync"
    MYSQLDUMP = "mysqldump"
    XTRABACKUP = "xtrabackup"


class Galera(Frozen):
    enabled: bool = True
    nodes: tuple[Name, ...] = ()
    arbitrator: Name | None = None
    # The single node haproxy sends writes to; the others are backups.
    writer: Name | None = None
    # "single" (one writer + backups) or the guide's "all" (every node takes writes).
    writers: Literal["single", "all"] = "single"
    health_check: Literal["http", "tcp"] = "http"
    sst_method: SstMethod = SstMethod.MARIABACKUP
    donor: Name | None = None
    cluster_name: Name = "openstack"
    buffer_pool_mb: int = Field(default=512, ge=64, le=1_048_576)
    gcache_mb: int = Field(default=512, ge=64, le=1_048_576)
    ignore_split_brain: bool = False


class QueueType(StrEnum):
    QUORUM = "quorum"
    MIRRORED = "mirrored"
    CLASSIC = "classic"


class RabbitMQ(Frozen):
    enabled: bool = True
    nodes: tuple[Name, ...] = ()
    queue_type: QueueType = QueueType.QUORUM
    ram_nodes: tuple[Name, ...] = ()
    # Unset: pause_minority, or autoheal for two nodes (`partition_mode`).
    partition_handling: Literal["pause_minority", "autoheal", "ignore"] | None = None
    management: bool = True
    vhost: Annotated[str, StringConstraints(pattern=r"^/?[a-z0-9_-]{0,32}$")] = "/"
    user: Name = "openstack"
    guest_user: bool = False
    via_haproxy: bool = False

    @property
    def partition_mode(self) -> str:
        """cluster_partition_handling as rendered.

        Two nodes get autoheal: under pause_minority the survivor of any failure
        pauses too (one of two is no majority), and when the peer returns the
        paused node's restart races the peer's boot; in the lab it failed with
        incompatible_feature_flags and then neither node started.
        """
        if self.partition_handling is not None:
            return self.partition_handling
        return "autoheal" if len(self.nodes) == 2 else "pause_minority"


class MongoMember(Frozen):
    node: Name
    priority: float = Field(default=1.0, ge=0, le=1000)
    votes: Literal[0, 1] = 1


class MongoDB(Frozen):
    enabled: bool = True
    replica_set: Name = "rs0"
    members: tuple[MongoMember, ...] = ()
    arbiter: Name | None = None
    via_haproxy: bool = False


class Memcached(Frozen):
    nodes: tuple[Name, ...] = ()
    # The guide sends every client to one memcached through haproxy (backups
    # behind it) so all of them share one cache.
    via_haproxy: bool = True


class HaproxyDefaults(Frozen):
    # Extra `defaults` lines an operator carried over; checked for keywords
    # that no longer exist (contimeout, clitimeout, srvtimeout).
    extra: tuple[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_. :/-]{1,200}$")], ...] = ()


class Haproxy(Frozen):
    nodes: tuple[Name, ...] = ()
    services: tuple[Name, ...] = ()
    stats_port: int = Field(default=1993, ge=1, le=65535)
    stats_user: Name = "hastack"
    health_port: int = Field(default=9200, ge=1, le=65535)
    defaults: HaproxyDefaults = HaproxyDefaults()


class Neutron(Frozen):
    l3_ha: bool = True
    max_l3_agents_per_router: int = Field(default=0, ge=0, le=16)
    allow_automatic_l3agent_failover: bool = True
    dhcp_agents_per_network: int = Field(default=0, ge=0, le=16)


class Glance(Frozen):
    # Where images live. `file`: a directory every controller mounts (NFS in production; the lab
    # binds one host directory into every controller): an image uploaded through one controller
    # must be readable through the others.
    store: Literal["file"] = "file"
    path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9_./-]{1,200}$")] = "/var/lib/glance/images"


class OpenStack(Frozen):
    services: tuple[Name, ...] = ()
    region: Name = "regionone"
    neutron: Neutron = Neutron()
    # Per API, per controller: uwsgi processes (or the API's own workers) and threads per process.
    # Debian's defaults (8-16 processes of 32 threads) take gigabytes on a controller.
    api_workers: int = Field(default=2, ge=1, le=64)
    api_threads: int = Field(default=4, ge=1, le=64)
    # keystone's bcrypt cost (2^rounds): ~0.25 s of CPU per password login at 12, keystone's default.
    # Every account hastack creates has a generated 32-character password (~190 bits) no cost protects
    # further; a human's chosen password does need it. Applies to passwords set after the change.
    password_hash_rounds: int = Field(default=12, ge=4, le=31)
    glance: Glance = Glance()


class InstanceHA(Frozen):
    """Computes watched by pacemaker (pacemaker_remote on each): a failed one is fenced through its
    own device, then its instances are rebuilt on the other computes (docs/instance-ha.md)."""

    enabled: bool = False
    # More computes than this failed at once is taken for a network or control-plane fault: they are
    # fenced, nothing is evacuated unless the operator says so. None: half of them, rounded down.
    max_failed: int | None = Field(default=None, ge=0, le=10_000)
    # Computes kept empty (disabled in nova) until another fails: the room evacuations need.
    reserved: tuple[Name, ...] = ()


class Tls(Frozen):
    """Encryption on the cluster's own links, with a CA hastack derives from one generated secret
    (credentials/pki.py). Today: galera replication and state transfers (TLS offered to its
    clients), MongoDB and AMQP (required of every client), the haproxy stats page and the APIs on
    the VIP (HTTPS, ended by haproxy). Turning it on or off for a running galera or MongoDB cluster
    needs every member stopped: deploy refuses it (docs/tls.md)."""

    enabled: bool = False


class Waiver(Frozen):
    code: Code
    reason: Reason
    # Limit the waiver to one subject (a node, a service); None waives all.
    subject: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.:-]{1,64}$")] | None = None


class Spec(Frozen):
    cluster: Name
    networks: Networks
    nodes: tuple[Node, ...] = Field(min_length=1, max_length=10_000)
    vips: tuple[Vip, ...] = Field(min_length=1, max_length=16)
    vip_manager: VipManager = VipManager.PACEMAKER
    timing: Timing = Timing()
    corosync: Corosync = Corosync()
    pacemaker: Pacemaker = Pacemaker()
    galera: Galera = Galera()
    rabbitmq: RabbitMQ = RabbitMQ()
    mongodb: MongoDB = MongoDB()
    memcached: Memcached = Memcached()
    haproxy: Haproxy = Haproxy()
    openstack: OpenStack = OpenStack()
    instance_ha: InstanceHA = InstanceHA()
    tls: Tls = Tls()
    waivers: tuple[Waiver, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _fill_placement(cls, data: Any) -> Any:
        """Place components by role where the spec does not list nodes.

        Done before validation so the model stays frozen and every later
        reader sees the resolved placement, not a rule to re-derive.
        """
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            return data
        return fill_placement(data)

    # Lookups used everywhere; cheap (the node list is small for control planes,
    # and a dict per call keeps the model free of derived state).
    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def with_role(self, role: Role) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.has(role))

    def corosync_nodes(self) -> tuple[Node, ...]:
        return tuple(self.node(n) for n in self.corosync.nodes)

    def galera_nodes(self) -> tuple[Node, ...]:
        return tuple(self.node(n) for n in self.galera.nodes) if self.galera.enabled else ()

    def galera_writer(self) -> Node:
        return self.node(self.galera.writer or self.galera.nodes[0])

    def rabbit_nodes(self) -> tuple[Node, ...]:
        return tuple(self.node(n) for n in self.rabbitmq.nodes) if self.rabbitmq.enabled else ()

    def mongo_members(self) -> tuple[tuple[MongoMember, Node], ...]:
        if not self.mongodb.enabled:
            return ()
        return tuple((m, self.node(m.node)) for m in self.mongodb.members)

    def electable_mongo_nodes(self) -> tuple[Node, ...]:
        """The members that may become primary (priority above 0): each runs the mongo watch."""
        return tuple(node for m, node in self.mongo_members() if m.priority > 0)

    def haproxy_nodes(self) -> tuple[Node, ...]:
        return tuple(self.node(n) for n in self.haproxy.nodes)

    def remote_nodes(self) -> tuple[Node, ...]:
        """Hosts pacemaker watches through pacemaker_remote: the computes, with instance HA."""
        return self.with_role(Role.COMPUTE) if self.instance_ha.enabled else ()

    def evacuator_nodes(self) -> tuple[Node, ...]:
        """Where pacemaker may run instance HA's evacuator: the cluster's members that are controllers."""
        if not self.remote_nodes():
            return ()
        return tuple(n for n in self.corosync_nodes() if n.has(Role.CONTROLLER))

    def memcached_nodes(self) -> tuple[Node, ...]:
        return tuple(self.node(n) for n in self.memcached.nodes)

    def ping_targets(self, node: Node) -> tuple[str, ...]:
        """What `node` pings to know it reaches the management network: every other node there, and
        the spec's own targets (a gateway). Never itself: its own address answers with the link down."""
        return tuple(str(n.address) for n in self.nodes if n.name != node.name) + tuple(
            str(a) for a in self.networks.ping_targets)


# What hastack runs by default. cinder, heat and horizon run too when listed; they are not in the
# default yet: with them a host crash in the 2-core CI lab once did not heal within its 360 s bound.
DEFAULT_SERVICES = ("keystone", "glance", "nova", "placement", "neutron")
EVERY_SERVICE = (*DEFAULT_SERVICES, "cinder", "heat", "horizon")


def _fill(data: dict[str, Any], key: str, field: str, value: Any, *, if_absent: bool = False) -> None:
    """data[key][field] = value where the spec left it empty (or, `if_absent`, left it out).

    A section of the wrong type is left as it is: validation reports it with its line."""
    section = data.get(key)
    section = {} if section is None else section
    if not isinstance(section, dict):
        return
    if (field not in section) if if_absent else not section.get(field):
        data[key] = {**section, field: value}


def fill_placement(data: dict[str, Any]) -> dict[str, Any]:
    """Return raw spec data with empty node lists filled in from roles."""
    data = dict(data)
    nodes = [n for n in data["nodes"] if isinstance(n, dict)]

    def named(*roles: str) -> list[str]:
        return [str(n.get("name")) for n in nodes if any(r in (n.get("roles") or []) for r in roles)]

    controllers, arbitrators = named("controller"), named("arbitrator")
    _fill(data, "corosync", "nodes", named("controller", "network", "arbitrator"))
    _fill(data, "galera", "nodes", controllers)
    if arbitrators:
        _fill(data, "galera", "arbitrator", arbitrators[0], if_absent=True)
    _fill(data, "rabbitmq", "nodes", controllers)
    # The guide gives the first member a higher priority so it is the usual primary.
    _fill(data, "mongodb", "members", [{"node": name, "priority": 2 if i == 0 else 1}
                                       for i, name in enumerate(controllers)])
    if arbitrators and len(controllers) % 2 == 0:
        _fill(data, "mongodb", "arbiter", arbitrators[0], if_absent=True)
    for key in ("memcached", "haproxy"):
        _fill(data, key, "nodes", controllers)
    _fill(data, "openstack", "services", list(DEFAULT_SERVICES))
    openstack = data.get("openstack")
    if isinstance(data.get("haproxy"), dict) and not data["haproxy"].get("services"):
        from hastack.spec.catalog import endpoints_for

        services = openstack.get("services", []) if isinstance(openstack, dict) else []
        data["haproxy"] = {**data["haproxy"], "services": [e.name for e in endpoints_for(services)]}
    return data
