"""The evacuator: instance HA's loop on a controller, kept running (one copy) by pacemaker.

Each round reads the facts (pacemaker's view of every compute and its fence
history, nova's compute services and the instances on each host), asks the
pure decider (`evacuation.decide`) for a plan, applies its actions through
nova's API and writes what it saw and did to a state file status reads.
Pacemaker runs it as one resource on the members: when its controller dies
it starts on another, which reads the same facts and carries on (every
action is safe to repeat: nova refuses a second evacuation of an instance
already moving, and the decider does not ask for one).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from hastack.agent.config import read_config
from hastack.agent.evacuation import (
    Action,
    Compute,
    Member,
    Plan,
    Policy,
    Step,
    decide,
    emptied,
    fence_confirmed,
    fencing_of,
    operator_refusal,
    parse_compute_services,
    parse_evacuations,
    parse_servers,
    parse_uncleaned,
    parse_unfinished,
)
from hastack.components.instance_ha import STATE_PATH, EvacuatorState, HostView
from hastack.components.pacemaker import PacemakerState, parse_crm_mon, parse_fence_history

log = logging.getLogger("hastack.evacuator")

CONFIG = "/etc/hastack/evacuator.yaml"
# forced_down is shown and set from 2.53 on (services by id); evacuate without a host is 2.29+.
MICROVERSION = "2.53"


class EvacuatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    computes: tuple[str, ...]
    evacuate: tuple[str, ...]  # computes whose instances move; the others are fenced and left
    reserved: tuple[str, ...] = ()
    max_failed: int = Field(ge=0)
    interval_s: float = Field(default=2.0, gt=0, le=600)
    auth_url: str
    username: str
    password: str
    project: str = "admin"
    region: str = "regionone"
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    cafile: str | None = None  # HTTPS on the VIP: the CA its certificate is checked against

    def policy(self, override: bool = False) -> Policy:
        return Policy(frozenset(self.evacuate), self.reserved, self.max_failed, override)


def load(path: str | Path) -> EvacuatorConfig:
    return EvacuatorConfig.model_validate(yaml.safe_load(Path(path).read_text()))


def member_of(mon: PacemakerState | None, host: str) -> Member:
    """A compute as pacemaker sees it: online, unclean (owed a fence) or offline."""
    if mon is None:
        return Member.UNKNOWN
    node = next((n for n in mon.nodes if n.name == host), None)
    if node is None:
        return Member.UNKNOWN
    # A remote node is online only with its connection started: crm_mon called a compute that was
    # powered off "online" while pacemaker retried its connection (seen in the lab, every ~30 s).
    conn = next((r for r in mon.resources if r.id == host and r.agent == "ocf:pacemaker:remote"), None)
    if node.online and (conn is None or (conn.active and conn.role == "Started" and not conn.failed)):
        return Member.ONLINE
    return Member.UNCLEAN if node.unclean else Member.OFFLINE


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout


class Nova:
    """nova's API as the evacuator uses it: an admin session through the VIP."""

    def __init__(self, cfg: EvacuatorConfig) -> None:
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        auth = v3.Password(auth_url=cfg.auth_url, username=cfg.username, password=cfg.password,
                           project_name=cfg.project, user_domain_id="default", project_domain_id="default")
        self.sess = session.Session(auth=auth, timeout=cfg.request_timeout_s, verify=cfg.cafile or True)
        self.filt = {"service_type": "compute", "interface": "internal", "region_name": cfg.region}
        self.headers = {"OpenStack-API-Version": f"compute {MICROVERSION}"}

    def get(self, path: str) -> Any:
        return self.sess.get(path, endpoint_filter=self.filt, headers=self.headers).json()

    def services(self) -> Any:
        return self.get("/os-services?binary=nova-compute")

    def servers(self, host: str) -> Any:
        return self.get(f"/servers/detail?all_tenants=1&host={host}")

    def evacuations(self, host: str) -> Any:
        return self.get(f"/os-migrations?source_compute={host}&migration_type=evacuation")

    def service_ids(self) -> dict[str, str]:
        return {s["host"]: s["id"] for s in self.services().get("services", [])}

    def put_service(self, service_id: str, body: dict[str, object]) -> None:
        self.sess.put(f"/os-services/{service_id}", json=body, endpoint_filter=self.filt, headers=self.headers)

    def evacuate(self, server: str) -> None:
        self.sess.post(f"/servers/{server}/action", json={"evacuate": {}}, endpoint_filter=self.filt,
                       headers=self.headers)


