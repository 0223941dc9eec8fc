"""How often a lossy management network is taken for a lost one: the VRRP gate's fping look, one try
of 1 s (the settings before) against two tries of 0.5 s (hastack's), and how long each takes to find a
network that is gone.

Real fping from a namespace holding a node's address to four targets in another; nftables drops each
echo request and each reply at random (`--loss` percent each way). A look "fails" when no target
answered any of its tries: what makes pacemaker move the VIP off a holder, or the gate give it up.
Expected rate per look, with p the loss each way: one try (1 - (1-p)^2)^T, two tries that squared, T
targets.

    .venv/bin/python bench/ping_loss.py [--loss 30] [--looks 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

from hastack.agent.vrrp_gate import FPING, PING_TRIES, PING_TRY_MS, fping
from hastack.lab.pingnet import pingnet

NODE = "10.97.0.1"
TARGETS = ("10.97.0.2", "10.97.0.3", "10.97.0.4", "10.97.0.5")
# Looks at once: a lossy look takes its whole timeout, and fping's processes (each its own ICMP id)
# do not see each other's replies.
AT_ONCE = 25
SETTINGS = {
    "1 try of 1 s (before)": lambda targets: (FPING, "-q", "-x", "1", "-r", "0", "-t", "1000", *targets),
    f"{PING_TRIES} tries of {PING_TRY_MS / 1000:g} s (now)": fping,
}


def _expected(loss: float, tries: int) -> float:
    lost_try = 1 - (1 - loss) ** 2  # the request or its reply
    return float(lost_try ** (tries * len(TARGETS)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss", type=int, default=30, help="percent of echo requests and of replies lost (30)")
    ap.add_argument("--looks", type=int, default=2000, help="looks per setting and run (2000)")
    ap.add_argument("--runs", type=int, default=3, help="runs; medians are printed (3)")
    args = ap.parse_args()
    if not 0 < args.loss < 100 or args.looks < 1 or args.runs < 1:
        ap.error("--loss must be 1-99, --looks and --runs at least 1")
    rows = []
    with pingnet("bench", NODE, TARGETS, 24) as net:
        for name, argv_of in SETTINGS.items():
            argv = argv_of(TARGETS)
            tries = int(argv[argv.index("-r") + 1]) + 1
            failed, gone = [], []
            for run in range(args.runs):
                net.lose(args.loss)
                with ThreadPoolExecutor(AT_ONCE) as pool:
                    failed.append(sum(not ok for ok, _ in pool.map(net.look, [argv] * args.looks)))
                net.drop_all()
                passed, took = net.look(argv)
                if passed:
                    print(f"{name}: a look passed with every request dropped", file=sys.stderr)
                    return 1
                gone.append(took)
                print(f"  {name}, run {run + 1}: {failed[-1]}/{args.looks} looks failed, gone found in {took:.2f} s",
                      file=sys.stderr)
            rows.append((name, statistics.median(failed) / args.looks, _expected(args.loss / 100, tries),
                         statistics.median(gone)))
    print(f"loss {args.loss}% each way, {len(TARGETS)} targets, {args.looks} looks x {args.runs} runs (medians)")
    print(f"{'setting':<26} {'looks failed':>12} {'expected':>10} {'gone found s':>13}")
    for name, rate, expected, gone_s in rows:
        print(f"{name:<26} {rate:>12.3%} {expected:>10.3%} {gone_s:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
