"""Write a rendered tree to a directory: one folder per host, plus a manifest.

The manifest records owner, group, mode and sha256 of every file so deploy
can compare it with what is on a host without reading secrets back.

The tree holds every secret, so it is written privately and whole: into a
new 0700 directory beside the output, every file created exclusively (no
link followed), then swapped in for the output. A render into a directory
used before leaves no stale file behind (one could hold a password the spec
no longer needs), and a directory that is not an earlier render is refused
rather than emptied.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from hastack.render.files import Tree

MANIFEST = "manifest.json"


class OutputError(Exception):
    """The output directory cannot take the render: says which and what to do."""


def _check_output(out: Path) -> None:
    if out.is_symlink():
        raise OutputError(f"{out} is a symbolic link: name a real directory for the rendered files")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a directory: name a new or empty directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise OutputError(f"{out} holds files that are not an earlier hastack render (no {MANIFEST}): "
                          "name a new or empty directory")


def _write_file(root: Path, relative: str, content: bytes, mode: int, made: set[Path]) -> None:
    target = root / relative
    # Folders top-down, each made once (mkdir with parents=True tries every level again: 3x the calls).
    for folder in reversed(target.relative_to(root).parents[:-1]):
        if folder not in made:
            (root / folder).mkdir(mode=0o700, exist_ok=True)
            made.add(folder)
    # Created with at most the final mode: a secret never exists readable by others.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode & 0o600 | 0o600)
    try:
        os.write(fd, content)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def write_tree(tree: Tree, out: Path) -> int:
    """Write `tree` under `out` (replacing an earlier render there); returns the number of files."""
    _check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # 0700
    try:
        manifest: dict[str, dict[str, dict[str, object]]] = {}
        count = 0
        made: set[Path] = set()
        for host, files in sorted(tree.items()):
            manifest[host] = {}
            for path, f in sorted(files.items()):
                _write_file(staging, f"{host}/{path.lstrip('/')}", f.content, f.mode, made)
                manifest[host][path] = {
                    "owner": f.owner, "group": f.group, "mode": f"{f.mode:04o}", "sha256": f.sha256,
                }
                count += 1
        _write_file(staging, MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), 0o600,
                    made)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            out.rename(old / "render")
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return count