def facts(cfg: EvacuatorConfig, nova: Nova, run: Callable[[list[str]], str] = _run) -> tuple[Compute, ...]:
    """Everything a round decides on. The reads go out at once, not one after another: each took
    0.5-1 s on the loaded lab (crm_mon, the fence history, each nova call), and a compute fenced
    while a round was reading waited for that round and most of the next before anything moved
    (the first evacuation ~9 s after a 1.2 s fence)."""
    with ThreadPoolExecutor(3) as pool:
        mon_xml = pool.submit(run, ["crm_mon", "-1", "--output-as=xml"])
        # --verbose: without it stonith_admin lists one success per target, the *oldest* (2.1.5, seen in
        # the lab: a compute fenced twice showed only its first fence, and nothing moved the second time).
        history_xml = pool.submit(run, ["stonith_admin", "--history", "*", "--verbose", "--output-as=xml"])
        listed = pool.submit(nova.services)
        mon: PacemakerState | None
        try:
            mon = parse_crm_mon(mon_xml.result())
            history = parse_fence_history(history_xml.result())
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            log.warning("no cluster view: %s", exc)
            mon, history = None, ()
        services = parse_compute_services(listed.result())
    members = {h: member_of(mon, h) for h in cfg.computes}

    def may_move(h: str) -> bool:
        """A failed host, or one back online while still forced down."""
        service = services.get(h)
        return members[h] is not Member.ONLINE or (service is not None and service.forced_down)

    # Instances are read only where something may move, one host at a time (nova's `host` filter):
    # every instance of every project every two seconds weighed on nova-api while it was needed most.
    # nova's evacuation records too, wherever something may move. Without a host back online but still
    # forced down, a compute that rebooted before its instances had left had each of them evacuated
    # again, and both ended in ERROR on the other compute ("already exists"; in the lab).
    moving = [h for h in cfg.computes if may_move(h)]
    with ThreadPoolExecutor(max(1, 2 * len(moving))) as pool:
        reads = {h: (pool.submit(nova.servers, h), pool.submit(nova.evacuations, h)) for h in moving}
        servers = {h: parse_servers(listed_on.result()).get(h, ()) for h, (listed_on, _) in reads.items()}
        records = {h: record.result() for h, (_, record) in reads.items()}
    out = []
    for h in cfg.computes:
        fencing = fencing_of(history, h)
        record = records.get(h, {})
        out.append(Compute(h, members[h], fencing, services.get(h), servers.get(h, ()),
                           parse_evacuations(record, fencing.done_at), parse_unfinished(record, fencing.done_at),
                           parse_uncleaned(record)))
    return tuple(out)


# What each step asks of a compute's nova-compute service (PUT os-services/{id}, 2.53).
SERVICE_CHANGE: dict[Step, dict[str, object]] = {
    Step.FORCE_DOWN: {"forced_down": True}, Step.CLEAR: {"forced_down": False}, Step.ENABLE: {"status": "enabled"}}


def _why(exc: Exception) -> str:
    """An API error as nova put it: keystoneauth's own message for a 400 is "Unrecognized schema in
    response body", nova's reason is in the body."""
    body = getattr(getattr(exc, "response", None), "text", "") or ""
    return f"{exc} {body.strip()[:300]}".strip() if body else str(exc)


# Evacuations asked of nova at once: each call waits for nova-api to check the instance and cast
# the rebuild (0.5-1 s each on the loaded lab), and one after another they added up.
EVACUATE_AT_ONCE = 8


def fence_off(run: Callable[[list[str]], str], host: str) -> None:
    """Off (--fence), not reboot, through pacemaker: the host stays down until something powers it on."""
    run(["stonith_admin", "--fence", host, "--timeout", "120"])


