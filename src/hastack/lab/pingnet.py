"""A node and its ping targets in two namespaces joined by a veth, with nftables on the targets' side
deciding which echo requests and replies are lost: the management network as pacemaker's ping agent
and the VRRP gate see it, for their tests and for bench/ping_loss.py."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from hastack.lab.netns import Netns, netns

TABLE = "hstping"
# fping's default echo request as nftables counts it: 20 (IP) + 8 (ICMP) + 56 (data) bytes.
REQUEST_BYTES = 84


@dataclass(frozen=True)
class PingNet:
    node: Netns  # holds the node's address; run the pinger here
    far: Netns  # holds the targets' addresses and the rules
    targets: tuple[str, ...]

    def _rules(self, verdict: str, replies: str = "") -> None:
        """`verdict` on each target's echo requests (counted), `replies` on the echo replies they send."""
        body = "".join(f"    ip daddr {t} icmp type echo-request counter {verdict}\n" for t in self.targets)
        out = f"  chain output {{\n    type filter hook output priority 0;\n    icmp type echo-reply {replies}\n  }}\n"
        ruleset = (f"table inet {TABLE}\ndelete table inet {TABLE}\n"
                   f"table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority 0;\n{body}  }}\n"
                   f"{out if replies else ''}}}\n")
        res = subprocess.run(self.far.argv(["nft", "-f", "-"]), input=ruleset, capture_output=True, text=True,
                             timeout=30, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"nft: {res.stderr.strip()}")

    def drop_first(self) -> None:
        """Each target's first echo request is lost, the later ones answered."""
        self._rules(f"quota until {REQUEST_BYTES} bytes drop")

    def drop_all(self) -> None:
        """Every echo request is lost: the network as a node cut off from it sees it."""
        self._rules("drop")

    def lose(self, percent: int) -> None:
        """Each echo request and each reply is lost at random, `percent` in a hundred, each way on its own."""
        drop = f"numgen random mod 100 < {percent} drop"
        self._rules(drop, drop)

    def look(self, argv: Sequence[str]) -> tuple[bool, float]:
        """`argv` (a check that exits 0 when it passes) run on the node: passed or not, and how long it took."""
        started = time.monotonic()
        res = subprocess.run(self.node.argv(argv), capture_output=True, timeout=30, check=False)
        return res.returncode == 0, time.monotonic() - started

    def requests(self) -> dict[str, int]:
        """The echo requests that reached each target since the rules were set."""
        out = subprocess.run(self.far.argv(["nft", "list", "table", "inet", TABLE]), capture_output=True, text=True,
                             timeout=30, check=True).stdout
        return {m[1]: int(m[2]) for m in re.finditer(r"ip daddr (\S+) .*counter packets (\d+)", out)}


@contextmanager
def pingnet(label: str, node_address: str, targets: Sequence[str], prefixlen: int) -> Iterator[PingNet]:
    with ExitStack() as stack:
        node = stack.enter_context(netns(f"{label}n"))
        far = stack.enter_context(netns(f"{label}f"))
        for argv in (["link", "add", "e0", "netns", node.name, "type", "veth", "peer", "name", "e1", "netns", far.name],
                     ["-n", node.name, "addr", "add", f"{node_address}/{prefixlen}", "dev", "e0"],
                     *(["-n", far.name, "addr", "add", f"{t}/{prefixlen}", "dev", "e1"] for t in targets),
                     ["-n", node.name, "link", "set", "e0", "up"], ["-n", far.name, "link", "set", "e1", "up"]):
            subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=30)
        yield PingNet(node, far, tuple(targets))
