"""MariaDB Galera from the rendered files: options accepted, a real cluster formed.

The seed topology end to end, with TLS on (the labs run it off): ctl1
bootstraps, the bootstrap SQL runs, ctl2 joins by a mariabackup SST with the
generated SST user, garbd joins from the rendered /etc/default/garb, every
link encrypted with the CA derived from the spec's secret, and a write on one
node is read on the other. Everything runs in one namespace holding the three
nodes' addresses.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest
import yaml

from hastack.components.galera import STATUS_SQL, GaleraState, parse_wsrep_status, writer_health
from hastack.credentials.model import AGENT_TOKEN
from hastack.lab.netns import Netns, netns
from hastack.render.galera import TLS_DIR
from hastack.spec.model import Spec
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
        # The rendered settings, with the rendered certificates where they were rendered, then
        # test-only paths (later lines win).
        conf = base / name / "conf.d"
        conf.mkdir()
        for f in r.path(name, "/etc/mysql/mariadb.conf.d").iterdir():
            (conf / f.name).write_text(r.relocated(name, f"/etc/mysql/mariadb.conf.d/{f.name}").read_text())
        self.cnf = base / name / "my.cnf"
        self.cnf.write_text(
            f"!includedir {conf}/\n"
            f"[mysqld]\ndatadir={self.datadir}\nsocket={self.socket}\npid-file={base / name / 'pid'}\n"
            f"log-error={self.log}\nuser=root\n"
        )

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        # `ip netns exec` execs mariadbd itself: this process is the server.
        self.proc = self.daemons.spawn(self.ns.argv([require("mariadbd"), f"--defaults-file={self.cnf}", *extra]))
        return self.proc

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


@dataclass
class SeedCluster:
    r: Rendered
    ns: Netns
    ctl1: Node
    ctl2: Node
    daemons: Daemons
    base: Path


@pytest.fixture
def seed_cluster(tmp_path: Path, daemons: Daemons) -> Iterator[SeedCluster]:
    """The seed topology from the rendered files, as deploy will form it.

    ctl1 bootstraps, the bootstrap SQL runs there, garbd joins from the
    rendered /etc/default/garb, and ctl2 joins with an empty datadir: a full
    SST by mariabackup with the generated SST user. One namespace holds the
    three nodes' addresses and the VIP.
    """
    r = render_to(variant(SEED, tls={"enabled": True}), tmp_path / "out")
    addrs = [str(r.spec.node(n).address) for n in ("ctl1", "ctl2", "arb1")] + [str(r.spec.vips[0].address)]
    with netns("galera", addrs) as ns:
        base = tmp_path / "nodes"
        ctl1, ctl2 = Node(r, "ctl1", ns, base, daemons), Node(r, "ctl2", ns, base, daemons)
        subprocess.run([require("mariadb-install-db"), "--no-defaults", f"--datadir={ctl1.datadir}",
                        "--user=root", "--skip-test-db"], check=True, capture_output=True, timeout=120)
        ctl1.start("--wsrep-new-cluster")
        wait_until(lambda: ctl1.synced(1), 60, f"ctl1 to bootstrap\n{ctl1.log_tail()}")
        conn = pymysql.connect(unix_socket=str(ctl1.socket), user="root",
                               client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
        with conn.cursor() as cur:
            cur.execute(r.path("ctl1", "/etc/hastack/galera-bootstrap.sql").read_text())
            while cur.nextset():
                pass
        conn.close()
        garb = r.relocated("arb1", "/etc/default/garb")
        log = tmp_path / "garbd.log"
        daemons.spawn(ns.argv(["bash", "-c", f'set -a; . {garb}; cd {tmp_path}; exec {require("garbd")} '
                               f'-a "gcomm://$GALERA_NODES" -g "$GALERA_GROUP" -o "$GALERA_OPTIONS" -l {log}']))
        wait_until(lambda: ctl1.synced(2), 30, f"garbd to join\n{log.read_text() if log.exists() else ''}")
        ctl2.start()
        wait_until(lambda: ctl2.synced(3), 180, f"ctl2 to join by SST\n{ctl2.log_tail()}")
        yield SeedCluster(r, ns, ctl1, ctl2, daemons, tmp_path)


def test_seed_galera_cluster_forms_from_rendered_files(seed_cluster: SeedCluster) -> None:
    c = seed_cluster
    joined = c.ctl2.log.read_text()
    assert "mariabackup SST completed on joiner" in joined
    # The state transfer went through socat with TLS, checking the donor's chain against the CA.
    assert "Using openssl based encryption with socat: with key and crt" in joined
    assert "Verifying peer certificate chain for ssl-mode=VERIFY_CA" in joined
    for node in (c.ctl1, c.ctl2):  # replication between the members (and garbd) over TLS
        (opts,) = node.query("SELECT @@wsrep_provider_options")[0]
        assert "socket.ssl = YES" in opts, opts
    first = c.ctl1.state()
    assert first is not None and writer_health(first).serve
    c.ctl1.query("CREATE TABLE nova.probe (id INT PRIMARY KEY, v VARCHAR(16))")
    c.ctl1.query("INSERT INTO nova.probe VALUES (1, 'written-on-ctl1')")
    assert c.ctl2.query("SELECT v FROM nova.probe WHERE id = 1") == [("written-on-ctl1",)]
    users = {u for (u,) in c.ctl2.query("SELECT user FROM mysql.user")}
    assert {"hastack_sst", "hastack_monitor", "nova", "keystone"} <= users
    both = [c.ctl1.state(), c.ctl2.state()]
    assert all(s is not None and s.primary and s.cluster_size == 3 for s in both)
    assert len({s.cluster_state_uuid for s in both if s}) == 1


def test_clients_reach_galera_over_tls_checked_against_the_ca(seed_cluster: SeedCluster) -> None:
    """TLS is offered to clients: one that asks gets it, and the server's certificate holds its
    address, so a client checking the name (PyMySQL with the CA) connects."""
    c = seed_cluster
    ca = c.r.path("ctl2", f"{TLS_DIR}/ca.pem")
    code = ("import pymysql,sys; c = pymysql.connect(host=sys.argv[1], user='nova', password=sys.argv[2], "
            "connect_timeout=2, ssl={'ca': sys.argv[3], 'check_hostname': True}); cur = c.cursor(); "
            "cur.execute(\"SHOW SESSION STATUS LIKE 'Ssl_cipher'\"); print(cur.fetchone()[1])")
    res = c.ns.run([sys.executable, "-c", code, str(c.r.spec.node("ctl2").address), c.r.secrets["db_nova_password"],
                    str(ca)])
    assert res.returncode == 0 and res.stdout.strip(), res.stderr[-2000:]


HTTP_GET = """
import sys, urllib.request, urllib.error
headers = {"Authorization": sys.argv[2]} if len(sys.argv) > 2 else {}
try:
    print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers=headers), timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    print(0)
