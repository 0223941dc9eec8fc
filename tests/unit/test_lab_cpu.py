"""The lab's CPU groups: where the cpu controller is, and a host's group as the kernel sees it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from hastack.common.poll import until
from hastack.lab.cpu import CLIENT_SHARES, RT_US, SHARES, CpuGroups, cpu_mount, rt_share

FIXTURES = Path(__file__).parent / "fixtures"
HERE = (FIXTURES / "proc_mounts_cgroup_v1.txt").read_text()  # this machine's cgroup mounts


def test_the_cpu_controller_is_found_and_not_confused_with_cpuset_or_cpuacct() -> None:
    assert cpu_mount(HERE) == Path("/sys/fs/cgroup/cpu")
    without = "\n".join(ln for ln in HERE.splitlines() if not ln.startswith("cgroup /sys/fs/cgroup/cpu "))
    assert cpu_mount(without) is None  # cpuset, cpuacct and cgroup2 are not it
    co_mounted = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0\n"
    assert cpu_mount(co_mounted) == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert CpuGroups.of("x", "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n") is None


def test_groups_are_named_for_the_cluster_and_its_hosts() -> None:
    groups = CpuGroups.of("labtest", HERE)
    assert groups is not None
    assert groups.host("ctl1") == Path("/sys/fs/cgroup/cpu/hastack-lab-labtest/ctl1")
    argv = groups.wrap(groups.host("ctl1"), ["systemd-nspawn", "-D", "/a b"])
    assert argv[-3:] == ["systemd-nspawn", "-D", "/a b"]  # untouched, one word each
    assert argv[3] == "/sys/fs/cgroup/cpu/hastack-lab-labtest/ctl1/cgroup.procs"
    assert groups.client == Path("/sys/fs/cgroup/cpu/hastack-lab-labtest-client")  # beside the lab, not in it


def _real() -> CpuGroups:
    groups = CpuGroups.of(f"unittest{os.getpid()}")
    if groups is None or os.geteuid() != 0 or not os.access(groups.top.parent, os.W_OK):
        pytest.skip("needs root and a writable cgroup v1 cpu controller (the lab falls back without one)")
    return groups


def test_a_wrapped_process_and_its_children_run_in_the_hosts_group_and_it_is_removed_after() -> None:
    groups = _real()
    try:
        groups.prepare(["h1", "h2"])
        assert (groups.top / "cpu.shares").read_text().strip() == str(2 * SHARES)
        assert (groups.host("h1") / "cpu.shares").read_text().strip() == str(SHARES)
        assert (groups.client / "cpu.shares").read_text().strip() == str(CLIENT_SHARES)
        groups.prepare(["h1", "h2"])  # again: nothing changes, nothing fails
        proc = subprocess.Popen(groups.wrap(groups.host("h1"), ["sh", "-c", "sleep 30 & wait"]))
        try:
            assert until(lambda: len(groups.members(groups.host("h1"))) == 2, 5, every=0.02)
            # The wrapper became the command (same PID), and its child is there too.
            assert proc.pid in groups.members(groups.host("h1"))
            assert groups.members(groups.host("h2")) == []
            cgroup = Path(f"/proc/{proc.pid}/cgroup").read_text()
            assert f":cpu:/{groups.top.name}/h1\n" in cgroup
            assert groups.remove(wait=0.2) == [str(groups.host("h1")), str(groups.top)]  # busy: kept, said
        finally:
            subprocess.run(["pkill", "-P", str(proc.pid)], check=False)
            proc.kill()
            proc.wait()
        started = time.monotonic()
        assert groups.remove() == []
        assert time.monotonic() - started < 5 and not groups.top.exists()
        assert groups.remove() == []  # nothing there: nothing to do
    finally:
        groups.remove(wait=5)


def test_a_failed_placement_stops_the_command_instead_of_running_it_outside() -> None:
    groups = _real()
    # No group made: the shell cannot write its PID, so the command never runs.
    res = subprocess.run(groups.wrap(groups.host("nohost"), ["sh", "-c", "echo ran"]), capture_output=True, text=True,
                         check=False)
    assert res.returncode != 0 and "ran" not in res.stdout


def test_each_host_gets_its_real_time_budget_or_a_fair_part_of_what_is_left() -> None:
    assert rt_share(950_000, 0, 2) == RT_US == 200_000
    assert rt_share(950_000, 0, 5) == 190_000  # the kernel's 950 ms shared by five hosts
    assert rt_share(950_000, 900_000, 5) == 10_000  # another lab took most of it
    assert rt_share(950_000, 990_000, 3) == 0 and rt_share(0, 0, 0) == 0


def test_a_host_s_processes_may_run_real_time_as_corosync_does() -> None:
    """Without a budget of its own a group gets no real-time time at all, and corosync's SCHED_RR was
    refused inside a lab host ("Operation not permitted")."""
    groups = _real()
    if not (groups.top.parent / "cpu.rt_runtime_us").exists():
        pytest.skip("this kernel schedules real-time tasks machine-wide, not per group: nothing to budget")
    try:
        groups.prepare(["h1", "h2"])
        share = int((groups.host("h2") / "cpu.rt_runtime_us").read_text())
        assert 0 < share <= RT_US and int((groups.top / "cpu.rt_runtime_us").read_text()) == 2 * share
        groups.prepare(["h1", "h2"])  # again, with the children's budgets taken: nothing fails
        groups.prepare(["h1", "h2", "h3", "h4", "h5", "h6"])  # more hosts: each less, none refused
        sixth = int((groups.host("h6") / "cpu.rt_runtime_us").read_text())
        assert 0 < sixth <= share and int((groups.top / "cpu.rt_runtime_us").read_text()) == 6 * sixth
        res = subprocess.run(groups.wrap(groups.host("h2"), ["chrt", "-r", "50", "chrt", "-p", "0"]),
                             capture_output=True, text=True, check=False)
        assert res.returncode == 0 and "SCHED_RR" in res.stdout, res.stderr
    finally:
        groups.remove(wait=5)
