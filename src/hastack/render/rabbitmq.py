"""RabbitMQ cluster: rabbitmq.conf, definitions (users, vhost, policies), cookie.

Today's practice over the guide's: quorum queues (classic mirrored queues are
removed in RabbitMQ 4.0), disc nodes only, no guest user, peers listed for
classic peer discovery so a rebooted node rejoins by itself, and
pause_minority so a partitioned minority stops instead of diverging (autoheal
for two nodes, where neither side is a majority).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from hastack.agent import rabbit_watch
from hastack.credentials.model import Secrets
from hastack.render import tls as tls_files
from hastack.render.files import RenderedFile, text
from hastack.render.pacemaker import PING_ATTRIBUTE, pings
from hastack.spec.model import QueueType, Spec

CONF = "/etc/rabbitmq/rabbitmq.conf"
ENV = "/etc/rabbitmq/rabbitmq-env.conf"
DEFINITIONS = "/etc/rabbitmq/definitions.json"
PLUGINS = "/etc/rabbitmq/enabled_plugins"
COOKIE = "/var/lib/rabbitmq/.erlang.cookie"
PORT = 5672
TLS_PORT = 5671  # AMQP over TLS (IANA's amqps)
MANAGEMENT_PORT = 15672
MANAGEMENT_TLS_PORT = 15671
TLS_DIR = "/etc/rabbitmq/tls"
TLS_FILES = tuple(f"{TLS_DIR}/{f}" for f in ("ca.pem", "cert.pem", "key.pem"))
ADMIN_USER = "hastack-admin"


def amqp_port(spec: Spec) -> int:
    """Where clients reach AMQP: TLS only when the spec has it."""
    return TLS_PORT if spec.tls.enabled else PORT


def _tls_files(prefix: str) -> list[str]:
    """The listener's CA, certificate and key, under `prefix` (ssl_options, management.ssl)."""
    return [f"{prefix}.{option} = {path}" for option, path in zip(("cacertfile", "certfile", "keyfile"), TLS_FILES,
                                                                  strict=True)]


def nodename(name: str) -> str:
    return f"rabbit@{name}"


