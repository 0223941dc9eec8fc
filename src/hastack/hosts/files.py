"""What must change for a rendered file to be in place: a pure diff of desired vs observed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hastack.render.files import RenderedFile

# One shell line per file: owner, group, octal mode, then the sha256 (or MISSING).
FACT_CMD = "stat -c '%U %G %a' {path} 2>/dev/null && sha256sum {path} | cut -d' ' -f1 || echo MISSING"


@dataclass(frozen=True)
class FileFact:
    owner: str
    group: str
    mode: int
    sha256: str


class Change(StrEnum):
    NONE = "unchanged"
    CREATE = "create"
    CONTENT = "content"
    METADATA = "owner/mode"


def parse_file_fact(output: str) -> FileFact | None:
    lines = output.split()
    if not lines or lines[-1] == "MISSING" or len(lines) < 4:
        return None
    owner, group, mode, sha = lines[:4]
    return FileFact(owner, group, int(mode, 8), sha)


def diff(desired: RenderedFile, observed: FileFact | None) -> Change:
    if observed is None:
        return Change.CREATE
    if observed.sha256 != desired.sha256:
        return Change.CONTENT
    if (observed.owner, observed.group, observed.mode) != (desired.owner, desired.group, desired.mode):
        return Change.METADATA
    return Change.NONE
