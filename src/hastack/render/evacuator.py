"""Instance HA's evacuator on the controllers: its config and the unit pacemaker runs (one copy)."""

from __future__ import annotations

import yaml

from hastack.agent.evacuation import default_max_failed
from hastack.agent.evacuator import CONFIG, EvacuatorConfig
from hastack.credentials.model import Secrets
from hastack.render.files import RenderedFile, text
from hastack.render.openstack_run import ADMIN, auth_url, ca_file
from hastack.spec.model import Spec

UNIT_NAME = "hastack-evacuator"
UNIT = f"/etc/systemd/system/{UNIT_NAME}.service"
LAUNCHER = "/usr/local/bin/hastack-evacuator"
UNIT_BODY = f"""\
# Rendered by hastack: instance HA's evacuator. Pacemaker starts it on one controller (resource
# "evacuator"); it is not enabled at boot.
[Unit]
Description=hastack evacuator (instance HA: fence first, then evacuate)
After=network-online.target

[Service]
ExecStart={LAUNCHER} --config {CONFIG}
Restart=on-failure
RestartSec=2
RuntimeDirectory=hastack
RuntimeDirectoryPreserve=yes
NoNewPrivileges=yes
ProtectHome=yes
PrivateTmp=yes
"""


def evacuator_config(spec: Spec, secrets: Secrets) -> EvacuatorConfig:
    computes = spec.remote_nodes()
    iha = spec.instance_ha
    return EvacuatorConfig(
        computes=tuple(n.name for n in computes), evacuate=tuple(n.name for n in computes if n.evacuate),
        reserved=iha.reserved,
        max_failed=iha.max_failed if iha.max_failed is not None else default_max_failed(len(computes)),
        # A round every 2 s (1 s fast): evacuation waits for the fence, not for the loop.
        interval_s=1.0 if spec.timing.profile == "fast" else 2.0,
        auth_url=f"{auth_url(spec)}/v3", username=ADMIN, password=secrets["keystone_admin_password"],
        project=ADMIN, region=spec.openstack.region, cafile=ca_file(spec))


def render_evacuator(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    if not spec.remote_nodes():
        return {}
    cfg = evacuator_config(spec, secrets)
    # Without TLS no `cafile` line: nothing in the file changes for clusters that had none.
    body = ("# Rendered by hastack; holds the cloud admin's password.\n"
            + yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
    return {n.name: [text(CONFIG, body, 0o600), text(UNIT, UNIT_BODY)] for n in spec.evacuator_nodes()}
