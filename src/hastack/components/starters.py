"""What a first server needs: a flavor, the admin project's quotas lifted, a tiny raw image.

Runs on a controller (`python3 -c` with this module's source; what is wanted as JSON on stdin) in one
process with the host's own openstacksdk: one token, a handful of API calls. The `openstack` client
it replaces cost a process and a token per call, 3 s each on the loaded lab (seven of them on a first
deploy, three on every deploy after). Prints one JSON line: the changes made, or the error.
Idempotent: a second run changes nothing.

`ensure` is the logic, over any `Cloud`; the tests drive it with an in-memory one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Protocol

IMAGE_BYTES = 1 << 20  # 1 MiB of zeros: a raw disk the fake driver never reads


class Cloud(Protocol):
    def flavor(self, name: str) -> bool: ...

    def make_flavor(self, name: str) -> None: ...

    def instances_quota(self, project: str) -> int: ...

    def unlimit(self, project: str) -> None: ...

    def image_status(self, name: str) -> str | None: ...

    def delete_image(self, name: str) -> None: ...

    def upload_image(self, name: str) -> None: ...


def ensure(cloud: Cloud, flavor: str, image: str, project: str) -> list[str]:
    changes = []
    if not cloud.flavor(flavor):
        cloud.make_flavor(flavor)
        changes.append(f"nova: made flavor {flavor}")
    if cloud.instances_quota(project) != -1:
        cloud.unlimit(project)
        changes.append(f"nova: the {project} project's instances, cores and RAM unlimited (smoke and chaos servers)")
    status = cloud.image_status(image)
    if status != "active":
        if status is not None:  # an upload cut off half-way (queued, saving, killed): made again
            cloud.delete_image(image)
        cloud.upload_image(image)
        changes.append(f"glance: uploaded image {image} (1 MiB, raw)")
    return changes


class Sdk:  # pragma: no cover - runs on a controller against the real services (the lab's deploy)
    """`Cloud` over openstacksdk (Debian's, on the controller: 0.101 in bookworm)."""

    def __init__(self) -> None:
        import openstack  # type: ignore[import-untyped, unused-ignore]  # the host's, not ours

        self.conn: Any = openstack.connect()  # OS_CLIENT_CONFIG_FILE and OS_CLOUD from the environment

    def flavor(self, name: str) -> bool:
        return self.conn.compute.find_flavor(name, ignore_missing=True) is not None

    def make_flavor(self, name: str) -> None:
        self.conn.compute.create_flavor(id=name, name=name, vcpus=1, ram=64, disk=1)

    def instances_quota(self, project: str) -> int:
        return int(self.conn.get_compute_quotas(project)["instances"])

    def unlimit(self, project: str) -> None:
        self.conn.set_compute_quotas(project, instances=-1, cores=-1, ram=-1)

    def image_status(self, name: str) -> str | None:
        found = self.conn.image.find_image(name, ignore_missing=True)
        return None if found is None else str(found.status)

    def delete_image(self, name: str) -> None:
        self.conn.image.delete_image(self.conn.image.find_image(name), ignore_missing=True)

    def upload_image(self, name: str) -> None:
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"\0" * IMAGE_BYTES)
            f.flush()
            self.conn.create_image(name, filename=f.name, disk_format="raw", container_format="bare",
                                   visibility="public", wait=True, timeout=240)


def main() -> int:  # pragma: no cover - see Sdk
    want = json.loads(sys.stdin.readline())
    os.environ["OS_CLIENT_CONFIG_FILE"], os.environ["OS_CLOUD"] = want["clouds"], want["cloud"]
    try:
        changes = ensure(Sdk(), want["flavor"], want["image"], want["project"])
    except Exception as exc:  # one line the deploy can quote, not a traceback
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"changes": changes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
