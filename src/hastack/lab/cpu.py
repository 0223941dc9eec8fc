"""Each lab host in a CPU group of its own: the machine's cores shared per host, as separate servers
have theirs.

Without it the kernel shares the cores per session (autogroup), and every systemd service in a host
is a session of its own: a fenced controller booting again starts ~15 Python services, each weighing
as much as a whole surviving controller, and the survivors' APIs answered in seconds while it booted
(bench/README.md, issue 12). With a group per host, a booting host takes its own share, not the
survivors'. The lab's group weighs as much as its hosts together against everything else on the
machine (the client's workload, the test runner), so the lab is not squeezed into one share either.

This uses cgroup v1's cpu controller (this machine's layout). systemd-nspawn mounts it read-only
inside the hosts, so nothing in a host moves its processes out of the host's group. Where no v1 cpu
controller is mounted, the lab runs as before and `lab up` says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hastack.common.poll import until

# The kernel's weight of one nice-0 task (or one session under autogroup).
SHARES = 1024
# The client host (the chaos workload, the smoke test) stands for the users' machines: it must not
# wait for the lab's cores, or its own stalls are counted as the cluster's. Sharing one session with
# the chaos run's status polls, the workload stalled for 1-1.7 s at a time with no fault at all,
# every stream at once (a VIP connect with a 0.2 s timeout "took" 1.1 s). It uses a fraction of a
# core; four shares give it that whatever else runs (two still left writes of 0.9-1 s).
CLIENT_SHARES = 4 * SHARES
# Real-time budget per host, in microseconds of each cpu.rt_period_us (1 s). With RT group scheduling
# a new group has none, and corosync's SCHED_RR was refused inside a host ("Operation not permitted").
# Measured in the fast-profile lab (knet, two links, three members): corosync alone used 57 ms of every
# second, keepalived's VRRP 3-4 ms. A budget of 50 ms throttled both every second: keepalived missed
# its adverts for up to 9.5 s on every controller at once (a backup took the VIP from a live holder:
# two holders) and corosync went unscheduled for 1.4 s. 200 ms leaves room for bursts; a lab takes
# less where the machine has not that much left (the kernel's limit is 950 ms a second in all).
RT_US = 200_000
RT_WAIT_S = 5.0
MOUNTS = Path("/proc/mounts")


def cpu_mount(mounts: str) -> Path | None:
    """Where the cgroup v1 hierarchy holding the cpu controller is mounted, from /proc/mounts' text."""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup" and "cpu" in fields[3].split(","):
            return Path(fields[1])
    return None


def rt_share(parent_us: int, taken_us: int, hosts: int) -> int:
    """Each host's real-time budget: RT_US, or an equal part of what the parent has not given away."""
    return max(0, min(RT_US, (parent_us - taken_us) // max(hosts, 1)))


def _read_us(knob: Path) -> int:
    try:
        return int(knob.read_text())
    except (OSError, ValueError):
        return 0


def _rt(group: Path, us: int) -> None:
    """The group's real-time budget, where the kernel schedules real-time tasks per group."""
    knob = group / "cpu.rt_runtime_us"
    if not knob.exists() or knob.read_text().strip() == str(us):
        return
    failed: list[OSError] = []

    def written() -> bool:
        try:
            knob.write_text(f"{us}\n")
            return True
        except OSError as e:  # EINVAL: over what the machine has left
            failed.append(e)
            return False

    # A group just removed (the last lab's) keeps its budget until the kernel frees it, a moment later.
    if not until(written, RT_WAIT_S, every=0.1):
        raise OSError(f"{knob}: the kernel refused a real-time budget of {us} us for {RT_WAIT_S:.0f} s "
                      f"({failed[-1].strerror}); other groups hold the machine's 950 ms a second")


@dataclass(frozen=True)
class CpuGroups:
    """The lab's CPU groups: one for the cluster, one per host inside it."""

    top: Path

    @classmethod
    def of(cls, cluster: str, mounts: str | None = None) -> CpuGroups | None:
        """The groups of this cluster's lab, or None where the machine has no v1 cpu controller."""
        if mounts is None:
            try:
                mounts = MOUNTS.read_text()
            except OSError:
                return None
        mount = cpu_mount(mounts)
        return cls(mount / f"hastack-lab-{cluster}") if mount is not None else None

    def host(self, name: str) -> Path:
        return self.top / name

    @property
    def client(self) -> Path:
        """The client host's group: beside the lab's, not inside it (its weight is its own)."""
        return self.top.with_name(f"{self.top.name}-client")

    def prepare(self, hosts: Sequence[str]) -> None:
        """Create the groups (again: a no-op) and weigh them: each host one share, the lab one per host."""
        self.top.mkdir(exist_ok=True)
        (self.top / "cpu.shares").write_text(f"{SHARES * max(len(hosts), 1)}\n")
        for name in hosts:
            self.host(name).mkdir(exist_ok=True)
            (self.host(name) / "cpu.shares").write_text(f"{SHARES}\n")
        share = self.rt_share(len(hosts))
        total = share * max(len(hosts), 1)
        # The children's budgets come out of the parent's: a parent grows first, shrinks last.
        if total >= _read_us(self.top / "cpu.rt_runtime_us"):
            _rt(self.top, total)
        for name in hosts:
            _rt(self.host(name), share)
        _rt(self.top, total)
        self.prepare_client()

    def rt_share(self, hosts: int) -> int:
        """Each host's real-time budget in this lab, from what the machine's other groups left."""
        parent = self.top.parent
        taken = sum(_read_us(g / "cpu.rt_runtime_us") for g in parent.iterdir() if g.is_dir() and g != self.top)
        return rt_share(_read_us(parent / "cpu.rt_runtime_us"), taken, hosts)

    def prepare_client(self) -> Path:
        """The client host's group, made (again: a no-op) and weighed; its path."""
        self.client.mkdir(exist_ok=True)
        (self.client / "cpu.shares").write_text(f"{CLIENT_SHARES}\n")
        return self.client

    def wrap(self, group: Path, argv: Sequence[str]) -> list[str]:
        """argv started inside `group`: the shell puts itself there, then becomes argv (same PID), so
        every process it ever forks is born in the group."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs"), *argv]

    def members(self, group: Path) -> list[int]:
        try:
            return [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self, wait: float = 10) -> list[str]:
        """Remove the groups once their processes are gone (waiting up to `wait` s for the last of a
        host that was just killed); the paths that could not be removed."""
        groups = [*sorted(p for p in self.top.iterdir() if p.is_dir()), self.top] if self.top.is_dir() else []
        groups += [self.client] if self.client.is_dir() else []
        until(lambda: not any(self.members(g) for g in groups), wait, every=0.1)
        left = []
        for d in groups:
            with contextlib.suppress(FileNotFoundError):
                try:
                    d.rmdir()  # cgroupfs: a group is removed by rmdir, its files with it
                except OSError:
                    left.append(str(d))
        return left