"""

# GET with basic auth, checking a TLS server against the CA: the status, or 0 when nothing answered.
STATS_GET = """
import base64, ssl, sys, urllib.request
auth = "Basic " + base64.b64encode(sys.argv[2].encode()).decode()
req = urllib.request.Request(sys.argv[1], headers={"Authorization": auth})
try:
    print(urllib.request.urlopen(req, timeout=3, context=ssl.create_default_context(cafile=sys.argv[3])).status)
except Exception:  # refused, reset, or not HTTP: nothing answered this request
    print(0)
"""

# Writes through the VIP for a bounded time; prints every acknowledged id with its time.
WRITER = """
import json, sys, time, pymysql
host, password, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
acks, conn, i, end = [], None, 0, time.monotonic() + seconds
while time.monotonic() < end:
    try:
        if conn is None:
            conn = pymysql.connect(host=host, user="nova", password=password, database="nova",
                                   connect_timeout=1, read_timeout=2, write_timeout=2, autocommit=True)
        i += 1
        with conn.cursor() as cur:
            cur.execute("INSERT INTO w (id) VALUES (%s)", (i,))
        acks.append((i, time.monotonic()))
    except pymysql.MySQLError:
        conn = None
        time.sleep(0.05)
print(json.dumps(acks))
"""


def test_haproxy_moves_writes_to_the_backup_when_the_writer_dies(seed_cluster: SeedCluster) -> None:
    """The data path as rendered: client -> VIP -> haproxy -> agent check -> galera."""
    c = seed_cluster
    spec, ns = c.r.spec, c.ns
    hastack = str(Path(sys.executable).parent / "hastack")
    for node in (c.ctl1, c.ctl2):
        cfg = yaml.safe_load(c.r.path(node.name, "/etc/hastack/agent.yaml").read_text())
        cfg["mysql_socket"] = str(node.socket)
        path = c.base / f"agent-{node.name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        c.daemons.spawn(ns.argv([hastack, "agent", "--config", str(path)]), c.base / f"agent-{node.name}.log")

    def status(node: str, token: str = c.r.secrets[AGENT_TOKEN]) -> int:
        url = f"http://{spec.node(node).address}:{spec.haproxy.health_port}/galera"
        return int(ns.run([sys.executable, "-c", HTTP_GET, url, f"Bearer {token}"]).stdout.strip() or 0)

    wait_until(lambda: status("ctl1") == 200 and status("ctl2") == 200, 30, "both agents to answer 200")
    assert status("ctl1", "someone-else-s-guess") == 401  # haproxy's check is let in by the token it shows

    # haproxy with the rendered config (naming the rendered certificates); runtime paths move to the test folder.
    cfg = c.r.relocated("ctl1", "/etc/haproxy/haproxy.cfg").read_text()
    cfg = cfg.replace("/run/haproxy/admin.sock", str(c.base / "haproxy.sock"))
    cfg = cfg.replace("/run/haproxy.pid", str(c.base / "haproxy.pid"))
    (c.base / "haproxy.cfg").write_text(cfg)
    c.daemons.spawn(ns.argv([require("haproxy"), "-db", "-f", str(c.base / "haproxy.cfg")]), c.base / "haproxy.log")

    vip = str(spec.vips[0].address)
    password = c.r.secrets["db_nova_password"]
    c.ctl1.query("CREATE TABLE nova.w (id INT PRIMARY KEY)")

    def through_vip() -> str | None:
        res = ns.run([sys.executable, "-c", "import pymysql,sys; c = pymysql.connect(host=sys.argv[1], "
                      "user='nova', password=sys.argv[2], connect_timeout=1); cur = c.cursor(); "
                      "cur.execute('SELECT @@wsrep_node_name'); print(cur.fetchone()[0])", vip, password])
        return res.stdout.strip() or None

    wait_until(lambda: through_vip() == "ctl1", 30, "the VIP to reach the writer ctl1")
    # The stats page answers over TLS only, with a certificate a client checks against the CA.
    stats = f"{spec.node('ctl1').address}:{spec.haproxy.stats_port}/haproxy_stats"
    ca = str(c.r.path("ctl1", f"{TLS_DIR}/ca.pem"))
    auth = f"{spec.haproxy.stats_user}:{c.r.secrets['haproxy_stats_password']}"
    assert ns.run([sys.executable, "-c", STATS_GET, f"https://{stats}", auth, ca]).stdout.strip() == "200"
    assert ns.run([sys.executable, "-c", STATS_GET, f"http://{stats}", auth, ca]).stdout.strip() == "0"

    writer = subprocess.Popen(ns.argv([sys.executable, "-c", WRITER, vip, password, "16"]),
                              stdout=subprocess.PIPE, text=True)
    time.sleep(4)  # let the workload run before the fault: part of the scenario, not a wait for state
    killed_at = time.monotonic()
    c.ctl1.proc.kill()  # the writer's mariadbd dies at once
    out, _ = writer.communicate(timeout=60)
    acks = json.loads(out)

    assert status("ctl1") == 503  # the agent lives on and reports its dead server
    assert status("ctl2") == 200
    assert through_vip() == "ctl2"
    before = [t for _, t in acks if t < killed_at]
    after = [t for _, t in acks if t > killed_at]
    assert before and after, "writes must flow before the fault and resume after it"
    gap = after[0] - max(before)
    print(f"\nwriter killed: writes through the VIP resumed after {gap:.2f} s "
          f"(haproxy inter {spec.timing.haproxy_inter_ms} ms x fall {spec.timing.haproxy_fall})")
    assert gap < 15
    # RPO: every acknowledged write is on the survivor.
    stored = {i for (i,) in c.ctl2.query("SELECT id FROM nova.w")}
    lost = [i for i, _ in acks if i not in stored]
    assert lost == []


def test_garbd_refuses_what_HA207_flags(tmp_path: Path, daemons: Daemons) -> None:
    """HA207's rule is galera's own: the same values make garbd refuse to start; the values HA207
    accepts, in the same namespace with the same unreachable peers, do not."""
    bad = variant(SEED, timing={"galera_keepalive_ms": 2000},
                  waivers=[{"code": "HA207", "reason": "prove galera refuses these values"}])

    def garbd(spec: Spec, out: Path) -> list[str]:
        garb = render_to(spec, out).relocated("arb1", "/etc/default/garb")
        return ["bash", "-c", f'. {garb}; exec {require("garbd")} -a "gcomm://$GALERA_NODES" '
                f'-g "$GALERA_GROUP" -o "$GALERA_OPTIONS"']

    with netns("garbd", [str(bad.node("arb1").address)]) as ns:
        # Refused, every time, at once. garbd's gcomm thread can die of the range error before the
        # main thread reads its scheduling parameters, and it then reports ESRCH instead of naming
        # the parameter (a race inside garbd): either message is the refusal; the control below
        # shows the values are what is refused.
        for _ in range(5):
            res = ns.run(garbd(bad, tmp_path / "bad"), timeout=30, cwd=str(tmp_path))
            text = res.stdout + res.stderr
            assert res.returncode != 0, text[-1500:]
            assert ("evs.keepalive_period' value PT2S is out of range" in text
                    or "Failed to open backend connection" in text), text[-1500:]
        log = tmp_path / "garbd-good.log"
        proc = daemons.spawn(ns.argv(garbd(variant(SEED), tmp_path / "good")), log)
        # With the accepted values garbd opens its backend and goes on to look for its peers.
        wait_until(lambda: "connecting to group" in log.read_text(errors="replace") or proc.poll() is not None,
                   30, "garbd with HA207's accepted values to start connecting")
        assert proc.poll() is None, log.read_text(errors="replace")[-1500:]
