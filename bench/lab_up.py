"""Wall time of `hastack lab up` (cold: no image; warm: image cached) and the memory of the running lab.

Targets (issue 3) on this 2-core machine: under 8 minutes cold, under 3 minutes
warm. Each run is a full `lab up` (boot, deploy, smoke test, status) followed
by `lab down`; a cold run builds the image into a scratch cache of its own
(HASTACK_CACHE), so the machine's cached image is left alone. Memory is
measured with the lab up and healthy: the proportional set size (PSS) of
every process in the hosts' PID namespaces, and the drop of the machine's
MemAvailable.

    .venv/bin/python bench/lab_up.py [--spec examples/three-controller.yaml ...] [--warm 3] [--cold 1]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hastack.lab.runtime import LabDirs, load_state
from hastack.spec.catalog import daemons_for
from hastack.spec.load import load_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [ROOT / "examples" / "three-controller.yaml", ROOT / "examples" / "seed-two-node.yaml"]
HASTACK = str(Path(sys.executable).parent / "hastack")


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def unit_of(proc: Path) -> str:
    """The systemd unit a process runs under (its cgroup's last part), or '' outside any service."""
    try:
        path = (proc / "cgroup").read_text().strip().splitlines()[-1].rsplit(":", 1)[-1]
    except (OSError, IndexError):
        return ""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".service") if name.endswith(".service") else ""


def lab_pss_kib(spec: Path, env: dict[str, str], by_unit: dict[str, dict[str, int]] | None = None
                ) -> dict[str, int]:
    """PSS per host: every process sharing the PID namespace of the host's init (and, into `by_unit`,
    per host and systemd unit)."""
    cache = Path(env.get("HASTACK_CACHE", "/var/lib/hastack"))
    state = load_state(LabDirs.of(load_spec(spec).cluster, cache))
    namespaces: dict[str, str] = {}
    for host, pid in state.hosts.items():
        children = [p for p in Path("/proc").glob("[0-9]*") if _ppid(p) == pid]
        ns = pid_ns(int(children[0].name)) if children else None
        if ns:
            namespaces[ns] = host
    out = dict.fromkeys(state.hosts, 0)
    for proc in Path("/proc").glob("[0-9]*"):
        owner = namespaces.get(pid_ns(int(proc.name)) or "")
        if owner is None:
            continue
        try:
            for line in (proc / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    out[owner] += int(line.split()[1])
                    if by_unit is not None:
                        units = by_unit.setdefault(owner, {})
                        unit = unit_of(proc)
                        units[unit] = units.get(unit, 0) + int(line.split()[1])
                    break
        except OSError:
            continue
    return out


def _ppid(proc: Path) -> int:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def stages_of(stdout: str) -> dict[str, float]:
    """The seconds per stage and deploy phase from `lab up`'s closing line
    ("lab up: 453 s: hosts 60 s, deploy 330 s, ...; deploy phases: files 12 s, ...")."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith("lab up: ")), "")
    found = re.findall(r"(\w+) (\d+) s", line.split(": ", 2)[-1])
    return {k: float(v) for k, v in found}


def lab_up(spec: Path, env: dict[str, str], stages: dict[str, list[float]]) -> float:
    t0 = time.monotonic()
    res = subprocess.run([HASTACK, "lab", "up", str(spec)], env=env, capture_output=True, text=True, timeout=1800,
                         check=False)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise RuntimeError(f"lab up {spec.name} failed (exit {res.returncode}):\n{res.stderr[-3000:]}\n"
                           f"{res.stdout[-3000:]}")
    for k, v in stages_of(res.stdout).items():
        stages.setdefault(k, []).append(v)
    return took


def lab_down(spec: Path, env: dict[str, str]) -> None:
    subprocess.run([HASTACK, "lab", "down", str(spec)], env=env, capture_output=True, text=True, timeout=600,
                   check=True)


def print_openstack_pss(spec: Path, units: dict[str, dict[str, int]]) -> None:
    services = load_spec(spec).openstack.services
    openstack = {d.unit for d in (*daemons_for(services), *daemons_for(services, computes=True))}
    for host, per in sorted(units.items()):
        ours = {u: k for u, k in per.items() if u in openstack}
        if ours:
            print(f"  {spec.name} {host} OpenStack PSS {sum(ours.values()) / 1024:.0f} MiB: "
                  + ", ".join(f"{u} {k / 1024:.0f} MiB" for u, k in sorted(ours.items())), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, action="append", help="spec(s) to bring up (default: both examples)")
    ap.add_argument("--warm", type=int, default=3, help="warm runs per spec")
    ap.add_argument("--cold", type=int, default=1, help="cold runs per spec (each builds the image, ~1-2 min)")
    args = ap.parse_args()
    specs = args.spec or EXAMPLES
    for spec in specs:
        if LabDirs.of(load_spec(spec).cluster).state.exists():
            print(f"a lab for {spec.name} is up: `hastack lab down {spec}` first (the bench brings it up itself)",
                  file=sys.stderr)
            return 2
    rows = []
    for spec in specs:
        base = dict(os.environ)
        cold: list[float] = []
        stages: dict[str, list[float]] = {}  # warm runs only: a cold run's image build is its own stage
        for _ in range(args.cold):
            scratch = tempfile.mkdtemp(prefix="hastack-bench-cache-", dir="/var/tmp")
            env = {**base, "HASTACK_CACHE": scratch}
            try:
                cold.append(lab_up(spec, env, {}))
                print(f"{spec.name}: cold lab up {cold[-1]:.0f} s", flush=True)
            finally:
                lab_down(spec, env)
                shutil.rmtree(scratch, ignore_errors=True)
        warm: list[float] = []
        pss: dict[str, int] = {}
        units: dict[str, dict[str, int]] = {}
        drop = 0
        for i in range(args.warm):
            if i == 0:  # the image must be there for a warm run; build it untimed
                subprocess.run([HASTACK, "lab", "up", str(spec), "--hosts-only"], env=base, check=True,
                               capture_output=True, timeout=1800)
                lab_down(spec, base)
            before = mem_available_kib()
            try:
                warm.append(lab_up(spec, base, stages))
                print(f"{spec.name}: warm lab up {warm[-1]:.0f} s", flush=True)
                if i == 0:
                    pss = lab_pss_kib(spec, base, units)
                    drop = before - mem_available_kib()
            finally:
                lab_down(spec, base)
        rows.append((spec.name, cold, warm, pss, drop))
        print_openstack_pss(spec, units)
        if stages:  # where a warm lab up spends its time
            print(f"  {spec.name} warm, median seconds per stage: "
                  + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in stages.items()), flush=True)

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):6.1f} s" if xs else "     -  "

    print(f"\n{'spec':<24} {'cold median':>12} {'warm median':>12}  {'runs (cold | warm)':<40} {'lab PSS':>9} "
          f"{'MemAvail drop':>13}")
    for name, cold, warm, pss, drop in rows:
        runs = " ".join(f"{x:.0f}" for x in cold) + " | " + " ".join(f"{x:.0f}" for x in warm)
        print(f"{name:<24} {med(cold):>12} {med(warm):>12}  {runs:<40} {sum(pss.values()) / 1024:7.0f} MiB "
              f"{drop / 1024:10.0f} MiB")
    for name, _, _, pss, _ in rows:
        print(f"  {name}: " + ", ".join(f"{h} {kib / 1024:.0f} MiB" for h, kib in pss.items()))
    print("\ntargets: cold < 480 s, warm < 180 s (issue 3); with OpenStack: warm <= 5 min, cold <= 10 min, "
          "OpenStack <= 1.5 GiB PSS per controller (issue 12)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