def password_hash(user: str, password: str) -> str:
    """rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)).

    The salt is derived from the secret so the same secret renders the same
    bytes: a re-render changes nothing and deploy stays idempotent.
    """
    salt = hmac.new(password.encode(), user.encode(), hashlib.sha256).digest()[:4]
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(spec: Spec, secrets: Secrets) -> dict[str, Any]:
    r = spec.rabbitmq
    users = [
        (r.user, secrets["rabbitmq_password"], []),
        (ADMIN_USER, secrets["rabbitmq_admin_password"], ["administrator"]),
    ]
    policies: list[dict[str, Any]] = []
    if r.queue_type is QueueType.MIRRORED:
        # The guide's `set_policy ha-all "^." '{"ha-mode":"all"}'`, kept only
        # for RabbitMQ < 4.0 when a check waiver asks for it.
        policies.append({
            "vhost": r.vhost, "name": "ha-all", "pattern": "^(?!amq\\.).*", "apply-to": "queues",
            "priority": 0, "definition": {"ha-mode": "all", "ha-sync-mode": "automatic"},
        })
    # RPC reply and fanout queues are per-process; expire them when their
    # process is gone so a crashed service does not leave queues behind.
    policies.append({
        "vhost": r.vhost, "name": "hastack-transient", "pattern": "^(reply_|.*_fanout_)",
        "apply-to": "queues", "priority": 1, "definition": {"expires": 600000},
    })
    return {
        "rabbit_version": "3.10.8",
        "users": [
            {"name": name, "password_hash": password_hash(name, pw),
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": tags}
            for name, pw, tags in users
        ],
        "vhosts": [{"name": r.vhost}],
        "permissions": [
            {"user": name, "vhost": r.vhost, "configure": ".*", "write": ".*", "read": ".*"}
            for name, _, _ in users
        ],
        "policies": policies,
        "queues": [], "exchanges": [], "bindings": [], "parameters": [], "global_parameters": [],
        "topic_permissions": [],
    }


def rabbitmq_conf(spec: Spec, address: str) -> str:
    r = spec.rabbitmq
    lines = [
        "# Rendered by hastack; do not edit by hand.",
        f"cluster_name = {spec.cluster}",
        "cluster_formation.peer_discovery_backend = classic_config",
        *(f"cluster_formation.classic_config.nodes.{i} = {nodename(n)}"
          for i, n in enumerate(r.nodes, start=1)),
        f"cluster_partition_handling = {r.partition_mode}",
        f"net_ticktime = {spec.timing.rabbit_net_ticktime_s}",
        *((f"listeners.ssl.1 = {address}:{TLS_PORT}", "listeners.tcp = none", *_tls_files("ssl_options"),
           # Clients log in by password; the server's certificate is what they check.
           "ssl_options.verify = verify_none", "ssl_options.fail_if_no_peer_cert = false",
           "ssl_options.versions.1 = tlsv1.3", "ssl_options.versions.2 = tlsv1.2")
          if spec.tls.enabled else (f"listeners.tcp.1 = {address}:{PORT}",)),
        "queue_leader_locator = balanced",
        f"load_definitions = {DEFINITIONS}",
        # Definitions create the users; no default guest account is made.
        "loopback_users.guest = true",
        "log.file.level = info",
    ]
    if r.management and spec.tls.enabled:
        lines += [f"management.ssl.port = {MANAGEMENT_TLS_PORT}", f"management.ssl.ip = {address}",
                  *_tls_files("management.ssl")]
    elif r.management:
        lines += [f"management.tcp.port = {MANAGEMENT_PORT}", f"management.tcp.ip = {address}"]
    return "\n".join(lines) + "\n"


DROPIN = "/etc/systemd/system/rabbitmq-server.service.d/50-hastack.conf"
# RabbitMQ 3.10 on Erlang 25.1+ (Debian 12) can hang for good in global:sync
# while a rebooted node starts (rabbitmq-server#6034, fixed in 3.11.1); seen in
# the lab after fencing. Debian's unit waits 600 s before giving up: fail the
# start sooner so that Restart=on-failure tries again. A start with its peers
# up takes 10-25 s here; in a cold start of every host at once (power-loss: the
# lab's 2 cores booting five hosts) the VM took 65 s to configure its logging,
# and a 90 s limit killed the starts of every node twice in a row, each kill
# losing the work done: 180 s lets such a start finish.
UNIT_OVERRIDE = ("# Rendered by hastack; do not edit by hand.\n"
                 "# A start stuck in global:sync (rabbitmq-server#6034) is retried after 180 s,\n"
                 "# not waited on for 10 minutes; a slow start under a cold-boot storm finishes.\n"
                 "[Service]\nTimeoutStartSec=180\nRestart=on-failure\nRestartSec=5\n")


WATCH = "hastack-rabbit-watch"
WATCH_UNIT = f"/etc/systemd/system/{WATCH}.service"
WATCH_UNIT_BODY = """\
# Rendered by hastack: restarts a node whose rabbit app stopped (a pause) and never started again
# while its peers serve, drops its connection to a peer whose host went silent, and repairs a quorum
# queue member that cannot run (hastack.agent.rabbit_watch). To stop the app on purpose: touch {hold}.
[Unit]
Description=hastack RabbitMQ watch (restarts a node left paused; lets a silent peer go)
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={launcher} --port {port}{peers}
Restart=always
RestartSec=5
WatchdogSec=120
RuntimeDirectory={runtime}
RuntimeDirectoryPreserve=yes
# Root for `systemctl restart rabbitmq-server` and `rabbitmqctl eval` (as rabbitmq); nothing else.
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


def watch_unit(spec: Spec, node: str) -> str:
    peers = "".join(f" --peer {nodename(n.name)}={n.address}" for n in spec.rabbit_nodes() if n.name != node)
    # Where the members run the ping clone, its attribute tells the watch a peer's host lost its network
    # (asked of the local pacemaker: only a member has one; a peer that is not a member has no count).
    if pings(spec) and node in {n.name for n in spec.corosync_nodes()}:
        peers += f" --reach-attribute {PING_ATTRIBUTE} --node {nodename(node)}"
    return WATCH_UNIT_BODY.format(hold=rabbit_watch.HOLD, launcher=rabbit_watch.LAUNCHER, port=amqp_port(spec),
                                  peers=peers, runtime=rabbit_watch.DIR.removeprefix("/run/"))


def render_rabbitmq(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    if not spec.rabbitmq.enabled:
        return {}
    defs = json.dumps(definitions(spec, secrets), indent=2, sort_keys=True) + "\n"
    plugins = "[rabbitmq_management].\n" if spec.rabbitmq.management else "[].\n"
    out: dict[str, list[RenderedFile]] = {}
    for node in spec.rabbit_nodes():
        ram = node.name in spec.rabbitmq.ram_nodes
        env = (
            "# Rendered by hastack; do not edit by hand.\n"
            f"NODENAME={nodename(node.name)}\n"
            f"NODE_IP_ADDRESS={node.address}\n"
            + ("# RAM node (deprecated): joined with `join_cluster --ram` by deploy.\n" if ram else "")
        )
        out[node.name] = [
            text(CONF, rabbitmq_conf(spec, str(node.address))),
            text(ENV, env),
            text(DEFINITIONS, defs, 0o640, group="rabbitmq"),
            text(PLUGINS, plugins),
            text(COOKIE, secrets["rabbitmq_erlang_cookie"], 0o400, owner="rabbitmq", group="rabbitmq"),
            text(DROPIN, UNIT_OVERRIDE),
            text(WATCH_UNIT, watch_unit(spec, node.name)),
        ]
        if (node_tls := tls_files.for_node(spec, secrets, node)) is not None:
            out[node.name] += tls_files.files(node_tls, TLS_DIR, owner="rabbitmq")
    return out
