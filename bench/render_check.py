"""Time load + check + render of a large spec: 3 controllers and N compute nodes.

Target (issue 2): under 1 second for 1,000 compute nodes on a 2-core machine.
Prints a table of medians over several runs; run it, don't trust one number.

    .venv/bin/python bench/render_check.py [--computes 1000] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hastack.checks import run_checks
from hastack.credentials.model import complete
from hastack.render import render_all
from hastack.spec.load import parse_spec

T = TypeVar("T")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "three-controller.yaml"


def big_spec_text(computes: int) -> str:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data["networks"]["management"] = "10.64.0.0/16"
    controllers = [n for n in data["nodes"] if "controller" in n["roles"]]
    for i, n in enumerate(controllers):
        n["address"] = str(IPv4Address("10.64.0.11") + i)
    data["vips"][0]["address"] = "10.64.0.10"
    fence = controllers[0]["fence"]
    base = IPv4Address("10.64.1.0")
    data["nodes"] = controllers + [
        {"name": f"compute{i}", "roles": ["compute", "storage"], "address": str(base + i), "fence": fence}
        for i in range(1, computes + 1)
    ]
    return yaml.safe_dump(data, sort_keys=False)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--computes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    text = big_spec_text(args.computes)
    rows: dict[str, list[float]] = {"load": [], "check": [], "render": [], "total": []}
    files = 0
    for _ in range(args.runs):
        spec, t_load = timed(partial(parse_spec, text, "bench.yaml"))
        findings, t_check = timed(partial(run_checks, spec))
        secrets = complete(spec, {})[0]
        tree, t_render = timed(partial(render_all, spec, secrets))
        files = sum(len(f) for f in tree.values())
        for key, value in (("load", t_load), ("check", t_check), ("render", t_render),
                           ("total", t_load + t_check + t_render)):
            rows[key].append(value)
    print(f"spec: 3 controllers + {args.computes} computes, {len(text.splitlines())} YAML lines, "
          f"{files} files rendered, {len(findings)} findings; {args.runs} runs")
    print(f"{'phase':<8} {'median s':>9} {'min s':>8} {'max s':>8}")
    for key, values in rows.items():
        print(f"{key:<8} {statistics.median(values):>9.3f} {min(values):>8.3f} {max(values):>8.3f}")
    target = 1.0
    verdict = "meets" if statistics.median(rows["total"]) < target else "MISSES"
    print(f"target: total under {target:.1f} s -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
