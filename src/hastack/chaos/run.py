"""One chaos run against a lab: workload on, fault in, healed, judged.

The I/O shell around `scenarios` (whom to hit) and `checker` (what the
history proves). The steps: refuse unless every cluster is healthy; start
the workload on the client host and wait until every stream succeeds; note
the time and inject the fault; probe status until every cluster is healthy
again (bounded); stop the workload, which reads back everything it wrote;
judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets as pysecrets
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from hastack.chaos.checker import Judgement, judge, spared_fences
from hastack.chaos.instance_checker import judge_instances
from hastack.chaos.scenarios import Fault, Scenario, pick_target
from hastack.common.progress import Progress
from hastack.components.mongodb import MONGO_ADMIN
from hastack.credentials.model import Secrets
from hastack.hosts.fleet import Access, reachable
from hastack.lab.cpu import CpuGroups
from hastack.lab.layout import Layout, layout
from hastack.lab.runtime import LabDirs, LabError, cables_out, load_state, power_cut, power_off, power_on, restart
from hastack.recovery.run import Report as RecoveryReport
from hastack.recovery.run import Round, recover
from hastack.render.openstack_run import api_reads, public_url
from hastack.spec.model import Spec
from hastack.status.gather import probe
from hastack.status.model import Facts, Row, verdict
from hastack.workload import instances
from hastack.workload.chaos_load import READBACK_S, SETTLE_S, ChaosTarget
from hastack.workload.history import History, Readback
from hastack.workload.smoke import target

READY_S = 90.0
# rolling-restart: one host's reboot and rejoin, bounded.
ROLLING_STEP_S = 240.0
# A fault status never saw within this long was absorbed (a quick restart): healthy after it counts.
UNSEEN_S = 30.0
# The delay line stops by itself this long after its scenario's end, if nobody stopped it.
DELAY_MARGIN_S = 30.0
# One status probe while a fault is on: a host that dies mid-probe no longer holds the run (SSH
# keepalives end that within ~40 s), and while a fault waits to be undone a probe gets only the time
# left before its end (at least PROBE_LEAST_S): a fault lasts what the scenario says.
PROBE_BOUND_S = 60.0
PROBE_LEAST_S = 2.0


class ChaosError(Exception):
    pass


@dataclass(frozen=True)
class RunReport:
    scenario: str
    target: str
    fault_at: float
    seen_s: float | None  # when status first saw a cluster unhealthy; None: never
    healed_s: float | None
    judgement: Judgement
    history_ops: int
    recovery: RecoveryReport | None = None  # what `hastack recover` saw and did, when the scenario runs it
    # Instance HA scenarios that move servers: the fault to every pinned server ACTIVE on another compute.
    evacuated_s: float | None = None
    # Instance HA scenarios: the fault to the switch's cut of the compute, and to the first evacuation asked.
    fenced_s: float | None = None
    evacuation_asked_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.judgement.ok

    def evacuation(self) -> str | None:
        """How long the pinned servers took to be ACTIVE elsewhere, and where the time went."""
        if self.evacuated_s is None:
            return None
        def at(s: float | None) -> str:
            return "never" if s is None else f"{s:.1f} s"
        return (f"every pinned server ACTIVE on another compute {self.evacuated_s:.1f} s after the fault "
                f"(the compute fenced after {at(self.fenced_s)}, the first evacuation asked after "
                f"{at(self.evacuation_asked_s)})")


def _healthy(spec: Spec, secrets: Secrets, access: Access, bound: float = PROBE_BOUND_S
             ) -> tuple[bool, Facts, tuple[Row, ...]]:
    """Whether every cluster is healthy, as one status probe sees it; a probe not done within `bound`
    is an unhealthy answer, so the loop that asked goes on (it may have a fault to undo)."""
    try:
        facts = asyncio.run(asyncio.wait_for(probe(spec, secrets, access), bound))
    except TimeoutError:
        return False, Facts(), (Row("status", False, "", (f"the probe did not finish within {bound:.1f} s",)),)
    rows = verdict(spec, facts)
    return all(r.healthy for r in rows), facts, rows


def _sickness(rows: tuple[Row, ...]) -> str:
    """The unhealthy rows and their problems, one line: what a run that does not heal reports."""
    return "; ".join(f"{r.component}: {', '.join(r.problems)}" for r in rows if not r.healthy)


def _readbacks(h: History) -> str:
    """Per stream: what the final read found, or why it did not finish; keys left in another state."""
    def one(stream: str, r: Readback) -> str:
        said = f"{stream} {len(r.keys)}" if r.complete else f"{stream} unread ({r.error})"
        return said + (f" ({len(r.states)} not as wanted: {'; '.join(list(r.states.values())[:2])})"
                       if r.states else "")
    return ", ".join(one(s, r) for s, r in sorted(h.readback.items()))


def _recover(spec: Spec, secrets: Secrets, access: Access, progress: Progress, timeout: float) -> RecoveryReport:
    def show(r: Round) -> None:
        progress(f"recover {r.component}: {r.outcome}: {r.reason}"
                 + (f" -> {'; '.join(r.actions)}" if r.actions else ""))

    # This run powered every host on itself: each one is booting, so recover waits for it as long as
    # the run may take (its 60 s default was over before the lab's hosts answered SSH under the storm
    # of a cold boot of them all, and it refused).
    timeout = max(timeout, 30)
    report = asyncio.run(recover(spec, secrets, access, progress, show, timeout=timeout, host_grace=timeout))
    progress(f"recover: {'every cluster whole' if report.ok else 'NOT recovered'} in {report.seconds:.1f} s")
    return report


def _readline(stream: object, timeout: float) -> str:
    """One line from the workload, bounded: a thread, as pipes have no read timeout."""
    box: list[str] = []
    th = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)  # type: ignore[attr-defined]
    th.start()
    th.join(timeout)
    return box[0] if box else ""


@dataclass(frozen=True)
class Shot:
    """What a fault needs to hit: the scenario, the lab, and the host it aims at."""

    scenario: Scenario
    spec: Spec
    host: str
    secrets: Secrets
    access: Access
    progress: Progress


Undo = Callable[[], None]


def _nothing() -> None:
    """The undo of a fault whose leftovers the cluster clears itself (a reboot by fencing)."""


def _power_loss(s: Shot) -> Undo:
    lay, dirs = layout(s.spec), LabDirs.of(s.spec.cluster)
    names = [h.name for h in lay.hosts]
    try:
        # Every host at once, as a room losing power: the network dark for all in one step, then one
        # thread per host to kill it.
        cables_out(lay, names)
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(lambda n: power_off(dirs, lay, n), names))
        time.sleep(s.scenario.off_s)  # the outage itself: part of the scenario, not a wait for state
        for n in names:
            power_on(dirs, lay, n)
    except LabError as exc:
        raise ChaosError(str(exc)) from exc
    return _nothing


def _rolling(s: Shot) -> Undo:
    lay, dirs = layout(s.spec), LabDirs.of(s.spec.cluster)
    cluster = {n.name for n in s.spec.corosync_nodes()}
    for h in lay.hosts:
        if h.name in cluster:
            # The maintenance procedure (pcs cluster stop, then reboot): a bare reboot got a node
            # fenced here, its pacemaker-managed chrony's stop timing out mid-shutdown.
            s.progress(f"rolling-restart: stopping the cluster stack on {h.name}")
            _run_on(s.spec, s.access, h.name, ("systemctl", "stop", "pacemaker", "corosync"), timeout=300)
        s.progress(f"rolling-restart: rebooting {h.name}")
        try:
            restart(dirs, lay, h.name)
        except LabError as exc:
            raise ChaosError(str(exc)) from exc
        t0 = time.monotonic()
        # The next host only once this one is back in every cluster (bounded: a stuck rejoin fails the run).
        while not _healthy(s.spec, s.secrets, s.access)[0]:
            if time.monotonic() - t0 > ROLLING_STEP_S:
                raise ChaosError(f"rolling-restart: not healthy {ROLLING_STEP_S:.0f} s after rebooting {h.name}")
            time.sleep(1)
        s.progress(f"rolling-restart: {h.name} back, every cluster healthy after {time.monotonic() - t0:.1f} s")
    return _nothing


def _sh_all(cmds: tuple[str, ...]) -> str | None:
    """Runs each command in turn, up to the first that fails: its message, or None."""
    for cmd in cmds:
        res = subprocess.run(shlex.split(cmd), capture_output=True, text=True, check=False)
        if res.returncode:
            return f"`{cmd}` failed: {res.stderr.strip()}"
    return None


def _sh_each(cmds: tuple[str, ...]) -> None:
    """Runs every command whatever fails: an undo puts back all it can."""
    for cmd in cmds:
        subprocess.run(shlex.split(cmd), check=False, capture_output=True)


def _impair(s: Shot) -> Undo:
    lay = layout(s.spec)
    add, remove = s.scenario.impair_commands(lay, s.host, f"hastack_{lay.tag}")
    failed = _sh_all(add)
    if failed is not None:
        _sh_each(remove)
        raise ChaosError(f"{s.host}: {failed}")
    return lambda: _sh_each(remove)


def delay_line(scenario: Scenario, lay: Layout, host: str, progress: Progress) -> Undo:
    """DELAY: `host`'s links spliced through a delay line (its own process) until the undo."""
    assert scenario.duration_s is not None
    splice = scenario.splice(lay, host)
    line: subprocess.Popen[str] | None = None

    def restore() -> None:
        nonlocal line
        if line is not None and line.poll() is None:
            assert line.stdin is not None and line.stdout is not None
            _sh_each(splice.reattach)
            with contextlib.suppress(OSError):
                line.stdin.close()  # the line sends what it holds, undoes the splice and exits
            try:
                line.wait(10)
                progress(f"delay line: {line.stdout.read().strip()}")
            except subprocess.TimeoutExpired:
                line.kill()
                line.wait(10)
        line = None
        _sh_each(splice.restore)  # again, in case the line could not: a no-op where it did

    failed = _sh_all(splice.prepare)
    if failed is None:
        # Bounded by itself too, past the scenario's end: a chaos run killed outright leaves no delay behind.
        line = subprocess.Popen([sys.executable, "-m", "hastack.chaos.delayline", "--delay-ms",
                                 str(scenario.delay_ms), "--seconds", str(scenario.duration_s + DELAY_MARGIN_S),
                                 *(f"--on-exit={cmd}" for cmd in splice.restore),
                                 *(f"{a}:{b}" for a, b in splice.pairs)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert line.stdout is not None
        ready = _readline(line.stdout, 10).strip()
        failed = None if ready == "ready" else f"the delay line did not start: {ready or 'no answer'}"
    if failed is None:
        failed = _sh_all(splice.attach)
    if failed is not None:
        restore()
        raise ChaosError(f"{host}: {failed}")
    return restore


def _delay(s: Shot) -> Undo:
    return delay_line(s.scenario, layout(s.spec), s.host, s.progress)


def _kill_host(s: Shot) -> Undo:
    pid = load_state(LabDirs.of(s.spec.cluster)).hosts.get(s.host)
    if not pid:
        raise ChaosError(f"{s.host}: the lab has no running host by that name")
    try:
        power_cut(pid, layout(s.spec).host(s.host))
    except LabError as exc:
        raise ChaosError(str(exc)) from exc
    return _nothing


def _cut_links(s: Shot) -> Undo:
    # From outside: the host-side veths. A fenced host boots with new ones;
    # one never fenced gets its old ones back when the run ends.
    links = s.scenario.links_to_cut(layout(s.spec).host(s.host))

    def reconnect() -> None:
        for name in links:
            subprocess.run(["ip", "link", "set", name, "up"], check=False, capture_output=True)

    for name in links:
        if subprocess.run(["ip", "link", "set", name, "down"], capture_output=True, check=False).returncode:
            reconnect()
            raise ChaosError(f"{s.host}: could not take {name} down")
    return reconnect


def _kill_processes(s: Shot) -> Undo:
    _run_on(s.spec, s.access, s.host, s.scenario.kill_command())
    return _nothing


# Each fault breaks the lab and returns what puts its own leftovers back.
FAULTS: dict[Fault, Callable[[Shot], Undo]] = {
    Fault.POWER_LOSS: _power_loss, Fault.ROLLING: _rolling, Fault.LOSS: _impair, Fault.SPLIT: _impair,
    Fault.DELAY: _delay,
    Fault.KILL_HOST: _kill_host, Fault.CUT_LINKS: _cut_links, Fault.KILL_PROCESSES: _kill_processes,
}


def _run_on(spec: Spec, access: Access, host: str, argv: tuple[str, ...], timeout: float = 120) -> None:
    async def go() -> None:
        async with reachable(spec, access) as (hosts, unreachable):
            if host in unreachable:
                raise ChaosError(f"{host}: {unreachable[host]}")
            res = await hosts[host].run(argv, check=False, timeout=timeout)
            if res.rc != 0:
                raise ChaosError(f"{host}: `{shlex.join(argv)}` exited {res.rc}: {res.stderr.strip()}")

    asyncio.run(go())


@dataclass
class _Heal:
    """What the run saw after the fault: when status first saw it, when every cluster was healthy again."""

    seen_at: float | None = None
    healed_at: float | None = None
    recovery: RecoveryReport | None = None


def _fault_and_heal(shot: Shot, fault_at: float) -> _Heal:
    """The fault, held for its duration, then watched until every cluster is healthy (bounded); always undone."""
    scenario, progress = shot.scenario, shot.progress
    undo = FAULTS[scenario.fault](shot)
    heal = _Heal()
    deadline = fault_at + scenario.heal_bound_s
    try:
        if scenario.recover:
            progress(f"power back {time.monotonic() - fault_at:.1f} s after the fault; hastack recover")
            heal.recovery = _recover(shot.spec, shot.secrets, shot.access, progress, deadline - time.monotonic())
        ended = scenario.duration_s is None
        sick = ""
        while time.monotonic() < deadline:
            if not ended and scenario.duration_s is not None and time.monotonic() - fault_at >= scenario.duration_s:
                undo()
                ended = True
                progress(f"{scenario.name}: fault ended after {scenario.duration_s:.0f} s")
            left = fault_at + scenario.duration_s - time.monotonic() if not ended and scenario.duration_s else None
            bound = PROBE_BOUND_S if left is None else min(PROBE_BOUND_S, max(PROBE_LEAST_S, left))
            healthy, _, rows = _healthy(shot.spec, shot.secrets, shot.access, bound)
            now = time.monotonic()
            if not healthy and heal.seen_at is None:
                heal.seen_at = now
                progress(f"status sees the fault {now - fault_at:.1f} s after it")
            # Each change in what is sick, so a run that does not heal shows what stayed sick, and since when.
            if (now_sick := _sickness(rows)) != sick and not healthy:
                progress(f"+{now - fault_at:.0f} s unhealthy: {now_sick}")
            sick = now_sick
            # Healthy counts once status has seen the fault: a probe right after it
            # reports the state from before (corosync takes its token timeout to notice).
            if healthy and ended and (heal.seen_at is not None or now - fault_at > UNSEEN_S):
                heal.healed_at = now
                progress(f"every cluster healthy {now - fault_at:.1f} s after the fault")
                break
        else:
            progress(f"not healed within {scenario.heal_bound_s:.0f} s; still unhealthy: {sick or 'nothing'}")
    finally:
        undo()
    return heal


@dataclass
class _Workload:
    """The workload process on the client host; its stderr (client libraries log every failed
    connection) goes to a file: an unread pipe would fill and stall it."""

    proc: subprocess.Popen[str]
    errlog: IO[str]
    streams: tuple[str, ...] = ()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        return _readline(self.proc.stdout, timeout)

    def history(self, fault_at: float | None = None) -> History:
        """Stop it (once every stream has succeeded since `fault_at`, bounded); what it read back."""
        self.send("stop" if fault_at is None else f"stop {fault_at!r}")
        line = self.read(SETTLE_S + 3 * READBACK_S + 30)
        if not line.startswith("{"):
            self.errlog.seek(0)
            raise ChaosError(f"the workload reported no history: {self.errlog.read()[-2000:] or 'no answer'}")
        return History.model_validate_json(line)


def workload_argv(cluster: str, netns: str) -> list[str]:
    """The workload process, run inside the client host's network namespace (and CPU group)."""
    argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "hastack.workload.chaos_load"]
    return groups.wrap(groups.prepare_client(), argv) if (groups := CpuGroups.of(cluster)) is not None else argv


@contextlib.contextmanager
def _workload(argv: list[str], payload: str, ready_s: float = READY_S) -> Iterator[_Workload]:
    """The workload started with its target on stdin (secrets never on a command line); a run cut
    short still lets it clean up its rows and queue, bounded."""
    with tempfile.TemporaryFile(mode="w+") as errlog:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, text=True)
        w = _Workload(proc, errlog)
        try:
            w.send(payload)
            line = w.read(ready_s)
            ready = json.loads(line) if line.startswith("{") else {}
            if not ready.get("ready"):
                failing = "; ".join(f"{k}: {v}" for k, v in (ready.get("failing") or {}).items())
                why = f"streams that never succeeded: {failing}" if failing else line.strip() or "no answer"
                raise ChaosError(f"the workload did not get going within {ready_s:.0f} s: {why}")
            w.streams = tuple(ready["streams"])
            yield w
        finally:
            if proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    w.send("stop")
                try:
                    proc.wait(READBACK_S + 30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def run(scenario: Scenario, spec: Spec, secrets: Secrets, access: Access, progress: Progress, *,
        keep_history: Path | None = None) -> RunReport:
    """The scenario on a healthy lab under the recorded workload, judged from the record."""
    ok, facts, _ = _healthy(spec, secrets, access)
    if not ok:
        raise ChaosError("not every cluster is healthy: a fault on a sick cluster proves nothing "
                         "(`hastack status` says what is wrong)")
    host = pick_target(scenario, spec, facts)
    lay = layout(spec)
    run_id = pysecrets.token_hex(6)
    base = target(spec, secrets, MONGO_ADMIN)
    servers = {"compute_url": public_url(spec, "nova"), "image_url": public_url(spec, "glance")} \
        if base.os_server else {}
    pinned: dict[str, object] = {"server_stream": scenario.server_stream}
    if scenario.instances:
        if not servers:
            raise ChaosError(f"{scenario.name} pins servers on {host}: this spec runs no nova, glance and neutron")
        pinned |= {"instance_host": host, "instance_count": scenario.instances}
    payload = ChaosTarget(**base.model_dump(), run=run_id, api_reads=api_reads(spec), **servers, **pinned,
                          client_address=str(lay.client_address), link_delay_s=scenario.delay_ms / 1000,
                          max_seconds=scenario.heal_bound_s + 120).model_dump_json()
    fenced_before = dict(load_state(LabDirs.of(spec.cluster)).fenced)
    ready_s = READY_S + (instances.BOOT_S if scenario.instances else 0.0)
    with _workload(workload_argv(spec.cluster, lay.client_netns), payload, ready_s) as w:
        progress(f"workload running from {lay.client_netns} (run {run_id}): {', '.join(w.streams)}")
        fault_at = time.monotonic()
        progress(f"{scenario.name}: {host}")
        heal = _fault_and_heal(Shot(scenario, spec, host, secrets, access, progress), fault_at)
        progress("stopping the workload once every stream has succeeded since the fault; then it reads back "
                 "everything it wrote")
        read_from = time.monotonic()
        history = w.history(fault_at)
        if history.unanswered:
            progress(f"no success since the fault, {SETTLE_S:.0f} s after the heal: {', '.join(history.unanswered)}")
        progress(f"stopped and read back in {time.monotonic() - read_from:.1f} s: " + _readbacks(history))
    if keep_history is not None:  # the evidence behind every number of the report, fault time included
        keep_history.write_text(json.dumps({"scenario": scenario.name, "target": host, "fault_at": fault_at,
                                            "healed_at": heal.healed_at, "history": history.model_dump(mode="json")}))
    # Hosts the lab's power switch cut since the run began (fence or power action).
    after = load_state(LabDirs.of(spec.cluster))
    fenced = tuple(sorted(h for h, t in after.fenced.items() if fenced_before.get(h) != t))
    judgement = judge(history, fault_at, heal.healed_at, scenario.heal_bound_s, quiet=scenario.quiet, fenced=fenced)
    if (spared := frozenset(n.name for n in spec.remote_nodes()) - {host}) and not scenario.quiet:
        judgement = dataclasses.replace(judgement, invariants=(*judgement.invariants, spared_fences(fenced, spared)))
    inst = None
    if scenario.instances:
        # The switch's cuts of the target, from the wall clock to the run's monotonic one.
        to_mono = time.monotonic() - time.time()
        cuts = tuple(t + to_mono for t in after.fences.get(host, ()))
        inst = judge_instances(history, fault_at, cuts, move=scenario.moves, bound_s=scenario.evacuate_bound_s)
        judgement = dataclasses.replace(judgement, invariants=judgement.invariants + inst.invariants)
    report = RunReport(scenario.name, host, fault_at, None if heal.seen_at is None else heal.seen_at - fault_at,
                       None if heal.healed_at is None else heal.healed_at - fault_at, judgement, len(history.ops),
                       heal.recovery, evacuated_s=inst.evacuated_s if inst else None,
                       fenced_s=inst.fenced_s if inst else None, evacuation_asked_s=inst.asked_s if inst else None)
    if (line := report.evacuation()) is not None:
        progress(line)
    return report
