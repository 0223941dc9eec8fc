"""Replica set configuration documents, edited purely: a member's priority, the settings, the members.

The guide's own operation (`rs.conf()`, edit, `rs.reconfig()`): a new config
document from the live one, its version bumped, checked before it is sent.
Deploy (settings and members from the spec) and `hastack mongo priority` both
send what these functions return, through the primary.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


class PriorityError(ValueError):
    pass


def _bumped(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the config to change, its version one up (replSetReconfig wants a higher one)."""
    new = copy.deepcopy(dict(config))
    new["version"] = int(new.get("version", 1)) + 1
    return new


def with_priority(config: Mapping[str, Any], member: str, priority: float) -> dict[str, Any]:
    """The replica set config with `member`'s priority set and the version bumped (for replSetReconfig)."""
    if priority < 0 or priority > 1000:
        raise PriorityError(f"priority {priority} is outside 0..1000")
    new = _bumped(config)
    hits = [m for m in new.get("members", []) if m.get("host") == member or str(m.get("host", "")).split(":")[0]
            == member]
    if not hits:
        hosts = ", ".join(str(m.get("host")) for m in new.get("members", []))
        raise PriorityError(f"{member} is not a member ({hosts})")
    m = hits[0]
    if m.get("arbiterOnly"):
        raise PriorityError(f"{m['host']} is an arbiter: it never becomes primary, its priority stays 0")
    if priority > 0 and m.get("votes", 1) == 0:
        raise PriorityError(f"{m['host']} has no vote: a non-voting member must keep priority 0")
    electable = [x for x in new["members"] if not x.get("arbiterOnly") and
                 (priority if x is m else x.get("priority", 1)) > 0]
    if not electable:
        raise PriorityError("no member could be elected primary with that change")
    m["priority"] = priority
    return new


def with_settings(config: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The live config with the spec's `settings` (election timeout, heartbeat) and the version bumped;
    None when it already has them. Members and priorities stay as they are: those move by operation."""
    live = dict(config.get("settings", {}))
    if all(live.get(k) == v for k, v in settings.items()):
        return None
    new = _bumped(config)
    new["settings"] = {**live, **settings}
    return new


class MembershipError(ValueError):
    pass


JOINING_TAG = "hastack-joining"  # a member added at priority 0 until it has caught up (PSA sets)


def _writable(m: Mapping[str, Any]) -> bool:
    """A data-bearing voting member (MongoDB's "writable node" in its PSA rule)."""
    return not m.get("arbiterOnly") and m.get("votes", 1) > 0


def next_membership_step(config: Mapping[str, Any], desired: Sequence[Mapping[str, Any]], primary: str,
                         states: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any] | None] | None:
    """One step from the live member list towards the spec's: (what, new config), (what, None) to
    wait and ask again, or None when there.

    MongoDB takes at most one voting member added or removed per reconfig, so
    this is called again after each step. Removals first (a replaced member
    frees its vote before the new one takes one); never the primary itself.
    A new member joins as the spec writes it; members it keeps are left as they
    are (priorities move by operation). Into a primary-arbiter set, MongoDB
    refuses an electable member in one step (rs.reconfigForPSASet): it joins
    at priority 0 and gets its priority once `states` (host -> stateStr) says
    it is a SECONDARY, caught up.
    """
    live = {str(m["host"]): m for m in config.get("members", [])}
    want = {str(m["host"]): m for m in desired}
    for host in sorted(live.keys() - want.keys()):
        if host == primary:
            raise MembershipError(f"{host} is the primary and not in the spec: step it down first "
                                "(`hastack mongo priority`), then deploy again")
        new = _bumped(config)
        new["members"] = [m for m in new["members"] if str(m["host"]) != host]
        return f"removed {host}", new
    for host in sorted(want.keys() - live.keys()):
        new = _bumped(config)
        member = dict(want[host])
        # Above every _id in use and every one the spec numbers: a replaced member's id is not reused.
        member["_id"] = max((int(m["_id"]) for m in [*new["members"], *desired]), default=-1) + 1
        after = [*new["members"], member]
        psa = (any(m.get("arbiterOnly") for m in after) and sum(map(_writable, after)) == 2
               and sum(map(_writable, new["members"])) == 1)
        if psa and _writable(member) and member.get("priority", 1) > 0:
            member = {**member, "priority": 0, "tags": {**member.get("tags", {}), JOINING_TAG: "1"}}
            new["members"] = [*new["members"], member]
            return f"added {host} at priority 0 until it has caught up (primary-arbiter set)", new
        new["members"] = after
        return f"added {host}", new
    for host, m in sorted(live.items()):
        if JOINING_TAG not in m.get("tags", {}):
            continue
        state = (states or {}).get(host, "state unknown")
        if state != "SECONDARY":
            return f"waiting for {host} to catch up ({state})", None
        # Every live host is wanted here: the removals above went first.
        priority = want[host].get("priority", 1)
        new = _bumped(config)
        for x in new["members"]:
            if str(x["host"]) == host:
                x["priority"] = priority
                x["tags"] = {k: v for k, v in x.get("tags", {}).items() if k != JOINING_TAG}
                if not x["tags"]:
                    del x["tags"]
        return f"{host} caught up: priority {priority}", new
    return None


def next_reconfig_step(config: Mapping[str, Any], settings: Mapping[str, Any], desired: Sequence[Mapping[str, Any]],
                       primary: str, states: Mapping[str, str] | None = None,
                       ) -> tuple[str, dict[str, Any] | None] | None:
    """The live config one reconfig closer to the spec's: its settings first, then its members
    ((what, None): wait, then ask again)."""
    new = with_settings(config, settings)
    if new is not None:
        return "settings " + ", ".join(f"{k}={v}" for k, v in settings.items()), new
    return next_membership_step(config, desired, primary, states)
