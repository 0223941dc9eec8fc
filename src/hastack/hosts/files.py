"""What must change for a rendered file to be in place: a pure diff of desired vs observed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hastack.components.fact import Fact, any_exit, shell
from hastack.render.files import RenderedFile


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
    # In place already, but placed by a deploy that stopped before it acted on it (a restart, a reload).
    OWED = "placed by a deploy that did not finish"


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


def file_fact(path: str) -> Fact[FileFact | None]:
    """Owner, group, octal mode, then the sha256, in one line per file (or MISSING)."""
    return Fact(f"file {path}", shell("stat -c '%U %G %a' {path} 2>/dev/null && sha256sum {path} | cut -d' ' -f1 "
                                      "|| echo MISSING", path=path), any_exit(parse_file_fact))
