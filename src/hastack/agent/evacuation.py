"""Instance HA's decisions: which failed compute hosts are surely dead, and what moves off them. Pure.

One rule above all: nothing is evacuated from a host until its fence is
confirmed. A compute that only looks dead (cut off, its nova-compute silent)
may still run its instances; a second copy of each on another host would be
two writers on one disk. So a failed host's instances move only when

- pacemaker no longer counts it as a member that may run anything (not
  online, not "unclean": an unclean node is one it still has to fence), and
- the fence history holds a successful fence of it *after* its nova-compute
  last reported: whatever ran there has stopped since its last sign of life.
  A host held off by its fence whose report is stamped later is fenced off
  again (a late-handled report, or somebody powered it on): never waited on.

Then its nova-compute is forced down (nova evacuates only from a host it
believes down, and need not wait `service_down_time`), every instance on it
is evacuated, and once none is left and the host is back, `forced_down` is
cleared. More failed hosts than the policy allows at once is not a compute
failure but a network or control-plane fault: nothing is forced down or
moved unless the operator overrides.

Facts in, a plan out: the evacuator on the controllers (and `hastack
evacuate`) read the facts, call `decide`, apply the actions and read again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hastack.components.pacemaker import FenceEvent


class Member(StrEnum):
    """The compute host as the cluster stack sees it (a pacemaker_remote node)."""

    ONLINE = "online"
    OFFLINE = "offline"  # fenced or stopped cleanly: runs nothing
    UNCLEAN = "unclean"  # failed, not yet fenced: may still run anything
    UNKNOWN = "unknown"  # no cluster view (no controller answered)


@dataclass(frozen=True)
class Fencing:
    """The host's fence history: the last successful fence, the last failed attempt (epoch seconds)."""

    done_at: float | None = None
    failed_at: float | None = None
    # The cluster itself (pacemaker's controller) fenced it since its last power-on, not only a person's
    # `stonith_admin --fence` (or the evacuator's own second one): only such a host is powered on again
    # once its instances have left.
    by_cluster: bool = False
    on_at: float | None = None  # the last successful power-on ("on") through its device


# Fence actions after which nothing runs on the target (a reboot's "on" half does not matter:
# a rebooted host starts no instance by itself).
STOPPING = frozenset({"reboot", "off"})


def fencing_of(events: Iterable[FenceEvent], host: str) -> Fencing:
    """The host's last successful and last failed fence, from pacemaker's history."""
    done = [e for e in events if e.target == host and e.action in STOPPING and e.status == "success"
            and e.completed is not None]
    failed = [e.completed for e in events if e.target == host and e.status == "failed" and e.completed is not None]
    last = max(done, key=lambda e: e.completed or 0.0, default=None)
    on = max((e.completed for e in events if e.target == host and e.action == "on" and e.status == "success"
              and e.completed is not None), default=None)
    by_cluster = any(e.client.startswith("pacemaker-controld") and (on is None or (e.completed or 0.0) > on)
                     for e in done)
    return Fencing(last.completed if last else None, max(failed, default=None), by_cluster, on)


def held_off(f: Fencing) -> bool:
    """Powered off by its last fence, not powered on through its device since (a compute's device turns
    pacemaker's reboot into an off: pcmk_reboot_action)."""
    return f.done_at is not None and (f.on_at is None or f.on_at < f.done_at)


def owed_power_on(c: Compute) -> bool:
    """Off since the cluster fenced it (its device's reboot is an off), not yet powered on again."""
    return c.member is Member.OFFLINE and c.fencing.by_cluster and held_off(c.fencing)


@dataclass(frozen=True)
class Service:
    """The host's nova-compute as nova's API shows it."""

    up: bool
    forced_down: bool = False
    updated_at: float | None = None  # its last report (epoch seconds)
    disabled: bool = False
    id: str = ""  # nova's id for it (PUT os-services/{id})


# Instances nova is already moving or rebuilding: asked once, not again.
BUSY_TASKS = frozenset({"rebuilding", "rebuild_block_device_mapping", "rebuild_spawning", "migrating",
                        "resize_migrating", "deleting"})