def apply(nova: Nova, plan: Plan, run: Callable[[list[str]], str] = _run,
          ids: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Each action in the plan's order (the evacuations, which come after their host's force-down,
    together): what was done, and what failed and why (logged, and asked again by the next round,
    which reads the facts again). `ids`: each host's nova-compute service id, when the round read them."""
    known = {h: i for h, i in (ids or {}).items() if i}

    def one(action: Action) -> str | None:
        """None when done, else why not."""
        try:
            if action.step is Step.EVACUATE:
                nova.evacuate(action.instance)
            elif action.step is Step.POWER_ON:  # through the host's own fence device, as pacemaker cut it
                run(["stonith_admin", "--unfence", action.host, "--timeout", "60"])
            elif action.step is Step.FENCE:
                fence_off(run, action.host)
            else:
                if action.host not in known:
                    known.update(nova.service_ids())
                nova.put_service(known[action.host], SERVICE_CHANGE[action.step])
        except Exception as exc:
            return _why(exc)
        return None

    done: list[str] = []
    failed: list[str] = []
    for step, group in itertools.groupby(plan.actions, key=lambda a: a.step):
        actions = list(group)
        if step is Step.EVACUATE and len(actions) > 1:
            with ThreadPoolExecutor(min(EVACUATE_AT_ONCE, len(actions))) as pool:
                outcomes = list(pool.map(one, actions))
        else:
            outcomes = [one(a) for a in actions]
        for action, why in zip(actions, outcomes, strict=True):
            if why is None:
                log.info("%s", action)
                done.append(str(action))
            else:
                log.warning("%s failed: %s", action, why)
                failed.append(f"{action}: {why}"[:400])
    return done, failed


def service_ids(computes: tuple[Compute, ...]) -> dict[str, str]:
    """Each compute's nova-compute service id, from the round's own read of nova's services."""
    return {c.name: c.service.id for c in computes if c.service is not None and c.service.id}


def state_of(plan: Plan, done: list[str], at: float, failed: list[str] | None = None) -> EvacuatorState:
    return EvacuatorState(at, {h.host: HostView(h.state.value, h.reason) for h in plan.hosts}, plan.refusal,
                          tuple(done), failed=tuple(failed or ()))


def failed_state(last: EvacuatorState | None, exc: Exception, at: float) -> EvacuatorState:
    """A round that could not finish: what the last good one saw, and why this one stopped."""
    why = (str(exc) or type(exc).__name__).strip().splitlines()
    return EvacuatorState(at, last.hosts if last else {}, last.refusal if last else "", (),
                          f"{type(exc).__name__}: {why[0] if why else ''}"[:300])


def write_state(path: str, state: EvacuatorState) -> None:
    """What the last round saw and did, for status (replaced whole: never read half-written). The
    file's shape is components.instance_ha's, which status parses it with."""
    tmp = f"{path}.{os.getpid()}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(tmp).write_text(json.dumps(dataclasses.asdict(state)) + "\n")
    os.replace(tmp, path)


def round_once(cfg: EvacuatorConfig, nova: Nova, state: str = STATE_PATH,
               override: bool = False) -> tuple[Plan, EvacuatorState]:
    computes = facts(cfg, nova)
    plan = decide(computes, cfg.policy(override))
    done, failed = apply(nova, plan, ids=service_ids(computes))
    written = state_of(plan, done, time.time(), failed)
    write_state(state, written)
    return plan, written


class Evacuated(BaseModel):
    """What `hastack evacuate HOST` did: printed as JSON for the CLI on the operator's machine."""

    model_config = ConfigDict(frozen=True)

    host: str
    ok: bool
    refusal: str = ""  # why nothing was fenced or moved, or why it stopped
    fenced: str = ""  # "already" (pacemaker had fenced it since its last report) or "now"
    actions: tuple[str, ...] = ()
    moving: tuple[str, ...] = ()  # its instances nova was asked to move (or is moving)
    left: tuple[str, ...] = ()  # instances still on it that nova cannot move (their status)
    seen: dict[str, str] = Field(default_factory=dict)  # each compute: state and reason


def _seen(plan: Plan) -> dict[str, str]:
    return {h.host: f"{h.state.value}: {h.reason}" for h in plan.hosts}


