"""Corosync membership and quorum from `corosync-quorumtool -s`, links from `corosync-cfgtool -s`."""

from __future__ import annotations

import re
from dataclasses import dataclass

QUORUM_CMD = "corosync-quorumtool -s"
LINKS_CMD = "corosync-cfgtool -s"


@dataclass(frozen=True)
class Member:
    nodeid: int
    votes: int
    name: str


@dataclass(frozen=True)
class Quorum:
    quorate: bool
    expected_votes: int
    total_votes: int
    members: tuple[Member, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)


def _field(text: str, label: str) -> str:
    m = re.search(rf"^{re.escape(label)}:\s*(.*?)\s*$", text, re.MULTILINE)
    return m.group(1) if m else ""


def parse_quorum(text: str) -> Quorum:
    members = []
    in_table = False
    for line in text.splitlines():
        if line.strip().startswith("Nodeid"):
            in_table = True
            continue
        if in_table and line.strip():
            words = line.split()
            if len(words) >= 3 and words[0].isdigit():
                members.append(Member(int(words[0]), int(words[1]), words[2]))

    def num(label: str) -> int:
        value = _field(text, label).split()
        return int(value[0]) if value and value[0].isdigit() else 0

    return Quorum(_field(text, "Quorate").startswith("Yes"), num("Expected votes"), num("Total votes"),
                  tuple(members))


@dataclass(frozen=True)
class LinkState:
    nodeid: int
    link: int
    connected: bool


def parse_links(text: str) -> tuple[LinkState, ...]:
    """Per peer and link, whether knet sees it connected (the local node is skipped)."""
    out: list[LinkState] = []
    link = -1
    for line in text.splitlines():
        m = re.match(r"\s*LINK ID (\d+)", line)
        if m:
            link = int(m.group(1))
            continue
        m = re.match(r"\s*nodeid:?\s+(\d+):\s+(.*)$", line)
        if m and link >= 0 and "localhost" not in m.group(2):
            out.append(LinkState(int(m.group(1)), link, m.group(2).strip().startswith("connected")))
    return tuple(out)