# Deleted, or being deleted: nothing to move. nova finishes a delete asked while the host was down
# only once its nova-compute starts again.
GONE = frozenset({"DELETED", "SOFT_DELETED"})
DELETING_TASKS = frozenset({"deleting", "soft-deleting"})


# nova's statuses for the vm_states its evacuate accepts (active, stopped, error).
EVACUABLE = frozenset({"ACTIVE", "SHUTOFF", "ERROR"})


@dataclass(frozen=True)
class Instance:
    id: str
    status: str  # nova's: ACTIVE, SHUTOFF, ERROR, REBUILD...
    task_state: str | None = None
    launched: bool = True  # nova's `launched_at` is set: it ran once
    launched_at: float | None = None  # when (epoch seconds), where nova says

    @property
    def busy(self) -> bool:
        return self.task_state in BUSY_TASKS or self.status in ("REBUILD", "MIGRATING", "DELETED")

    @property
    def leaving(self) -> bool:
        return self.status in GONE or self.task_state in DELETING_TASKS

    @property
    def never_ran(self) -> bool:
        """A build the dead host never finished (or one reset to error since). nova evacuates only an
        instance that was launched once, and nothing of this one runs: it stays where it is, in ERROR
        once the host's nova-compute starts again, and holds nothing back. Waiting for it to leave kept
        a fenced compute off for good (the lab: a server building on it when it was fenced, reset to
        error, refused by nova's evacuate at every round)."""
        return (not self.launched or self.status == "BUILD") and not self.busy

    @property
    def evacuable(self) -> bool:
        """nova evacuates an instance that ran once, is active, stopped or in error, and is not already moving."""
        return self.status in EVACUABLE and not self.busy and not self.never_ran


def nova_time(text: str | None) -> float | None:
    """nova's "2026-12-01T07:56:53.000000" (UTC, no zone) as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() if text else None


def parse_compute_services(doc: Mapping[str, Any]) -> dict[str, Service]:
    """GET /os-services?binary=nova-compute at microversion 2.53 (which shows forced_down and takes
    PUT os-services/{id}): each host's nova-compute."""
    return {s["host"]: Service(up=s.get("state") == "up", forced_down=bool(s.get("forced_down")),
                               updated_at=nova_time(s.get("updated_at")), disabled=s.get("status") == "disabled",
                               id=str(s.get("id", "")))
            for s in doc.get("services", []) if s.get("binary") == "nova-compute"}


# An evacuation nova gave up on: the instance may be asked again.
FAILED_MIGRATIONS = frozenset({"error", "failed"})


def _since(doc: Mapping[str, Any], since: float | None) -> list[Mapping[str, Any]]:
    """The migration records created at or after `since` (the fence)."""
    return [m for m in doc.get("migrations", []) if since is None or (nova_time(m.get("created_at")) or 0) >= since]


def parse_evacuations(doc: Mapping[str, Any], since: float | None) -> frozenset[str]:
    """GET /os-migrations?source_compute=HOST&migration_type=evacuation: the instances with an
    evacuation from HOST on record since `since` (the fence) that nova has not given up on."""
    return frozenset(m["instance_uuid"] for m in _since(doc, since) if m.get("status") not in FAILED_MIGRATIONS)


# An evacuation nova has finished: rebuilt on its new host (done), and cleaned up on the old (completed).
FINISHED_MIGRATIONS = frozenset({"done", "completed"})


def parse_unfinished(doc: Mapping[str, Any], since: float | None) -> int:
    """The same records: how many evacuations since `since` nova is still running."""
    return sum(1 for m in _since(doc, since) if m.get("status") not in FAILED_MIGRATIONS | FINISHED_MIGRATIONS)


