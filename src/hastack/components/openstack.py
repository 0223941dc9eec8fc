"""Facts about the OpenStack services hastack runs: does an API answer, is a schema current."""

from __future__ import annotations

import json
from dataclasses import dataclass

from hastack.components.fact import Fact, FactFailed

# The host's own python3 asks (no curl in a minimal host): prints the HTTP status, 0 when nothing answered.
_STATUS = """\
import ssl, sys, urllib.error, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[3]) if len(sys.argv) > 3 else None
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]), context=ctx).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except Exception:
    print(0)
"""


def parse_status(rc: int, stdout: str) -> int:
    if rc != 0 or not stdout.strip().isdigit():
        raise FactFailed(rc)
    return int(stdout.strip())


def http_status(url: str, timeout: float = 3.0, cafile: str | None = None) -> Fact[int]:
    """The HTTP status `url` answers with, asked from the host (0: no answer); an HTTPS server's
    certificate is checked against `cafile` (a path on the host)."""
    return Fact(f"GET {url}", ("python3", "-c", _STATUS, url, str(timeout), *((cafile,) if cafile else ())),
                parse_status, timeout=timeout + 10)


# placement-manage has no check: its schema is current when its alembic version is the installed head.
_PLACEMENT_HEAD = ("import os, placement.db.sqlalchemy as d; from alembic.script import ScriptDirectory; "
                   "print(ScriptDirectory(os.path.join(os.path.dirname(d.__file__), 'alembic')).get_current_head())")
_PLACEMENT_CHECK = ('test "$(placement-manage db version 2>/dev/null | tail -n 1)" = '
                    f'"$(python3 -c "{_PLACEMENT_HEAD}")"')

# nova has two schemas (its API database, and cell0 with cell1) and the cell mappings tying them.
_NOVA_HEAD = ("import os, nova.db.{0} as d; from alembic.script import ScriptDirectory; "
              "print(ScriptDirectory(os.path.join(os.path.dirname(d.__file__), 'migrations')).get_current_head())")
_NOVA_CHECK = " && ".join((
    *(f'test "$(nova-manage {cmd} version 2>/dev/null | tail -n 1)" = "$(python3 -c "{_NOVA_HEAD.format(db)}")"'
      for cmd, db in (("api_db", "api"), ("db", "main"))),
    *(f"nova-manage cell_v2 list_cells 2>/dev/null | grep -q ' {cell} '" for cell in ("cell0", "cell1"))))
# The API database first (cells are mapped there), cell0 mapped, cell1 made from the configured
# database and bus once, then both cell databases synced. Each step is a no-op when already done.
_NOVA_SYNC = ("nova-manage api_db sync && nova-manage cell_v2 map_cell0"
              " && { nova-manage cell_v2 list_cells | grep -q ' cell1 '"
              " || nova-manage cell_v2 create_cell --name cell1; }"
              " && nova-manage db sync")

# neutron: current when the revisions alembic stands at are the installed heads (expand and contract).
_NEUTRON_REVS = "neutron-db-manage {} 2>/dev/null | grep -o '^[0-9a-f]\\{{12\\}}' | sort"
_NEUTRON_CHECK = (f'h="$({_NEUTRON_REVS.format("heads")})"; '
                  f'test -n "$h" && test "$({_NEUTRON_REVS.format("current")})" = "$h"')

# cinder (alembic since Yoga): current when `db version` is the installed head.
_CINDER_HEAD = _NOVA_HEAD.replace("nova.db.{0}", "cinder.db")
_CINDER_CHECK = f'test "$(cinder-manage db version 2>/dev/null | tail -n 1)" = "$(python3 -c "{_CINDER_HEAD}")"'
# heat (still sqlalchemy-migrate in Zed): current when `db_version` is the highest numbered script.
_HEAT_HEAD = ("import os, heat.db.sqlalchemy.migrate_repo as r; d = os.path.join(os.path.dirname(r.__file__), "
              "'versions'); print(max(int(f[:3]) for f in os.listdir(d) if f[:3].isdigit()))")
