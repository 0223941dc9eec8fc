"""Write a rendered tree to a directory: one folder per host, plus a manifest.

The manifest records owner, group, mode and sha256 of every file so deploy
can compare it with what is on a host without reading secrets back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hastack.render.files import Tree

MANIFEST = "manifest.json"


def write_tree(tree: Tree, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict[str, dict[str, object]]] = {}
    count = 0
    for host, files in sorted(tree.items()):
        manifest[host] = {}
        for path, f in sorted(files.items()):
            target = out / host / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            # Create with the final mode: a secret never exists world-readable.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode & 0o600 | 0o600)
            try:
                os.write(fd, f.content)
            finally:
                os.close(fd)
            os.chmod(target, f.mode)
            manifest[host][path] = {
                "owner": f.owner, "group": f.group, "mode": f"{f.mode:04o}", "sha256": f.sha256,
            }
            count += 1
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return count
