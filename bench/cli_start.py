"""The command as a user runs it: process start-up, import, work and writing, timed from outside.

bench/render_check.py times the library inside one process; an operator waits
for the whole command. Targets on this 2-core machine: `hastack render` of
3 controllers + 1,000 computes, writing every file, in 1 s; `hastack check`
in 0.5 s. Medians of several runs.

The render is timed twice: into a folder on the machine's own disk, and into
one on tmpfs (/dev/shm). The difference is the file system: on this
machine's ext4 a mkdir costs ~0.4 ms of kernel time, and 1,003 host trees
need ~7,000 folders; on tmpfs the same command shows what hastack itself costs.

    .venv/bin/python bench/cli_start.py [--computes 1000] [--runs 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other bench scripts
from render_check import EXAMPLE, big_spec_text

HASTACK = str(Path(sys.executable).parent / "hastack")


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    if res.returncode not in (0, 1):  # 1: findings, a result like any other
        raise SystemExit(f"`{' '.join(argv)}` exited {res.returncode}:\n{res.stderr[-2000:]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--computes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hastack-bench-"))
    shm = Path(tempfile.mkdtemp(prefix="hastack-bench-", dir="/dev/shm")) if Path("/dev/shm").is_dir() else None
    try:
        big = work / "big.yaml"
        big.write_text(big_spec_text(args.computes))
        small = work / "three.yaml"
        shutil.copy(EXAMPLE, small)
        cases = {
            "hastack --version": ([HASTACK, "--version"], None),
            "hastack check three-controller": ([HASTACK, "check", str(small)], 0.5),
            f"hastack check 3+{args.computes}": ([HASTACK, "check", str(big)], 0.5),
            f"hastack render 3+{args.computes} -o DIR": ([HASTACK, "render", str(big), "-o", str(work / "out")], 1.0),
        }
        if shm is not None:
            cases[f"hastack render 3+{args.computes} -o TMPFS"] = (
                [HASTACK, "render", str(big), "-o", str(shm / "out")], 1.0)
        timed(cases["hastack --version"][0])  # warm the page cache once
        print(f"{'command':<36} {'median s':>9} {'min s':>8} {'max s':>8}  target ({args.runs} runs)")
        for name, (argv, target) in cases.items():
            times = [timed(argv) for _ in range(args.runs)]
            med = statistics.median(times)
            verdict = "" if target is None else f"{target:.1f} s: {'meets' if med <= target else 'MISSES'}"
            print(f"{name:<36} {med:>9.3f} {min(times):>8.3f} {max(times):>8.3f}  {verdict}")
        files = sum(1 for p in (work / "out").rglob("*") if p.is_file())
        print(f"render wrote {files} files")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if shm is not None:
            shutil.rmtree(shm, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
