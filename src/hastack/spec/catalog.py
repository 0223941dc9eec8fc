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
    # Served over HTTPS on the VIP when the cluster has TLS (haproxy ends it). Not nova's metadata
    # API: neutron's metadata agent, which hastack does not configure, asks it over plain HTTP.
    tls: bool = True
    tls_port: int | None = None  # the VIP's port over HTTPS where it is not `port` (horizon: 443, 80 redirects)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("keystone", "keystone", 5000, "/v3", "200"),
    Endpoint("glance-api", "glance", 9292, "/healthcheck"),
    Endpoint("nova-api", "nova", 8774, "/", "200"),
    Endpoint("nova-metadata", "nova", 8775, "/", "200", tls=False),
    Endpoint("nova-novncproxy", "nova", 6080, None, balance="source", http=False),
    Endpoint("placement-api", "placement", 8778, "/", "200"),
    Endpoint("neutron-server", "neutron", 9696, "/", "200"),
    Endpoint("cinder-api", "cinder", 8776, "/healthcheck"),
    Endpoint("heat-api", "heat", 8004, "/healthcheck"),
    Endpoint("heat-api-cfn", "heat", 8000, "/healthcheck"),
    Endpoint("horizon", "horizon", 80, "/", "200-399", balance="source", tls_port=443),
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
    static: str | None = None  # "URL=directory": files uwsgi serves itself (horizon's compressed assets)


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
    # cinder's API and scheduler: volumes are scheduled to backends (cinder-volume) hastack does not run.
    Daemon("cinder-api", "cinder", "cinder", "cinder-api", wsgi="/usr/bin/cinder-wsgi"),
    Daemon("cinder-scheduler", "cinder", "cinder", argv=("/usr/bin/cinder-scheduler",)),
    Daemon("heat-api", "heat", "heat", "heat-api", wsgi="/usr/bin/heat-wsgi-api"),
    Daemon("heat-api-cfn", "heat", "heat", "heat-api-cfn", wsgi="/usr/bin/heat-wsgi-api-cfn"),
    Daemon("heat-engine", "heat", "heat", argv=("/usr/bin/heat-engine",)),
    # horizon (Django) as www-data: Debian's local_settings.py reads and writes its secret-key
    # store there, which only www-data may write.
    Daemon("horizon", "horizon", "www-data", "horizon", wsgi="/usr/share/openstack-dashboard/wsgi.py",
           static="/static=/var/lib/openstack-dashboard/static"),
)


@dataclass(frozen=True)
class Identity:
    """How an API appears in keystone's catalog (keyed by its service name there): its project, type, the
    endpoint it is served on and the path after host:port (`%(project_id)s`: keystone fills in the
    caller's project)."""

    project: str
    type: str
    endpoint: str
    path: str = ""
    description: str = ""
    read: str | None = "/"  # an authenticated read status makes through the VIP (after the path)
    user: bool = True  # the project has a service user of this name (keystone's own, heat-cfn's: no)


PROJECT_ID = "%(project_id)s"
IDENTITY: dict[str, Identity] = {
    "keystone": Identity("keystone", "identity", "keystone", "/v3", "OpenStack Identity", "/regions", user=False),
    "placement": Identity("placement", "placement", "placement-api", "", "OpenStack Placement",
                          "/resource_providers"),
    "glance": Identity("glance", "image", "glance-api", "", "OpenStack Image", "/v2/images?limit=1"),
    "neutron": Identity("neutron", "network", "neutron-server", "", "OpenStack Networking",
                        "/v2.0/networks?limit=1"),
    "nova": Identity("nova", "compute", "nova-api", "/v2.1", "OpenStack Compute", "/flavors"),
    "cinderv3": Identity("cinder", "volumev3", "cinder-api", f"/v3/{PROJECT_ID}", "OpenStack Block Storage",
                         "/volumes?limit=1", user=False),  # the type nova and most clients look up
    "cinder": Identity("cinder", "block-storage", "cinder-api", f"/v3/{PROJECT_ID}", "OpenStack Block Storage",
                       None),  # the same API under its newer type, with cinder's service user
    # A stack list goes over the bus to heat-engine: the read sees the engine as well as the API.
    "heat": Identity("heat", "orchestration", "heat-api", f"/v1/{PROJECT_ID}", "OpenStack Orchestration",
                     "/stacks?limit=1"),
    # The CloudFormation API authenticates by EC2 signatures, not tokens: no read of its own.
    "heat-cfn": Identity("heat", "cloudformation", "heat-api-cfn", "/v1", "OpenStack Orchestration (CFN)", None,
                         user=False),
}

# Projects hastack deploys and runs (the rest of openstack.services get HA settings only, see HA705).
RUN: frozenset[str] = frozenset(d.project for d in DAEMONS)
# Projects with a service user in keystone (named as the project): every one hastack runs but
# keystone itself and horizon (a web client of the others, with the user's own token).
USERS: frozenset[str] = frozenset(i.project for i in IDENTITY.values() if i.user)
# Entries of openstack.services that are no OpenStack API of their own to run.
NO_DAEMON: frozenset[str] = frozenset({"memcached"})


def daemons_for(services: tuple[str, ...] | list[str], computes: bool = False) -> tuple[Daemon, ...]:
    """The daemons of `services` hastack runs on the controllers (or, `computes`, on the compute hosts)."""
    wanted = set(services)
    return tuple(d for d in DAEMONS if d.project in wanted and d.on_computes == computes)


def daemons_on(services: tuple[str, ...] | list[str], controller: bool, compute: bool) -> tuple[Daemon, ...]:
    """The daemons of `services` hastack runs on one host with these roles: the controllers' set, the
    computes' set, or both (render writes their units there; status checks each one runs)."""
    return (daemons_for(services) if controller else ()) + (daemons_for(services, computes=True) if compute else ())
