"""What hastack knows about OpenStack API endpoints: ports, checks, history.

The 2014 guide fronts services that have since been removed (glance-registry,
ceilometer-api, the EC2 API, keystone's admin port); they stay in the catalog,
marked, so a spec that names them gets a check that explains, not a KeyError.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    name: str
    service: str  # the OpenStack project it belongs to
    port: int
    # HTTP check: path and the status a healthy API answers there. None: TCP check.
    check_path: str | None
    check_status: str = "200"
    # Sticky balancing for browser sessions and consoles; round robin otherwise.
    balance: str = "roundrobin"
    removed: str | None = None  # why and when, for endpoints that no longer exist
    http: bool = True


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("keystone", "keystone", 5000, "/v3", "200"),
    Endpoint("glance-api", "glance", 9292, "/healthcheck"),
    Endpoint("nova-api", "nova", 8774, "/", "200"),
    Endpoint("nova-metadata", "nova", 8775, "/", "200"),
    Endpoint("nova-novncproxy", "nova", 6080, None, balance="source", http=False),
    Endpoint("placement-api", "placement", 8778, "/", "200"),
    Endpoint("neutron-server", "neutron", 9696, "/", "200"),
    Endpoint("cinder-api", "cinder", 8776, "/healthcheck"),
    Endpoint("heat-api", "heat", 8004, "/healthcheck"),
    Endpoint("heat-api-cfn", "heat", 8000, "/healthcheck"),
    Endpoint("horizon", "horizon", 80, "/", "200-399", balance="source"),
    Endpoint("nova-spicehtml5proxy", "nova-spice", 6082, None, balance="source", http=False),
    # Removed since the guide was written.
    Endpoint(
        "keystone-admin", "keystone", 35357, "/v3",
        removed="keystone's separate admin API (35357) was removed in Queens; use 5000",
    ),
    Endpoint(
        "glance-registry", "glance", 9191, None, http=False,
        removed="glance-registry was removed in Ussuri; glance-api talks to the database itself",
    ),
    Endpoint(
        "ceilometer-api", "ceilometer", 8777, None, http=False,
        removed="ceilometer-api was removed in Queens; metrics go to Gnocchi or Prometheus",
    ),
    Endpoint(
        "nova-ec2-api", "nova-ec2", 8773, None, http=False,
        removed="nova's EC2 API was removed in Mitaka (ec2-api project, itself retired)",
    ),
)

BY_NAME = {e.name: e for e in ENDPOINTS}

# Projects a spec may list under openstack.services.
KNOWN_SERVICES = frozenset(e.service for e in ENDPOINTS) | {"memcached"}


def endpoints_for(services: list[str] | tuple[str, ...]) -> tuple[Endpoint, ...]:
    """The current (not removed) endpoints of the given OpenStack projects."""
    wanted = set(services)
    return tuple(e for e in ENDPOINTS if e.service in wanted and e.removed is None)

# Databases each project keeps in galera (nova has three since Newton/Ocata).
DATABASES: dict[str, tuple[str, ...]] = {
    "nova": ("nova", "nova_api", "nova_cell0"),
    "horizon": (),
    "memcached": (),
    "nova-spice": (),
    "nova-ec2": (),
    "ceilometer": (),
}


def databases(service: str) -> tuple[str, ...]:
    return DATABASES.get(service, (service.replace("-", "_"),))


# -- what hastack runs: each OpenStack daemon on the controllers -----------------------------------

@dataclass(frozen=True)
class Daemon:
    """One OpenStack process hastack runs on every controller, under a systemd unit it renders.

    An API is served either by uwsgi (`wsgi`: the application file Debian ships) or by the
    project's own server binding the address itself (`argv`, with bind options in its config)."""

    unit: str  # the package's unit name: hastack's unit in /etc/systemd/system replaces it
    project: str
    user: str
    endpoint: str | None = None  # the catalog endpoint it serves; None: a worker behind the bus
    wsgi: str | None = None
    argv: tuple[str, ...] = ()
    on_computes: bool = False  # runs on every compute host instead of the controllers
    # The application monkey-patches eventlet: under uwsgi threads it deadlocks ("greenlet.error: cannot
    # switch to a different thread", every thread asleep, the listen queue full: seen on neutron-api
    # after a host crash), so its uwsgi workers are single-threaded processes.
    eventlet: bool = False


