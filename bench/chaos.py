"""RTO and RPO per chaos scenario, timing profile and VIP manager: medians of several runs on the lab.

For each variant (a timing profile, optionally with a VIP manager:
`fast/keepalived-quorum`) the example spec is brought up (as its own lab, cluster
`benchchaos`, networks 10.83.x, so a developer's lab is left alone), each
scenario runs `--runs` times with `hastack chaos SCENARIO --json`, and the
lab goes down. The table gives, per scenario and variant, the median gap
each workload stream saw, the median time until every cluster was healthy
again, and the total lost (acknowledged writes and confirmed messages
missing at the end) over all runs.

    .venv/bin/python bench/chaos.py [--spec examples/three-controller.yaml] [--runs 3]
                                    [--variant default --variant fast/keepalived-quorum ...]
                                    [--scenario host-crash ...] [--history DIR]

With --history, each run's whole record (every op, VIP sample and galera view) is kept as
DIR/SCENARIO-VARIANT-N.json (`hastack chaos --history`), to read where a gap went.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from hastack.chaos.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent
HASTACK = str(Path(sys.executable).parent / "hastack")
STREAMS = ("vip", "db", "amqp", "mongo", "mongo-primary", "api-token", "api-keystone", "api-glance", "api-placement",
           "api-neutron", "api-nova", "api-cinder", "api-heat", "api-horizon", "api-servers")
SHORT = {"mongo-primary": "m.pri", "api-token": "token", "api-keystone": "keyst", "api-glance": "glance",
         "api-placement": "place", "api-neutron": "neutr", "api-nova": "nova", "api-cinder": "cinder",
         "api-heat": "heat", "api-horizon": "horiz", "api-servers": "servers"}


def hastack(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HASTACK, *args], capture_output=True, text=True, timeout=timeout, check=False)


def bench_spec(example: Path, variant: str, into: Path, instance_ha: bool = False) -> Path:
    profile, _, manager = variant.partition("/")
    data = yaml.safe_load(example.read_text().replace("10.77.", "10.83."))
    data["cluster"] = "benchchaos"
    data["timing"] = {"profile": profile}
    if instance_ha:  # the compute scenarios' subject; the examples leave it off
        data["instance_ha"] = {"enabled": True}
    if manager:
        data["vip_manager"] = manager
    spec = into / f"{variant.replace('/', '-')}.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    return spec


def wait_healthy(spec: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hastack("status", str(spec), "--lab").returncode == 0:
            return True
    return False


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f}" if xs else "-"


def run_once(spec: Path, scenario: str, profile: str, n: int, history: Path | None) -> dict[str, Any] | None:
    """One `hastack chaos --json` run, its line printed; None when it gave no report."""
    keep: tuple[str, ...] = ()
    if history:
        history.mkdir(parents=True, exist_ok=True)
        keep = ("--history", str(history / f"{scenario}-{profile.replace('/', '-')}-{n}.json"))
    res = hastack("chaos", scenario, str(spec), "--json", *keep, timeout=SCENARIOS[scenario].heal_bound_s + 600)
    try:
        report: dict[str, Any] = json.loads(res.stdout)
    except json.JSONDecodeError:
        print(f"{profile} {scenario} run {n}: no report (exit {res.returncode}):\n{res.stderr[-2000:]}",
              file=sys.stderr)
        return None
    seen = {s["stream"]: s["rto_s"] for s in report["judgement"]["streams"]}
    evac = ""
    if report.get("evacuated_s") is not None:
        evac = (f" evacuated {report['evacuated_s']:.1f} s (fenced {report.get('fenced_s')} s, "
                f"first asked {report.get('evacuation_asked_s')} s)")
    print(f"{profile:<22} {scenario:<14} run {n}: ok={report['ok']} healed {report['healed_s']} s{evac} gaps {seen}",
          flush=True)
    for inv in report["judgement"]["invariants"]:
        if not inv["ok"]:
            print(f"    broken: {inv['name']}: {inv['detail']}", flush=True)
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=ROOT / "examples" / "three-controller.yaml")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--variant", action="append",
                    help="PROFILE or PROFILE/VIP_MANAGER; default, fast and fast/keepalived-quorum unless given")
    ap.add_argument("--scenario", action="append", help="every scenario unless given")
    ap.add_argument("--history", type=Path, help="keep each run's record in this directory")
    args = ap.parse_args()
    variants = args.variant or ["default", "fast", "fast/keepalived-quorum"]
    scenarios = args.scenario or list(SCENARIOS)
    iha = any(SCENARIOS[s].instances for s in scenarios)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="hastack-bench-chaos-") as tmp:
        for profile in variants:
            spec = bench_spec(args.spec, profile, Path(tmp), iha)
            up = hastack("lab", "up", str(spec))
            try:
                if up.returncode != 0:
                    print(f"lab up ({profile}) failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}", file=sys.stderr)
                    return 1
                for scenario in scenarios:
                    for i in range(args.runs):
                        if (report := run_once(spec, scenario, profile, i + 1, args.history)) is not None:
                            results.setdefault((scenario, profile), []).append(report)
                        # The next run needs a healthy cluster; `chaos` refuses otherwise.
                        wait_healthy(spec, 300)
            finally:
                hastack("lab", "down", str(spec))

    print(f"\n{'scenario':<22} {'variant':<22} " + " ".join(f"{SHORT.get(s, s) + ' gap s':>11}" for s in STREAMS)
          + f" {'api p95 s':>9} {'stall s':>7} {'healed s':>9} {'fence s':>7} {'asked s':>7} {'evac s':>7} "
          f"{'lost':>5} {'ok':>5}")
    for (scenario, profile), reports in results.items():
        cells = []
        for stream in STREAMS:
            gaps = [s["rto_s"] for r in reports for s in r["judgement"]["streams"]
                    if s["stream"] == stream and s["rto_s"] is not None]
            cells.append(f"{med(gaps):>11}")
        # The slowest API's 95th-percentile answer after the fault, per run: slow, or down?
        slowest = [max(ps) for r in reports
                   if (ps := [s["p95_s"] for s in r["judgement"]["streams"]
                              if s["stream"].startswith("api-") and s.get("p95_s") is not None])]
        stalls = [r["judgement"]["stall_s"] for r in reports if r["judgement"].get("stall_s") is not None]
        healed = [r["healed_s"] for r in reports if r["healed_s"] is not None]
        steps = [med([r[k] for r in reports if r.get(k) is not None])
                 for k in ("fenced_s", "evacuation_asked_s", "evacuated_s")]
        lost = sum(len(s["lost"]) for r in reports for s in r["judgement"]["streams"])
        oks = sum(r["ok"] for r in reports)
        print(f"{scenario:<22} {profile:<22} " + " ".join(cells)
              + f" {med(slowest):>9} {med(stalls):>7} {med(healed):>9} "
              + " ".join(f"{c:>7}" for c in steps) + f" {lost:>5} "
              f"{oks}/{len(reports):<3}")
    print("\nm.pri: no mongo member answering as writable primary (asked every 0.1 s), the server's side of "
          "the mongo gap; token: keystone password logins (every 2 s); keyst, glance, place, neutr, nova, cinder, "
          "heat, horiz: authenticated reads of each API through the VIP (each every 0.5 s; horiz: its login page); "
          "servers: a server created every 5 s")
    print("fence, asked, evac: the compute scenarios' fault to the power switch's cut of the compute, to nova's "
          "first evacuation record (to the second) and to every pinned server ACTIVE on another compute (instance "
          "HA on in the bench's spec when a compute scenario runs)")
    print("api p95: the slowest API's 95th-percentile answer time after the fault (acknowledged calls; each waits "
          "up to timing.api_timeout_ms)")
    print("stall: the client host's own longest stall after the fault (its heartbeat woke late: the lab's shared "
          "cores), left out of every gap and of api p95")
    print("medians of the runs; 'lost' counts acknowledged commits, confirmed messages, majority writes and "
          "accepted servers not ACTIVE (outside the fault's window) missing at the end, over all runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