def parse_uncleaned(doc: Mapping[str, Any]) -> int:
    """The same records: evacuations rebuilt elsewhere (`done`) that the host's own nova-compute has not
    cleaned up yet (it deletes the old copies and marks them `completed` as it starts). Every one, not
    only those since the last fence: nova refuses forced_down=false while any is left, and a compute
    fenced twice (back, then fenced again before its nova-compute ran) had its first fence's records
    left out, so forced_down was asked too early and refused for 20 s (the fast keepalived lab)."""
    return sum(1 for m in doc.get("migrations", []) if m.get("status") == "done")


def parse_servers(doc: Mapping[str, Any]) -> dict[str, tuple[Instance, ...]]:
    """GET /servers/detail?all_tenants=1 (as admin): the instances on each host."""
    out: dict[str, list[Instance]] = {}
    for s in doc.get("servers", []):
        host = s.get("OS-EXT-SRV-ATTR:host")
        if host:
            launched = s.get("OS-SRV-USG:launched_at")
            out.setdefault(host, []).append(Instance(s["id"], s.get("status", ""), s.get("OS-EXT-STS:task_state"),
                                                     launched=bool(launched), launched_at=nova_time(launched)))
    return {h: tuple(v) for h, v in out.items()}


@dataclass(frozen=True)
class Compute:
    name: str
    member: Member
    fencing: Fencing = Fencing()
    service: Service | None = None  # None: nova does not know the host (or nova did not answer)
    instances: tuple[Instance, ...] = ()  # those nova places on this host
    # Instances nova already has an evacuation of on record since the fence (its migration records):
    # not asked again. nova's own guard is not enough: an instance asked at one round was listed
    # ACTIVE on this host, with no task, at the next, and a second rebuild failed "already exists".
    asked: frozenset[str] = frozenset()
    # Evacuations from this host since the fence that nova has not finished (not done, completed or
    # failed). Its nova-compute must not start before they are done: it completes `done` records
    # only as it starts, and nova refuses to clear forced_down while any remains.
    unfinished: int = 0
    # Evacuations from this host rebuilt elsewhere whose old copies its nova-compute has not cleaned up
    # yet. nova refuses to clear forced_down while any is left ("`done` evacuation migration records
    # remain"): asked anyway, each round failed with HTTP 400 for ~30 s after the host came back (lab).
    uncleaned: int = 0

    def moving(self, i: Instance) -> bool:
        return i.busy or i.id in self.asked

    def waiting(self) -> list[Instance]:
        """Instances to ask nova to evacuate, and not asked already."""
        return [i for i in self.instances if i.evacuable and i.id not in self.asked]

    def arrived(self, i: Instance) -> bool:
        """Launched here after the fence, so never part of the failure: a build nova had sent to the host
        before it was fenced, queued until its nova-compute came back, and run then. Evacuating it from
        the host that runs it left `done` records its nova-compute, already started, never cleaned up:
        forced_down could not be cleared (the fast lab's isolation, dd1d6e5)."""
        f = self.fencing.done_at
        return f is not None and i.launched_at is not None and i.launched_at > f and i.id not in self.asked

    def staying(self) -> list[Instance]:
        """Instances still to leave the host by evacuation: not those being deleted, nor those that never
        ran. Counting either kept a fenced compute off for good (the lab: 20 servers deleted while it was
        down waited for its nova-compute, which waited for them to leave)."""
        return [i for i in self.instances if not i.leaving and not i.never_ran]


@dataclass(frozen=True)
class Policy:
    evacuate: frozenset[str]  # hosts whose instances move; the rest are fenced and left alone
    reserved: tuple[str, ...] = ()  # computes kept empty (disabled in nova) until an evacuation needs them
    max_failed: int = 0  # more failed hosts than this at once: a network or control-plane fault
    override: bool = False  # the operator says: evacuate even so


def default_max_failed(computes: int) -> int:
    """At most half of the computes may fail at once and still count as host failures."""
    return computes // 2


class Step(StrEnum):
    FENCE = "fence"  # off through its device again: a report stamped after the fence that holds it off
    FORCE_DOWN = "force-down"  # nova-compute's forced_down = true
    ENABLE = "enable"  # a reserved host's nova-compute service enabled: it can take instances
    EVACUATE = "evacuate"  # one instance rebuilt elsewhere (nova picks the host)
    CLEAR = "clear"  # forced_down = false: the host is back and empty of evacuated instances
    POWER_ON = "power-on"  # a compute the cluster fenced (off), on again once its evacuations are done


