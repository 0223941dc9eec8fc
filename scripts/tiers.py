"""Run the test tiers, time each step, and end with what a reader of a CI log needs.

`scripts/test` calls this after `scripts/setup`:
  (no flag)          the fast tier: lint, types, unit and integration tests, and the
                     three-controller lab through the tests marked `fast`;
  --full             every part below, in turn (each part is one pytest run);
  --full --part P    one part, so a part fits beside other work (repeatable).
Extra arguments after `--` go to every pytest run.

At the end: the wall time of each step and tier, the 15 slowest tests of the whole
run (from each pytest run's JUnit XML), and one closing line `N passed, N failed`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "bin"
RESULTS = ROOT / ".test-results"


@dataclass(frozen=True)
class Part:
    name: str
    marks: str  # pytest -m expression
    what: str


# The fast tier is the first part; the others are the rest of the matrix, one lab each.
PARTS = (
    Part("fast", "not lab or (three_controller and fast)",
         "unit, integration, the three-controller lab's fast tests"),
    Part("three-controller", "three_controller and (not fast or every_part)",
         "the three-controller lab's other tests"),
    Part("seed-two-node", "seed_two_node", "the guide's two data nodes + arbitrators"),
    Part("fast-keepalived-quorum", "fast_keepalived_quorum", "keepalived-quorum VIP, fast profile"),
)
BY_NAME = {p.name: p for p in PARTS}


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    durations: list[tuple[float, str]] = field(default_factory=list)
    heals: list[tuple[str, str]] = field(default_factory=list)  # (test, what its chaos run said about healing)

    def add_junit(self, path: Path) -> None:
        if not path.exists():
            return
        for case in ET.parse(path).getroot().iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            self.durations.append((float(case.get("time", "0")), name))
            out = case.find("system-out")
            self.heals += [(name, m.group(0)) for m in HEAL.finditer(out.text or "")] if out is not None else []
            if case.find("failure") is not None:
                self.failed += 1
            elif case.find("error") is not None:
                self.errors += 1
            elif case.find("skipped") is not None:
                self.skipped += 1
            else:
                self.passed += 1


# What a chaos run prints about healing; a passing run close to its bound is worth seeing too.
HEAL = re.compile(r"every cluster healthy [0-9.]+ s after the fault|not healed within [0-9]+ s"
                  r"|every pinned server ACTIVE off \S+ [0-9.]+ s after the fault")


def hms(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s"


def run(step: str, argv: list[str], timings: list[tuple[str, float, int]]) -> int:
    print(f"\n=== {step}: {' '.join(argv)}", flush=True)
    t0 = time.monotonic()
    rc = subprocess.run(argv, cwd=ROOT, check=False).returncode
    timings.append((step, time.monotonic() - t0, rc))
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="every part of the matrix")
    ap.add_argument("--part", action="append", choices=list(BY_NAME), default=[],
                    help="with --full: only this part (repeatable)")
    ap.add_argument("--setup-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("pytest_args", nargs="*", help="after --: passed to every pytest run")
    args = ap.parse_args()
    if args.part and not args.full:
        ap.error("--part goes with --full")
    parts = [BY_NAME[p] for p in args.part] if args.part else list(PARTS if args.full else PARTS[:1])

    RESULTS.mkdir(exist_ok=True)
    timings: list[tuple[str, float, int]] = [("setup", args.setup_seconds, 0)]
    failed = 0
    failed += run("ruff", [str(VENV / "ruff"), "check", "src", "tests", "bench", "scripts"], timings) != 0
    failed += run("mypy", [str(VENV / "mypy")], timings) != 0
    failed += run("import layers", [str(VENV / "lint-imports"), "--no-cache"], timings) != 0
    counts = Counts()
    unfinished: list[str] = []
    for part in parts:
        junit = RESULTS / f"{part.name}.xml"
        junit.unlink(missing_ok=True)
        rc = run(f"part {part.name}", [str(VENV / "python"), "-m", "pytest", "-m", part.marks,
                                       f"--junitxml={junit}", *args.pytest_args], timings)
        if not junit.exists():  # killed, or pytest could not start: no test of it counts as run
            unfinished.append(part.name)
        counts.add_junit(junit)
        # pytest's 5 is "no test collected": a part that ran nothing is a failure here.
        failed += rc != 0

    total = sum(t for _, t, _ in timings)
    print("\n=== wall time")
    for step, seconds, rc in timings:
        print(f"  {step:<30} {hms(seconds):>8}  {'ok' if rc == 0 else f'FAILED (exit {rc})'}")
    print(f"  {'tier ' + ('full' if args.full else 'fast'):<30} {hms(total):>8}  "
          f"({', '.join(p.name for p in parts)})")
    print("\n=== the 15 slowest tests")
    for seconds, name in sorted(counts.durations, reverse=True)[:15]:
        print(f"  {seconds:8.1f} s  {name}")
    if counts.heals:
        print("\n=== chaos runs: time to heal")
        for name, said in counts.heals:
            print(f"  {name.rsplit('[', 1)[-1].rstrip(']'):<40} {said}")
    print()
    if unfinished:
        print(f"parts that did not finish, each counted as one failure: {', '.join(unfinished)}")
    closing = (f"{counts.passed} passed, {counts.failed + counts.errors + len(unfinished)} failed, "
               f"{counts.skipped} skipped")
    print(closing)
    return 1 if failed or counts.failed or counts.errors or counts.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
