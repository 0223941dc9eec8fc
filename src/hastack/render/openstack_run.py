"""What hastack runs of OpenStack on the controllers: units, uwsgi settings, keystone's keys, the admin's cloud.

Debian's packages start each API through an init script that binds every
address (colliding with haproxy on the VIP) with 8-16 processes, and load
uwsgi's apparmor plugin, which kills uwsgi inside a container. hastack
replaces each daemon's unit with its own (same name, in /etc/systemd/system):
bound to the node's management address, sized by the spec, running as the
project's user.
"""

from __future__ import annotations

import shlex

import yaml

from hastack.credentials.model import CREDENTIAL_KEYS, FERNET_KEYS, Secrets
from hastack.render import tls as tls_files
from hastack.render.files import RenderedFile, text
from hastack.spec.catalog import BY_NAME, IDENTITY, RUN, Daemon, daemons_for, daemons_on
from hastack.spec.model import Node, Role, Spec

FERNET_DIR = "/etc/keystone/fernet-keys"
CREDENTIAL_DIR = "/etc/keystone/credential-keys"
CLOUDS = "/etc/hastack/clouds.yaml"
HORIZON_SETTINGS = "/etc/openstack-dashboard/local_settings.d/_90_hastack.py"
CLOUD = "hastack"  # the cloud's name in clouds.yaml
ADMIN = "admin"
# What deploy makes for a first server: the smallest flavor and a 1 MiB raw image.
FLAVOR = "hastack.tiny"
HORIZON_LOGIN = "/auth/login/"
IMAGE = "hastack-tiny"


def unit_path(d: Daemon) -> str:
    return f"/etc/systemd/system/{d.unit}.service"


def uwsgi_path(d: Daemon) -> str:
    return f"/etc/hastack/uwsgi/{d.unit}.ini"


def log_path(d: Daemon) -> str:
    return f"/var/log/{d.project}/{d.unit}.log"


def vip_url(spec: Spec, endpoint: str) -> str:
    """An endpoint's port on the first VIP: over HTTPS when the cluster has TLS and the endpoint is an
    HTTP API haproxy serves so (the node certificate it presents names the VIPs)."""
    ep = BY_NAME[endpoint]
    if spec.tls.enabled and ep.http and ep.tls:
        return f"https://{spec.vips[0].address}:{ep.tls_port or ep.port}"
    return f"http://{spec.vips[0].address}:{ep.port}"


def ca_file(spec: Spec) -> str | None:
    """The CA certificate every node that runs OpenStack has, for its clients of the VIP: None without TLS."""
    return tls_files.CA_PATH if spec.tls.enabled else None


def public_url(spec: Spec, name: str) -> str:
    """Where clients reach an API (by its service name in keystone): its port on the VIP (every
    interface: one haproxy frontend)."""
    ident = IDENTITY[name]
    return vip_url(spec, ident.endpoint) + ident.path


def catalog_names(spec: Spec) -> list[str]:
    """The keystone service names of the APIs hastack runs for the spec."""
    return [n for n, i in IDENTITY.items() if i.project in spec.openstack.services and i.project in RUN]


def api_reads(spec: Spec) -> dict[str, str]:
    """Per API hastack runs, a URL a client reads through the VIP with its token (status, chaos);
    `%(project_id)s` stands for the token's project. horizon: its login page, as a browser asks."""
    reads = {IDENTITY[n].project: public_url(spec, n) + read for n in catalog_names(spec)
             if (read := IDENTITY[n].read) is not None}
    if "horizon" in spec.openstack.services:
        reads["horizon"] = vip_url(spec, "horizon") + HORIZON_LOGIN
    return reads


def auth_url(spec: Spec) -> str:
    return vip_url(spec, "keystone")


# No API request hastack runs takes a minute: an image upload goes to glance-api, not uwsgi.
HARAKIRI_S = 60


def uwsgi_ini(spec: Spec, d: Daemon, node: Node) -> str:
    assert d.wsgi is not None and d.endpoint is not None
    port = BY_NAME[d.endpoint].port
    return "\n".join([
        "# Rendered by hastack: Debian's ini without the apparmor plugin, bound to this node only.",
        "[uwsgi]",
        "plugins = python3",
        "master = true",
        f"http-socket = {node.address}:{port}",
        f"processes = {spec.openstack.api_workers}",
        f"threads = {1 if d.eventlet else spec.openstack.api_threads}",
        "enable-threads = true",
        "lazy-apps = true",
        "thunder-lock = true",
        # An application that fails to load exits (systemd restarts it) instead of answering 500.
        "need-app = true",
        "die-on-term = true",
        "no-orphans = true",
        "buffer-size = 65535",
        "rem-header = Content-Length",
        "listen = 100",
        # A request running this long has its worker killed and respawned. In CI a keystone started
        # while its controller came back from a fence took no connection for over 5 minutes (listen
        # queue full, every other service healthy). This ends threads stuck in a request; a worker
        # stuck before taking one (tried: SIGSTOP) is not ended by it.
        f"harakiri = {HARAKIRI_S}",
        "harakiri-verbose = true",
        # Every Python thread's stack on demand, for a worker that hangs:
        # `uwsgi --connect-and-read /run/UNIT/tracebacker1` (root or the service user only).
        f"py-tracebacker = /run/{d.unit}/tracebacker",
        f"name = {d.unit}",
        f"chdir = /var/lib/{d.project}",
        f"wsgi-file = {d.wsgi}",
        *([f"static-map = {d.static}"] if d.static else []),
        f"logto = {log_path(d)}",
        "",
    ])


