"""Corosync membership and quorum from `corosync-quorumtool -s`, links from `corosync-cfgtool -s`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hastack.components.fact import Fact, on_success


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


# -- corosync.conf: what a change needs (reload or restart) ---------------------------------

Section = dict[str, "str | list[Section]"]

# totem keys that corosync reads once at start (and that every node must share): a change
# needs corosync restarted everywhere. Timeouts (token, consensus, ...) reload at runtime.
TOTEM_RESTART_KEYS = frozenset({"version", "cluster_name", "transport", "crypto_cipher", "crypto_hash",
                                "crypto_model", "keyfile", "secauth", "ip_version", "link_mode"})


def parse_conf(text: str) -> Section:
    """corosync.conf as nested sections; a section name may repeat (node, interface): lists."""
    root: Section = {}
    stack = [root]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.endswith("{"):
            child: Section = {}
            name = line[:-1].strip()
            siblings = stack[-1].setdefault(name, [])
            assert isinstance(siblings, list), f"{name} is both a key and a section"
            siblings.append(child)
            stack.append(child)
        elif line == "}":
            if len(stack) == 1:
                raise ValueError("unbalanced '}' in corosync.conf")
            stack.pop()
        else:
            key, _, value = line.partition(":")
            stack[-1][key.strip()] = value.strip()
    if len(stack) != 1:
        raise ValueError("unclosed section in corosync.conf")
    return root


def section(conf: Section, name: str) -> Section:
    found = conf.get(name, [])
    return found[0] if isinstance(found, list) and found else {}


def node_sections(conf: Section) -> dict[str, Section]:
    found = section(conf, "nodelist").get("node", [])
    return {str(n.get("nodeid", "")): n for n in found} if isinstance(found, list) else {}


def by_name(conf: Section) -> dict[str, Section]:
    """The nodelist by node name: a member keeps its name when another one leaves."""
    return {str(n.get("name", nid)): n for nid, n in node_sections(conf).items()}


def _addrs(node: Section) -> dict[str, object]:
    return {k: v for k, v in node.items() if k.endswith("_addr")}


@dataclass(frozen=True)
class ConfChange:
    kind: str  # "none", "reload" (corosync-cfgtool -R), "restart" (every node) or "refuse"
    reason: str


def conf_change(old: str, new: str) -> ConfChange:
    """What moving a running cluster from `old` to `new` corosync.conf takes.

    Reloadable: totem timeouts, nodes added or removed, quorum and logging
    settings (corosync 3 with knet). Not: the keys in TOTEM_RESTART_KEYS, the
    link interfaces, and a node that keeps its id but changes an address.
    """
    a, b = parse_conf(old), parse_conf(new)
    if a == b:
        return ConfChange("none", "same configuration")
    ta, tb = section(a, "totem"), section(b, "totem")
    moved = sorted(k for k in TOTEM_RESTART_KEYS if ta.get(k) != tb.get(k))
    if moved:
        return ConfChange("restart", "totem " + ", ".join(moved) + " cannot change at runtime")
    if ta.get("interface") != tb.get("interface"):
        return ConfChange("restart", "the links (totem interface sections) changed")
    na, nb = by_name(a), by_name(b)
    renumbered = sorted(n for n in na.keys() & nb.keys() if na[n].get("nodeid") != nb[n].get("nodeid"))
    if renumbered:
        # Possible only with every node restarted at once, and most likely an accident (the
        # spec's `nodes` reordered): refused rather than done.
        return ConfChange("refuse", "node ids would change: " + ", ".join(
            f"{n} {na[n].get('nodeid')} -> {nb[n].get('nodeid')}" for n in renumbered))
    readdressed = sorted(n for n in na.keys() & nb.keys() if _addrs(na[n]) != _addrs(nb[n]))
    if readdressed:
        return ConfChange("restart", "node addresses changed: " + ", ".join(readdressed))
    parts = []
    if na.keys() != nb.keys():
        parts.append(f"members {len(na)} -> {len(nb)}")
    changed = sorted(k for k in (ta.keys() | tb.keys()) - {"interface"} if ta.get(k) != tb.get(k))
    if changed:
        parts.append("totem " + ", ".join(changed))
    if section(a, "quorum") != section(b, "quorum"):
        parts.append("quorum settings")
    return ConfChange("reload", "; ".join(parts) or "logging settings")


QUORUM = Fact("corosync quorum", ("corosync-quorumtool", "-s"), on_success(parse_quorum))
LINKS = Fact("corosync links", ("corosync-cfgtool", "-s"), on_success(parse_links))
