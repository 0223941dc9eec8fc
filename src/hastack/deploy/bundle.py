"""The agent bundle: hastack's agent and the pure-Python closure it imports.

Nodes are not expected to reach a package index (the lab's cannot), so the
deploy ships the agent's modules from this installation. pydantic-core is
compiled for this CPython minor version; the deploy checks the node's
python3 is the same minor version before installing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hastack.agent.mongo_watch import LAUNCHER as MONGO_WATCH_LAUNCHER
from hastack.agent.rabbit_watch import LAUNCHER as RABBIT_WATCH_LAUNCHER
from hastack.agent.vrrp_gate import LAUNCHER as VRRP_GATE_LAUNCHER
from hastack.render.evacuator import LAUNCHER as EVACUATOR_LAUNCHER

# Top-level modules the agent imports, directly or through pydantic.
MODULES = ("pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection", "yaml",
           "_yaml", "pymysql", "pymongo", "bson")
HASTACK_PARTS = ("__init__.py", "agent", "components")
ROOT = "/opt/hastack/lib"
LAUNCHER = "/usr/local/bin/hastack-agent"
# What the bundle runs on a node, each by a launcher that puts the bundle on the path: the agent (galera
# health), instance HA's evacuator (with the host's keystoneauth1: a controller runs OpenStack, Debian's
# python3-keystoneauth1 is there), keepalived's checks and the RabbitMQ watch (the standard library only), and
# the mongo watch (pymongo, shipped here: Debian has no python3-pymongo for the wheel's mongod to match).
LAUNCHED = ((LAUNCHER, "hastack.agent"), (EVACUATOR_LAUNCHER, "hastack.agent.evacuator"),
            (VRRP_GATE_LAUNCHER, "hastack.agent.vrrp_gate"), (RABBIT_WATCH_LAUNCHER, "hastack.agent.rabbit_watch"),
            (MONGO_WATCH_LAUNCHER, "hastack.agent.mongo_watch"))


def launcher_body(module: str) -> bytes:
    return f"#!/bin/sh\nPYTHONPATH={ROOT} exec /usr/bin/python3 -m {module} \"$@\"\n".encode()


STAMP = "/opt/hastack/BUNDLE"


@dataclass(frozen=True)
class Bundle:
    data: bytes  # a reproducible tar.gz
    sha256: str
    python: tuple[int, int]


def _module_paths(name: str) -> list[tuple[Path, str]]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the agent bundle needs {name}, which is not installed here")
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package: the whole folder
        top = origin.parent
        return [(p, f"{name}/{p.relative_to(top)}") for p in sorted(top.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts]
    return [(origin, origin.name)]


def build_bundle() -> Bundle:
    pkg = Path(__file__).resolve().parents[1]
    files: list[tuple[Path, str]] = []
    for part in HASTACK_PARTS:
        path = pkg / part
        if path.is_dir():
            files += [(p, f"hastack/{p.relative_to(pkg)}") for p in sorted(path.rglob("*.py"))]
        else:
            files.append((path, f"hastack/{part}"))
    for mod in MODULES:
        files += _module_paths(mod)
    buf = io.BytesIO()
    # The stamp is a hash of names and contents: the same code gives the
    # same stamp, so a second deploy installs nothing.
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path, arc in sorted(files, key=lambda f: f[1]):
            info = tarfile.TarInfo(arc)
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    content_sha = hashlib.sha256()
    for path, arc in sorted(files, key=lambda f: f[1]):
        content_sha.update(arc.encode() + b"\0" + path.read_bytes())
    return Bundle(buf.getvalue(), content_sha.hexdigest(), sys.version_info[:2])
