"""The lab's client host as an operator's workstation: the `openstack` client with the cloud's admin.

`hastack lab client -- openstack server list` runs the command inside the
client host's network namespace (it reaches the cloud only through the VIP,
as a user would), with a clouds.yaml written for it (0600, in the lab's own
private directory) and OS_CLOUD set.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import yaml

from hastack.credentials.model import Secrets
from hastack.hosts.cafile import ca_file
from hastack.lab.layout import layout
from hastack.lab.runtime import LabDirs
from hastack.render.openstack_run import CLOUD, clouds_yaml
from hastack.render.tls import authority
from hastack.spec.model import Spec


class ClientError(Exception):
    pass


def client_clouds(spec: Spec, secrets: Secrets, dirs: LabDirs) -> Path:
    """The client's clouds.yaml: the admin through the VIP's public endpoints. Rewritten on each call."""
    data = yaml.safe_load(clouds_yaml(spec, secrets))
    data["clouds"][CLOUD]["interface"] = "public"
    if (ca := authority(spec, secrets)) is not None:
        # The VIP speaks HTTPS: the client checks it against the cluster's CA, a copy on this machine.
        data["clouds"][CLOUD]["cacert"] = ca_file(ca.cert)
    path = dirs.root / "clouds.yaml"
    tmp = path.with_name(f".clouds.yaml.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# Written by hastack lab client: the lab cloud's admin.\n" + yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
    return path


def require_up(spec: Spec) -> None:
    """The lab's client host exists (checked before anything is read or written for it)."""
    ns = layout(spec).client_netns
    if not Path("/run/netns", ns).exists():
        raise ClientError(f"the lab of {spec.cluster} is not up (no client host {ns}): `hastack lab up` first")


def client_argv(spec: Spec, secrets: Secrets, command: tuple[str, ...]) -> list[str]:
    """`command` as the client host runs it: in its namespace, with the admin's cloud and this venv's tools."""
    dirs = LabDirs.of(spec.cluster)
    lay = layout(spec)
    require_up(spec)
    if not command:
        raise ClientError("no command: e.g. `hastack lab client -- openstack server list`")
    tools = Path(sys.executable).parent
    if command[0] == "openstack" and not (tools / "openstack").exists() and not shutil.which("openstack"):
        raise ClientError("the openstack client is not installed here: `bash scripts/setup` installs the lab extras")
    clouds = client_clouds(spec, secrets, dirs)
    path = f"{tools}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return ["ip", "netns", "exec", lay.client_netns, "env", f"PATH={path}", f"OS_CLIENT_CONFIG_FILE={clouds}",
            f"OS_CLOUD={CLOUD}", *command]