def unit(d: Daemon) -> str:
    # A daemon of its own logs where a uwsgi one does (oslo.log's --log-file), not only to the journal.
    start = (f"/usr/bin/uwsgi_python3 --ini {uwsgi_path(d)}" if d.wsgi
             else " ".join(shlex.quote(a) if " " in a else a for a in d.argv) + f" --log-file {log_path(d)}")
    return "\n".join([
        "# Rendered by hastack: replaces the package's unit (see /etc/hastack/uwsgi for uwsgi's settings).",
        "[Unit]",
        f"Description=OpenStack {d.unit} (hastack)",
        "After=network-online.target",
        "Wants=network-online.target",
        # Retried for as long as it takes: after a power loss the API comes up before the VIP and
        # the databases behind it; systemd's default limit would give up after five tries.
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        f"User={d.user}",
        f"Group={d.user}",
        "Type=simple",
        f"WorkingDirectory=/var/lib/{d.project}",
        f"RuntimeDirectory={d.unit} lock/{d.unit}",
        f"ExecStart={start}",
        # Always, not on-failure: an oslo service whose first database call fails as it starts (the VIP
        # moving under it) logs the error and exits with status 0, and stayed down (seen in the lab).
        "Restart=always",
        "RestartSec=2",
        "LimitNOFILE=65535",
        "TimeoutStopSec=15",
        # A port under 1024 (horizon's 80) bound by its unprivileged user.
        *(["AmbientCapabilities=CAP_NET_BIND_SERVICE"] if d.endpoint and BY_NAME[d.endpoint].port < 1024 else []),
        # Its own log directory where the package made none for this user (horizon's, run as www-data).
        *([f"LogsDirectory={d.project}"] if d.user != d.project else []),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def horizon_settings(spec: Spec, secrets: Secrets) -> str:
    """A snippet horizon reads after Debian's local_settings.py: keystone through the VIP, sessions in
    signed cookies (any controller serves any session: nothing to lose when one dies), one signing key."""
    names = [str(v.address) for v in spec.vips] + [str(n.address) for n in spec.with_role(Role.CONTROLLER)]
    names += [n.name for n in spec.with_role(Role.CONTROLLER)] + ["localhost"]
    settings = {
        "SECRET_KEY": secrets["horizon_secret_key"],
        "OPENSTACK_HOST": str(spec.vips[0].address),
        "OPENSTACK_KEYSTONE_URL": f"{auth_url(spec)}/v3",
        "OPENSTACK_ENDPOINT_TYPE": "internalURL",
        "OPENSTACK_KEYSTONE_DEFAULT_ROLE": "member",
        "ALLOWED_HOSTS": names,
        "SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies",
        "SESSION_TIMEOUT": 3600,
    }
    if (ca := ca_file(spec)) is not None:
        # haproxy ends TLS and says so (X-Forwarded-Proto): Django then knows its pages are HTTPS, so
        # its cookies are sent over HTTPS only; keystone is checked against the cluster's CA.
        settings |= {"OPENSTACK_SSL_CACERT": ca, "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
                     "CSRF_COOKIE_SECURE": True, "SESSION_COOKIE_SECURE": True}
    lines = ["# Rendered by hastack: read after local_settings.py (Debian's), so these settings win."]
    lines += [f"{k} = {v!r}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def clouds_yaml(spec: Spec, secrets: Secrets) -> str:
    """The admin's cloud, through the VIP: for deploy's keystone steps and for operators on a controller."""
    cloud = {"clouds": {CLOUD: {
        "auth": {"auth_url": f"{auth_url(spec)}/v3", "username": ADMIN, "password": secrets["keystone_admin_password"],
                 "project_name": ADMIN, "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": spec.openstack.region, "interface": "internal", "identity_api_version": 3}}}
    if (ca := ca_file(spec)) is not None:
        cloud["clouds"][CLOUD]["cacert"] = ca
    return "# Rendered by hastack: the OpenStack admin, through the VIP.\n" + yaml.safe_dump(cloud, sort_keys=False)


def render_openstack_run(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    daemons = daemons_for(spec.openstack.services)
    out: dict[str, list[RenderedFile]] = {}
    for node in spec.nodes:
        files = [text(unit_path(d), unit(d))
                 for d in daemons_on(spec.openstack.services, node.has(Role.CONTROLLER), node.has(Role.COMPUTE))]
        if node.has(Role.CONTROLLER) and daemons:
            files += [text(uwsgi_path(d), uwsgi_ini(spec, d, node)) for d in daemons if d.wsgi]
            if "keystone" in spec.openstack.services:
                for directory, keys in ((FERNET_DIR, FERNET_KEYS), (CREDENTIAL_DIR, CREDENTIAL_KEYS)):
                    files += [text(f"{directory}/{i}", secrets[k], 0o600, owner="keystone", group="keystone")
                              for i, k in enumerate(keys)]
                files.append(text(CLOUDS, clouds_yaml(spec, secrets), 0o600))
            if "horizon" in spec.openstack.services:
                files.append(text(HORIZON_SETTINGS, horizon_settings(spec, secrets), 0o640, group="www-data"))
        if files:
            out[node.name] = files
    return out
