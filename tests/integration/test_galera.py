"""MariaDB Galera from the rendered files: options accepted, a real cluster formed.

The seed topology end to end: ctl1 bootstraps, the bootstrap SQL runs, ctl2
joins by a mariabackup SST with the generated SST user, garbd joins from the
rendered /etc/default/garb, and a write on one node is read on the other.
Everything runs in one namespace holding the three nodes' addresses.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from hastack.components.galera import STATUS_SQL, GaleraState, parse_wsrep_status, writer_health
from hastack.lab.netns import Netns, netns
from hastack.spec.load import load_spec
from tests.helpers import SEED, variant
from tests.integration.conftest import Daemons, Rendered, render_to, require, wait_until


def _mariadbd_help(conf_dir: Path) -> subprocess.CompletedProcess[str]:
    my = conf_dir.parent / "my.cnf"
    my.write_text(f"!includedir {conf_dir}/\n")
    return subprocess.run([require("mariadbd"), f"--defaults-file={my}", "--help", "--verbose"],
                          capture_output=True, text=True, timeout=60, check=False)


def _variables(help_out: str) -> dict[str, str]:
    out = {}
    for line in help_out.rsplit("Variables (--variable-name=value)", maxsplit=1)[-1].splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            out[parts[0]] = parts[1].strip()
    return out


def test_mariadbd_accepts_every_node_config(rendered: Rendered) -> None:
    for name in rendered.spec.galera.nodes:
        conf_dir = rendered.path(name, "/etc/mysql/mariadb.conf.d")
        res = _mariadbd_help(conf_dir)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "was removed" not in res.stderr and "deprecated" not in res.stderr.lower(), res.stderr
        v = _variables(res.stdout)
        node = rendered.spec.node(name)
        assert v["wsrep-on"] == "TRUE"
        assert v["wsrep-node-address"] == str(node.address)
        assert v["wsrep-sst-method"] == "mariabackup"
        assert v["innodb-flush-log-at-trx-commit"] == "1"
        assert "evs.suspect_timeout=PT5S" in v["wsrep-provider-options"]


def test_mariadbd_help_rejects_unknown_options(tmp_path: Path) -> None:
    conf_dir = tmp_path / "conf.d"
    conf_dir.mkdir()
    (conf_dir / "x.cnf").write_text("[mysqld]\nwsrep_cluster_adress = gcomm://\n")  # a typo
    res = _mariadbd_help(conf_dir)
    assert res.returncode != 0 and "unknown variable" in res.stderr
    # The guide's removed options are accepted as no-ops, with a warning the
    # rendered config must never trigger (asserted above).
    (conf_dir / "x.cnf").write_text("[mysqld]\ninnodb_locks_unsafe_for_binlog = 1\n")
    assert "was removed" in _mariadbd_help(conf_dir).stderr


class Node:
    """One mariadbd with the rendered conf.d, like /etc/mysql/my.cnf includes it."""

    def __init__(self, r: Rendered, name: str, ns: Netns, base: Path, daemons: Daemons) -> None:
        self.name = name
        self.ns = ns
        self.daemons = daemons
        self.datadir = base / name / "data"
        self.socket = base / name / "mysqld.sock"
        self.log = base / name / "error.log"
        self.datadir.mkdir(parents=True)
        # The rendered settings first, then test-only paths (later lines win).
        self.cnf = base / name / "my.cnf"
        self.cnf.write_text(
            f"!includedir {r.path(name, '/etc/mysql/mariadb.conf.d')}/\n"
            f"[mysqld]\ndatadir={self.datadir}\nsocket={self.socket}\npid-file={base / name / 'pid'}\n"
            f"log-error={self.log}\nuser=root\n"
        )

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        return self.daemons.spawn(self.ns.argv([require("mariadbd"), f"--defaults-file={self.cnf}", *extra]))

    def query(self, sql: str) -> list[tuple[str, ...]]:
        conn = pymysql.connect(unix_socket=str(self.socket), user="root", connect_timeout=2, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def state(self) -> GaleraState | None:
        try:
            return parse_wsrep_status(self.query(STATUS_SQL))  # type: ignore[arg-type]
        except pymysql.MySQLError:
            return None

    def synced(self, size: int) -> bool:
        s = self.state()
        return s is not None and s.local_state == "Synced" and s.cluster_size == size

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"


@pytest.fixture
def seed_ns(tmp_path: Path) -> Iterator[tuple[Rendered, Netns]]:
    r = render_to(load_spec(SEED), tmp_path / "out")
    addrs = [str(r.spec.node(n).address) for n in ("ctl1", "ctl2", "arb1")]
    with netns("galera", addrs) as ns:
        yield r, ns


def test_seed_galera_cluster_forms_from_rendered_files(seed_ns: tuple[Rendered, Netns], tmp_path: Path,
                                                       daemons: Daemons) -> None:
    r, ns = seed_ns
    base = tmp_path / "nodes"
    ctl1, ctl2 = Node(r, "ctl1", ns, base, daemons), Node(r, "ctl2", ns, base, daemons)
    subprocess.run([require("mariadb-install-db"), "--no-defaults", f"--datadir={ctl1.datadir}", "--user=root",
                    "--skip-test-db"], check=True, capture_output=True, timeout=120)
    ctl1.start("--wsrep-new-cluster")
    wait_until(lambda: ctl1.synced(1), 60, f"ctl1 to bootstrap\n{ctl1.log_tail()}")
    first = ctl1.state()
    assert first is not None and writer_health(first).serve

    # Users and databases, as deploy will run them on the bootstrap node.
    conn = pymysql.connect(unix_socket=str(ctl1.socket), user="root",
                           client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    with conn.cursor() as cur:
        cur.execute(r.path("ctl1", "/etc/hastack/galera-bootstrap.sql").read_text())
        while cur.nextset():
            pass
    conn.close()

    # garbd exactly as Debian's garb service runs it: the rendered file sourced.
    garb = r.path("arb1", "/etc/default/garb")
    garbd = require("garbd")
    log = tmp_path / "garbd.log"
    daemons.spawn(ns.argv(["bash", "-c", f'set -a; . {garb}; cd {tmp_path}; exec {garbd} '
                           f'-a "gcomm://$GALERA_NODES" -g "$GALERA_GROUP" -o "$GALERA_OPTIONS" -l {log}']))
    wait_until(lambda: ctl1.synced(2), 30, f"garbd to join\n{log.read_text() if log.exists() else ''}")

    # ctl2 joins with an empty datadir: a full SST by mariabackup, authenticated
    # with the generated SST user from 61-galera-sst.cnf.
    ctl2.start()
    wait_until(lambda: ctl2.synced(3), 180, f"ctl2 to join by SST\n{ctl2.log_tail()}")
    assert "mariabackup SST completed on joiner" in ctl2.log.read_text()

    ctl1.query("CREATE TABLE nova.probe (id INT PRIMARY KEY, v VARCHAR(16))")
    ctl1.query("INSERT INTO nova.probe VALUES (1, 'written-on-ctl1')")
    assert ctl2.query("SELECT v FROM nova.probe WHERE id = 1") == [("written-on-ctl1",)]
    users = {u for (u,) in ctl2.query("SELECT user FROM mysql.user")}
    assert {"hastack_sst", "hastack_monitor", "nova", "keystone"} <= users
    both = [ctl1.state(), ctl2.state()]
    assert all(s is not None and s.primary and s.cluster_size == 3 for s in both)
    assert len({s.cluster_state_uuid for s in both if s}) == 1


def test_garbd_refuses_what_HA207_flags(tmp_path: Path) -> None:
    """HA207's rule is galera's own: the same values make garbd refuse to start."""
    spec = variant(SEED, timing={"galera_keepalive_ms": 2000},
                   waivers=[{"code": "HA207", "reason": "prove galera refuses these values"}])
    r = render_to(spec, tmp_path / "out")
    garb = r.path("arb1", "/etc/default/garb")
    cmd = ["bash", "-c", f'. {garb}; exec {require("garbd")} -a "gcomm://$GALERA_NODES" '
           f'-g "$GALERA_GROUP" -o "$GALERA_OPTIONS"']
    outputs = []
    with netns("garbd", [str(spec.node("arb1").address)]) as ns:
        # garbd's gcomm thread can die of the range error before the main
        # thread reads its scheduling parameters; it then reports ESRCH
        # instead. Every attempt must fail; one of a few names the parameter.
        for _ in range(5):
            res = ns.run(cmd, timeout=30, cwd=str(tmp_path))
            assert res.returncode != 0
            outputs.append(res.stdout + res.stderr)
            if "evs.keepalive_period' value PT2S is out of range" in outputs[-1]:
                return
    pytest.fail("garbd never named the out-of-range parameter:\n" + outputs[-1][-1500:])