@dataclass(frozen=True)
class Action:
    step: Step
    host: str
    instance: str = ""

    def __str__(self) -> str:
        return f"{self.step.value} {self.host}" + (f" {self.instance}" if self.instance else "")


class State(StrEnum):
    """What the evacuator makes of one host; status shows it."""

    HEALTHY = "healthy"
    WAIT_FENCE = "waiting for fence"  # failed, no confirmed fence yet: nothing moves
    FENCE_FAILED = "fence failed"  # the last attempt failed: nothing moves, a person must look
    EVACUATING = "evacuating"
    FENCED = "fenced, not evacuated"  # evacuate: false in the spec
    REFUSED = "refused"  # too many failed at once, and no override
    RETURNING = "returning"  # back, evacuations done: forced_down cleared


@dataclass(frozen=True)
class HostPlan:
    host: str
    state: State
    reason: str
    actions: tuple[Action, ...] = ()


# The order a plan's steps run in: a host is down for nova before anything moves off it, a reserved
# host open before the evacuations that need it.
ORDER = (Step.FENCE, Step.FORCE_DOWN, Step.ENABLE, Step.EVACUATE, Step.CLEAR, Step.POWER_ON)


@dataclass(frozen=True)
class Plan:
    hosts: tuple[HostPlan, ...]
    refusal: str = ""  # why nothing moves anywhere, when that is the decision
    enable: tuple[Action, ...] = ()  # reserved hosts opened for this evacuation

    @property
    def actions(self) -> tuple[Action, ...]:
        every = [*self.enable, *(a for h in self.hosts for a in h.actions)]
        return tuple(sorted(every, key=lambda a: ORDER.index(a.step)))

    def of(self, host: str) -> HostPlan:
        return next(h for h in self.hosts if h.host == host)


def failed(c: Compute) -> bool:
    return c.member is not Member.ONLINE


def fence_failed(f: Fencing) -> bool:
    """The last attempt failed: whatever succeeded before, pacemaker is fencing the host again."""
    return f.failed_at is not None and (f.done_at is None or f.failed_at > f.done_at)


def fence_confirmed(c: Compute) -> bool:
    """Fenced after its nova-compute's last report, and pacemaker does not still owe a fence.

    Once the service is forced down, its `updated_at` no longer says when nova-compute last reported:
    nova stamps it when forced_down is set (seen in the lab: 3 s after the fence). A host pacemaker
    calls offline, not unclean, has been fenced for this failure (a lost compute stays unclean until
    its fence), so a forced-down host is judged by that alone.

    A fence the host has been powered on since proves nothing any more: what runs there now may have
    started after it (the fast lab's isolation, dd1d6e5: powered on with nothing placed on it, pacemaker
    still calling it offline while it booted and ran three queued builds, which were then evacuated
    from the running host)."""
    if c.member in (Member.ONLINE, Member.UNCLEAN) or c.fencing.done_at is None or fence_failed(c.fencing):
        return False
    if not held_off(c.fencing):
        return False
    if c.service is not None and c.service.forced_down:
        return True
    # Both clocks are read to the second (pacemaker's "11:53:21Z", nova's "11:53:21.000000"): a report in
    # the fence's own second came before it (the host was off after), so the same second counts. In CI a
    # compute that reported at 11:53:21 and was fenced at 11:53:21 was waited on until it came back.
    last_seen = c.service.updated_at if c.service else None
    return last_seen is None or c.fencing.done_at >= last_seen


