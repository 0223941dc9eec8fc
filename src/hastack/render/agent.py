"""The hastack agent on every galera node: its config and systemd unit."""

from __future__ import annotations

import yaml

from hastack.agent.config import PATH, AgentConfig
from hastack.credentials.model import AGENT_TOKEN, Secrets
from hastack.render.files import UNPRIVILEGED, RenderedFile, text
from hastack.render.galera import MONITOR_USER
from hastack.spec.model import Spec

UNIT = "/etc/systemd/system/hastack-agent.service"
USER = "hastack-agent"  # made by deploy, as the owner of the agent's config
UNIT_BODY = """\
# Rendered by hastack: health endpoints haproxy polls (GET /galera on :{port}).
[Unit]
Description=hastack agent (galera health for haproxy)
After=network-online.target mariadb.service

[Service]
ExecStart=/usr/local/bin/hastack-agent --config {path}
Restart=always
RestartSec=1
# It reads wsrep status over the local socket with its own password and serves a port above
# 1024: it needs no privilege at all.
User={user}
Group={user}
{unprivileged}
[Install]
WantedBy=multi-user.target
"""


def render_agent(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    if not spec.galera.enabled or spec.galera.health_check != "http":
        return {}
    out: dict[str, list[RenderedFile]] = {}
    for node in spec.galera_nodes():
        cfg = AgentConfig(listen=str(node.address), port=spec.haproxy.health_port, mysql_user=MONITOR_USER,
                          mysql_password=secrets["galera_monitor_password"], token=secrets[AGENT_TOKEN])
        body = ("# Rendered by hastack; holds the monitor password and the agent's token.\n"
                + yaml.safe_dump(cfg.model_dump()))
        out[node.name] = [
            text(PATH, body, 0o600, owner=USER, group=USER),
            text(UNIT, UNIT_BODY.format(port=spec.haproxy.health_port, path=PATH, user=USER,
                                          unprivileged=UNPRIVILEGED)),
        ]
    return out