DAEMONS: tuple[Daemon, ...] = (
    Daemon("keystone", "keystone", "keystone", "keystone", wsgi="/usr/bin/keystone-wsgi-public"),
    Daemon("placement-api", "placement", "placement", "placement-api", wsgi="/usr/bin/placement-api"),
    # glance-api serves uploads with its own (eventlet) server: Debian runs it so, not under uwsgi.
    Daemon("glance-api", "glance", "glance", "glance-api", argv=("/usr/bin/glance-api",)),
    # neutron's API under uwsgi, its RPC workers (what agents talk to over the bus) on their own.
    Daemon("neutron-api", "neutron", "neutron", "neutron-server", wsgi="/usr/bin/neutron-api", eventlet=True),
    Daemon("neutron-rpc-server", "neutron", "neutron", argv=("/usr/bin/neutron-rpc-server",)),
    Daemon("nova-api", "nova", "nova", "nova-api", wsgi="/usr/bin/nova-api-wsgi", eventlet=True),
    Daemon("nova-api-metadata", "nova", "nova", "nova-metadata", wsgi="/usr/bin/nova-metadata-wsgi",
           eventlet=True),
    Daemon("nova-conductor", "nova", "nova", argv=("/usr/bin/nova-conductor",)),
    Daemon("nova-scheduler", "nova", "nova", argv=("/usr/bin/nova-scheduler",)),
    # A TCP frontend: browsers' websockets to the consoles, binding [vnc] novncproxy_host itself.
    Daemon("nova-novncproxy", "nova", "nova", "nova-novncproxy", argv=("/usr/bin/nova-novncproxy",)),
    # nova's fake virt driver: real nova-compute with no hypervisor. Started from nova's own code
    # (python3-nova): the nova-compute package would pull a hypervisor's packages in.
    Daemon("nova-compute", "nova", "nova", argv=("/usr/bin/python3", "-c",
                                                 "import sys; from nova.cmd.compute import main; sys.exit(main())"),
           on_computes=True),
)


@dataclass(frozen=True)
class Identity:
    """How a project appears in keystone's catalog: its service type and the path after host:port."""

    type: str
    path: str = ""
    description: str = ""
    read: str = "/"  # an authenticated read status makes through the VIP (after the path)


IDENTITY: dict[str, Identity] = {
    "keystone": Identity("identity", "/v3", "OpenStack Identity", "/regions"),
    "glance": Identity("image", "", "OpenStack Image", "/v2/images?limit=1"),
    "placement": Identity("placement", "", "OpenStack Placement", "/resource_providers"),
    "neutron": Identity("network", "", "OpenStack Networking", "/v2.0/networks?limit=1"),
    "nova": Identity("compute", "/v2.1", "OpenStack Compute", "/flavors"),
}

# Projects hastack deploys and runs (the rest of openstack.services get HA settings only, see HA705).
RUN: frozenset[str] = frozenset(d.project for d in DAEMONS)
# Entries of openstack.services that are no OpenStack API of their own to run.
NO_DAEMON: frozenset[str] = frozenset({"memcached"})


def daemons_for(services: tuple[str, ...] | list[str], computes: bool = False) -> tuple[Daemon, ...]:
    """The daemons of `services` hastack runs on the controllers (or, `computes`, on the compute hosts)."""
    wanted = set(services)
    return tuple(d for d in DAEMONS if d.project in wanted and d.on_computes == computes)