def late_report(c: Compute) -> bool:
    """Offline, held off by its last fence, yet nova-compute's last report is stamped after that fence.

    nova stamps `updated_at` when a conductor handles the report, not when the host sent it: in CI, a
    controller's management link cut, a report was stamped 20 s after the fence had cut the host's
    power (it had waited in a queue). Waiting for a newer fence kept that compute off for good: pacemaker had
    nothing left to fence. Fencing it off again settles it either way: a no-op on a host that is off, a
    fence of one somebody powered on."""
    f, s = c.fencing, c.service
    return (c.member is Member.OFFLINE and held_off(f) and not fence_failed(f) and s is not None
            and not s.forced_down and s.updated_at is not None and f.done_at is not None
            and s.updated_at > f.done_at)


def _fmt(t: float | None) -> str:
    return "never" if t is None else f"{t:.0f}"


def _unconfirmed(c: Compute) -> HostPlan:
    """A failed host whose fence is not confirmed: nothing moves."""
    f = c.fencing
    if fence_failed(f):
        return HostPlan(c.name, State.FENCE_FAILED, f"fencing failed at {_fmt(f.failed_at)}: nothing moves "
                        "until a fence succeeds")
    seen = c.service.updated_at if c.service else None
    if late_report(c):
        return HostPlan(c.name, State.WAIT_FENCE, f"{c.member.value}; nova-compute's last report ({_fmt(seen)}) "
                        f"is stamped after the fence that holds it off ({_fmt(f.done_at)}): fencing it off "
                        "again before anything moves", (Action(Step.FENCE, c.name),))
    if c.member is Member.UNCLEAN or f.done_at is None:
        why = "pacemaker has not fenced it yet"
    elif seen is not None and seen > f.done_at:
        why = f"its last fence ({_fmt(f.done_at)}) is older than nova-compute's last report ({_fmt(seen)})"
    else:
        why = (f"powered on at {_fmt(f.on_at)}, after its last fence ({_fmt(f.done_at)}): it may run what is on "
               "it now, until it is back or fenced again")
    return HostPlan(c.name, State.WAIT_FENCE, f"{c.member.value}; {why}: nothing moves")


def _failed_host(c: Compute, policy: Policy, refusal: str) -> HostPlan:
    if not fence_confirmed(c):
        return _unconfirmed(c)
    if refusal:
        # Nothing moved, nothing forced down: a compute the cluster fenced off boots again and its
        # instances with it, as a rebooted one did (a partition, likelier than so many dead hosts).
        return HostPlan(c.name, State.REFUSED, refusal, (Action(Step.POWER_ON, c.name),) if owed_power_on(c) else ())
    actions: list[Action] = []
    if c.service is not None and not c.service.forced_down:
        actions.append(Action(Step.FORCE_DOWN, c.name))
    if c.name not in policy.evacuate:
        on = (Action(Step.POWER_ON, c.name),) if owed_power_on(c) else ()
        return HostPlan(c.name, State.FENCED, "fenced; evacuate: false in the spec", (*actions, *on))
    waiting, staying = c.waiting(), c.staying()
    actions += [Action(Step.EVACUATE, c.name, i.id) for i in waiting]
    never = sum(1 for i in c.instances if i.never_ran and not i.leaving)
    unrun = f"; {never} never ran there, left in place" if never else ""
    if not staying and not c.unfinished and owed_power_on(c):
        # Pacemaker fences a compute off (its device's reboot is an off): it boots again only now, so
        # its nova-compute starts after every evacuation from it is done and completes them.
        return HostPlan(c.name, State.EVACUATING, f"fenced at {_fmt(c.fencing.done_at)}; every instance has "
                        f"left{unrun}: powering it on", (*actions, Action(Step.POWER_ON, c.name)))
    busy = sum(1 for i in staying if c.moving(i))
    stuck = sorted({i.status for i in staying if not i.evacuable and not c.moving(i)})
    return HostPlan(c.name, State.EVACUATING, f"fenced at {_fmt(c.fencing.done_at)}; {len(waiting)} instance(s) to "
                    f"evacuate, {busy} already moving" + (f"; nova cannot evacuate the rest ({', '.join(stuck)})"
                                                          if stuck else "") + unrun, tuple(actions))


