"""A rendered file: bytes plus the ownership and mode it must be installed with."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

# A service unit's lines for a daemon that needs no privilege at all (after its User= and Group=).
UNPRIVILEGED = """NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=full
ProtectHome=yes
PrivateTmp=yes
"""


@dataclass(frozen=True)
class RenderedFile:
    path: str  # absolute path on the host
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"

    @property
    def secret(self) -> bool:
        return not self.mode & 0o004

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def text(path: str, body: str, mode: int = 0o644, owner: str = "root", group: str = "root") -> RenderedFile:
    return RenderedFile(path, body.encode(), mode, owner, group)


# host name -> absolute path -> file
HostFiles = Mapping[str, RenderedFile]
Tree = Mapping[str, HostFiles]