def evacuate_host(cfg: EvacuatorConfig, nova: Nova, host: str, *, run: Callable[[list[str]], str] = _run,
                  wait_s: float = 300.0, every_s: float = 2.0) -> Evacuated:
    """The operator's evacuation of `host`, under instance HA's own rule: fenced first (powered off
    through pacemaker, and left off), then forced down and every instance evacuated; refused before
    any fence when nothing could take its instances. Returns once nova was asked to move every
    instance it can (bounded by `wait_s`)."""
    policy = cfg.policy(override=True)  # the operator's word: a host at a time, whatever else failed
    computes = facts(cfg, nova, run)
    if why := operator_refusal(computes, host, policy):
        return Evacuated(host=host, ok=False, refusal=why, seen=_seen(decide(computes, policy)))
    fenced = "already"
    if not fence_confirmed(next(c for c in computes if c.name == host)):
        fenced = "now"
        try:
            fence_off(run, host)
        except (subprocess.SubprocessError, OSError) as exc:
            why = getattr(exc, "stderr", "") or str(exc)
            return Evacuated(host=host, ok=False, refusal=f"fencing {host} failed, nothing moved: "
                             f"{str(why).strip()[-500:]}", seen=_seen(decide(computes, policy)))
    done: list[str] = []
    deadline = time.monotonic() + wait_s
    while True:
        computes = facts(cfg, nova, run)
        c = next(x for x in computes if x.name == host)
        plan = decide(computes, policy)
        if emptied(c) or time.monotonic() > deadline:
            break
        # This host's actions but powering it on: the operator's fence leaves it off (and it was
        # theirs, not the cluster's, so the plan holds none; this is belt and braces).
        mine = plan.of(host)
        mine = dataclasses.replace(mine, actions=tuple(a for a in mine.actions if a.step is not Step.POWER_ON))
        done += apply(nova, Plan((mine,), enable=plan.enable), run, service_ids(computes))[0]
        time.sleep(every_s)
    moving = tuple(sorted(i.id for i in c.instances if c.moving(i)))
    left = tuple(sorted(f"{i.id} ({i.status})" for i in c.instances if not c.moving(i)))
    why = "" if emptied(c) else f"not done within {wait_s:.0f} s: {plan.of(host).state.value}: {plan.of(host).reason}"
    return Evacuated(host=host, ok=not why, refusal=why, fenced=fenced, actions=tuple(done), moving=moving, left=left,
                     seen=_seen(plan))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hastack-evacuator", description=__doc__)
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--state", default=STATE_PATH)
    parser.add_argument("--evacuate", metavar="HOST", help="the operator's evacuation of HOST (fence first), "
                        "once; its result as JSON on stdout")
    parser.add_argument("--wait", type=float, default=300.0, help="with --evacuate: how long to keep at it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = read_config("hastack-evacuator", args.config, load)
    if cfg is None:
        return 2
    nova = Nova(cfg)
    if args.evacuate:
        try:
            result = evacuate_host(cfg, nova, args.evacuate, wait_s=args.wait)
        except Exception as exc:  # nova or keystone unreachable: said, never a traceback to parse
            result = Evacuated(host=args.evacuate, ok=False, refusal=f"{type(exc).__name__}: {exc}"[:500])
        print(result.model_dump_json(), flush=True)
        return 0 if result.ok else 1
    last: dict[str, str] = {}
    good: EvacuatorState | None = None
    while True:
        t0 = time.monotonic()
        try:
            plan, good = round_once(cfg, nova, args.state)
            now = {h.host: f"{h.state.value}: {h.reason}" for h in plan.hosts}
            for host, what in now.items():  # the journal gets changes, not every round
                if last.get(host) != what:
                    log.info("%s %s", host, what)
            last = now
        except Exception as exc:  # nova or keystone unreachable: the next round tries again
            log.warning("round failed: %s", exc)
            try:
                write_state(args.state, failed_state(good, exc, time.time()))
            except OSError as werr:
                log.warning("cannot write %s: %s", args.state, werr)
            # With a new login: a token (and its catalog) from before nova was in keystone's catalog, or
            # from before a password change, would fail every round after.
            nova = Nova(cfg)
        time.sleep(max(0.0, cfg.interval_s - (time.monotonic() - t0)))


if __name__ == "__main__":
    sys.exit(main())