_HEAT_CHECK = f'test "$(heat-manage db_version 2>/dev/null | tail -n 1)" = "$(python3 -c "{_HEAT_HEAD}")"'


@dataclass(frozen=True)
class Schema:
    """How a project's schema is checked and brought to the installed release, as the project's user."""

    project: str
    sync: tuple[str, ...]
    check: tuple[str, ...]  # exits 0 when current, one of `due` when a sync is needed
    due: tuple[int, ...]

    def as_user(self, argv: tuple[str, ...]) -> tuple[str, ...]:
        # Never as root: a root-run manage command leaves root-owned logs the service then cannot write.
        return ("runuser", "-u", self.project, "--", *argv)


SCHEMAS: dict[str, Schema] = {
    # db_sync --check: 0 current; 2, 3, 4: expand, migrate or contract needed.
    "keystone": Schema("keystone", ("keystone-manage", "db_sync"), ("keystone-manage", "db_sync", "--check"),
                       (2, 3, 4)),
    # db check: 0 current; 3, 4, 5: expand, migrate or contract needed.
    "glance": Schema("glance", ("glance-manage", "db_sync"), ("glance-manage", "db", "check"), (3, 4, 5)),
    "placement": Schema("placement", ("placement-manage", "db", "sync"), ("sh", "-c", _PLACEMENT_CHECK), (1,)),
    "neutron": Schema("neutron", ("neutron-db-manage", "upgrade", "heads"), ("sh", "-c", _NEUTRON_CHECK), (1,)),
    "nova": Schema("nova", ("sh", "-c", _NOVA_SYNC), ("sh", "-c", _NOVA_CHECK), (1,)),
    "cinder": Schema("cinder", ("cinder-manage", "db", "sync"), ("sh", "-c", _CINDER_CHECK), (1,)),
    "heat": Schema("heat", ("heat-manage", "db_sync"), ("sh", "-c", _HEAT_CHECK), (1,)),
}


def schema_current(schema: Schema) -> Fact[bool]:
    """True when the schema is current; False when a sync is due; an error for anything else."""

    def parse(rc: int, stdout: str) -> bool:
        if rc == 0:
            return True
        if rc in schema.due:
            return False
        raise FactFailed(rc)

    return Fact(f"{schema.project} schema", schema.as_user(schema.check), parse, timeout=120)


@dataclass(frozen=True)
class ApiRead:
    status: int  # 0: nothing answered
    ms: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class ApiCheck:
    """What one authenticated look at every API through the VIP saw (components/openstack_api.py)."""

    token_ms: float
    apis: dict[str, ApiRead]
    error: str = ""
    computes: dict[str, str] | None = None  # nova-compute per host: "up" or "down"; None: nova not asked


def parse_api_check(stdout: str) -> ApiCheck:
    """The last line openstack_api printed; ValueError when it printed nothing of the kind."""
    lines = stdout.strip().splitlines()
    if not lines:
        raise ValueError("the API check printed nothing")
    data = json.loads(lines[-1])
    return ApiCheck(float(data.get("token_ms", 0.0)),
                    {n: ApiRead(int(r["status"]), float(r["ms"])) for n, r in data.get("apis", {}).items()},
                    str(data.get("error", "")),
                    {str(h): str(v) for h, v in data["computes"].items()} if "computes" in data else None)


def parse_cell_hosts(rc: int, stdout: str) -> frozenset[str]:
    """`nova-manage cell_v2 list_hosts`: the compute hosts mapped to a cell (a table: cell, uuid, host)."""
    if rc != 0:
        raise FactFailed(rc)
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in stdout.splitlines() if ln.startswith("|")]
    return frozenset(r[2] for r in rows[1:] if len(r) == 3)


CELL_HOSTS: Fact[frozenset[str]] = Fact("nova cell hosts", SCHEMAS["nova"].as_user(
    ("nova-manage", "cell_v2", "list_hosts")), parse_cell_hosts, timeout=120)