def _online_host(c: Compute, policy: Policy) -> HostPlan:
    if c.service is None or not c.service.forced_down:
        return HostPlan(c.name, State.HEALTHY, "online")
    staying = [i for i in c.staying() if not c.arrived(i)]
    if staying and c.name in policy.evacuate:
        # Back before its instances all left: they keep moving; forced_down stays until none is left.
        # What started here since the fence stays (it runs on the host that is back). Only here, not in
        # waiting()/staying(): on a host still off, an instance stamped after the fence can only be clock
        # skew between nova and pacemaker, and leaving it would strand it on a dead host.
        waiting = [i for i in c.waiting() if not c.arrived(i)]
        return HostPlan(c.name, State.EVACUATING, f"back; {len(staying)} instance(s) still to move",
                        tuple(Action(Step.EVACUATE, c.name, i.id) for i in waiting))
    if c.unfinished:
        # crm_mon called a powered-off compute online while pacemaker retried its connection: clearing
        # forced_down then let nova schedule to a dead host (the lab). Not before nova is done moving.
        return HostPlan(c.name, State.EVACUATING, f"back; {c.unfinished} evacuation(s) from it still running")
    if c.uncleaned:
        return HostPlan(c.name, State.RETURNING, f"back; its nova-compute has {c.uncleaned} evacuated instance(s) "
                        "to clean up before forced_down can be cleared (it does so as it starts)")
    arrived = sum(1 for i in c.instances if c.arrived(i))
    return HostPlan(c.name, State.RETURNING, "back" + (" and empty" if not c.instances else "") +
                    (f"; {arrived} instance(s) started here since the fence stay" if arrived else "") +
                    ": clearing forced_down", (Action(Step.CLEAR, c.name),))


def decide(computes: tuple[Compute, ...], policy: Policy) -> Plan:
    down = [c.name for c in computes if failed(c)]
    refusal = ""
    if len(down) > policy.max_failed and not policy.override:
        refusal = (f"{len(down)} of {len(computes)} computes failed at once ({', '.join(down)}; at most "
                   f"{policy.max_failed} count as host failures): a network or control-plane fault is likelier; "
                   "nothing is evacuated unless the operator overrides")
    hosts = tuple(_failed_host(c, policy, refusal) if failed(c) else _online_host(c, policy) for c in computes)
    enable: tuple[Action, ...] = ()
    if any(a.step is Step.EVACUATE for h in hosts for a in h.actions):
        # A reserved host takes instances only once nova may schedule to it.
        by_name = {c.name: c for c in computes}
        enable = tuple(Action(Step.ENABLE, r) for r in policy.reserved
                       if r in by_name and not failed(by_name[r]) and (s := by_name[r].service) is not None
                       and s.disabled)
    return Plan(hosts, refusal, enable)


# -- the operator's `hastack evacuate HOST` ------------------------------------------------------

def operator_refusal(computes: tuple[Compute, ...], host: str, policy: Policy) -> str:
    """Why `hastack evacuate HOST` must not fence anything, or "": a host instance HA does not watch,
    one the spec keeps in place, or no other compute to take its instances (fencing it would only
    take them down)."""
    names = [c.name for c in computes]
    if host not in names:
        return f"{host} is not a compute instance HA watches (those are: {', '.join(names) or 'none'})"
    if host not in policy.evacuate:
        return f"{host} has `evacuate: false` in the spec: its instances stay where they are"

    def takes(c: Compute) -> bool:
        s = c.service
        return (c.name != host and c.member is Member.ONLINE and s is not None and s.up and not s.forced_down
                and (not s.disabled or c.name in policy.reserved))

    if not any(takes(c) for c in computes):
        seen = ", ".join(f"{c.name} {c.member.value}" + (f", nova-compute {'up' if c.service.up else 'down'}"
                                                         f"{', disabled' if c.service.disabled else ''}"
                                                         if c.service else ", unknown to nova")
                         for c in computes if c.name != host)
        return f"no other compute can take {host}'s instances ({seen or 'there is no other compute'})"
    return ""


def emptied(c: Compute) -> bool:
    """Fenced, and nothing left on it that nova has not been asked to move."""
    return fence_confirmed(c) and not c.waiting()
