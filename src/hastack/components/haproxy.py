"""haproxy backend states from the stats socket's `show stat` CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from hastack.components.fact import Fact, on_success, shell

SOCKET = "/run/haproxy/admin.sock"


@dataclass(frozen=True)
class ServerState:
    proxy: str
    server: str
    status: str  # UP, DOWN, MAINT, "UP 1/2", no check...
    backup: bool
    check: str  # last check result, e.g. L7OK, L4TOUT


def parse_show_stat(text: str) -> tuple[ServerState, ...]:
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    out = []
    for row in rows:
        name = row.get("svname", "")
        if not name or name in ("FRONTEND", "BACKEND"):
            continue
        out.append(ServerState(row.get("pxname", ""), name, row.get("status", ""), row.get("bck") == "1",
                               row.get("check_status", "")))
    return tuple(out)


STATS = Fact("haproxy stats", shell("echo 'show stat' | socat -t 2 stdio UNIX-CONNECT:{socket}", socket=SOCKET),
             on_success(parse_show_stat))
