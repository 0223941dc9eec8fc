"""haproxy backend states from the stats socket's `show stat` CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

SOCKET = "/run/haproxy/admin.sock"
STAT_CMD = f"echo 'show stat' | socat -t 2 stdio UNIX-CONNECT:{SOCKET}"


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
