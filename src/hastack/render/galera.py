"""MariaDB Galera: per-node server config, SST credentials, garbd, and bootstrap SQL."""

from __future__ import annotations

from hastack.credentials.model import Secrets, db_password_key
from hastack.render import tls as tls_files
from hastack.render.files import RenderedFile, text
from hastack.render.templating import render
from hastack.spec.catalog import databases
from hastack.spec.model import Spec
from hastack.spec.timing import Timing

CONF = "/etc/mysql/mariadb.conf.d/60-galera.cnf"
SST_CONF = "/etc/mysql/mariadb.conf.d/61-galera-sst.cnf"
GARBD = "/etc/default/garb"
GARBD_DROPIN = "/etc/systemd/system/garb.service.d/50-hastack.conf"
BOOTSTRAP_SQL = "/etc/hastack/galera-bootstrap.sql"
SST_USER = "hastack_sst"
MONITOR_USER = "hastack_monitor"
# hastack's own workloads (lab smoke test, chaos) write here, never in an OpenStack database.
PROBE_USER = "hastack_probe"
PROBE_DB = "hastack"
PORT = 4567
TLS_DIR = "/etc/mysql/tls"
# garbd runs as nobody (Debian's unit): its key is readable by that group alone.
GARBD_TLS_DIR = "/etc/hastack/tls/garbd"


def _iso(ms: int) -> str:
    # galera takes ISO 8601 durations.
    return f"PT{ms / 1000:g}S"


def evs_options(t: Timing) -> list[str]:
    return [
        f"evs.keepalive_period={_iso(t.galera_keepalive_ms)}",
        f"evs.suspect_timeout={_iso(t.galera_suspect_ms)}",
        f"evs.inactive_timeout={_iso(t.galera_inactive_ms)}",
        # How often peers are checked against those timeouts: its period is added to every
        # eviction, so a tenth of the suspect timeout (galera's own 0.5 s at the default 5 s).
        f"evs.inactive_check_period={_iso(max(100, min(500, t.galera_suspect_ms // 10)))}",
        # Join messages are resent at this period while the survivors agree on a new view;
        # galera's 1 s default added a whole second to a 2 s eviction (fast profile, measured).
        f"evs.join_retrans_period={_iso(min(1000, t.galera_keepalive_ms))}",
    ]


def tls_options(directory: str) -> list[str]:
    """Replication over TLS: each peer presents its certificate and checks the other's against the CA."""
    return [f"socket.ssl_key={directory}/key.pem", f"socket.ssl_cert={directory}/cert.pem",
            f"socket.ssl_ca={directory}/ca.pem"]


def provider_options(spec: Spec, address: str) -> str:
    opts = [
        f"gmcast.listen_addr=tcp://{address}:{PORT}",
        f"gcache.size={spec.galera.gcache_mb}M",
        # pc.recovery: after a full outage the nodes restore their last primary
        # component from gvwstate.dat themselves when all of them come back.
        "pc.recovery=TRUE",
        f"pc.ignore_sb={'TRUE' if spec.galera.ignore_split_brain else 'FALSE'}",
        *evs_options(spec.timing),
        *(tls_options(TLS_DIR) if spec.tls.enabled else ()),
    ]
    return ";".join(opts)


def db_user(service: str) -> str:
    return service.replace("-", "_")


def _sql_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def bootstrap_sql(spec: Spec, secrets: Secrets) -> str:
    """Users the cluster needs, created once on the bootstrap node (replicated)."""
    sst = _sql_quote(secrets["galera_sst_password"])
    mon = _sql_quote(secrets["galera_monitor_password"])
    lines = [
        "-- Rendered by hastack. Run once on the bootstrap node; galera replicates it.",
        # mariabackup runs on the donor and connects locally: no '%' account
        # and not the guide's GRANT ALL.
        f"CREATE USER IF NOT EXISTS '{SST_USER}'@'localhost' IDENTIFIED BY {sst};",
        f"GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO '{SST_USER}'@'localhost';",
        f"CREATE USER IF NOT EXISTS '{MONITOR_USER}'@'localhost' IDENTIFIED BY {mon};",
        f"GRANT USAGE ON *.* TO '{MONITOR_USER}'@'localhost';",
        f"CREATE DATABASE IF NOT EXISTS `{PROBE_DB}`;",
        f"CREATE USER IF NOT EXISTS '{PROBE_USER}'@'%' IDENTIFIED BY {_sql_quote(secrets['galera_probe_password'])};",
        f"GRANT ALL PRIVILEGES ON `{PROBE_DB}`.* TO '{PROBE_USER}'@'%';",
    ]
    for service in spec.openstack.services:
        user = db_user(service)
        dbs = databases(service)
        if dbs:
            pw = _sql_quote(secrets[db_password_key(service)])
            lines.append(f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY {pw};")
        for db in dbs:
            lines += [
                f"CREATE DATABASE IF NOT EXISTS `{db}`;",
                f"GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%';",
            ]
    return "\n".join(lines) + "\n"


def render_galera(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    if not spec.galera.enabled:
        return {}
    nodes = spec.galera_nodes()
    peers = [str(n.address) for n in nodes]
    out: dict[str, list[RenderedFile]] = {}
    sst = (
        "# Rendered by hastack: SST credentials, readable by mysql only.\n"
        f"[mysqld]\nwsrep_sst_auth = {SST_USER}:{secrets['galera_sst_password']}\n"
    )
    sql = bootstrap_sql(spec, secrets)
    for server_id, node in enumerate(nodes, start=1):
        conf = render(
            "galera.cnf.j2",
            cluster=spec.cluster,
            node=node,
            server_id=server_id,
            galera=spec.galera,
            peers=peers,
            provider_options=provider_options(spec, str(node.address)),
            tls_dir=TLS_DIR if spec.tls.enabled else None,
        )
        out[node.name] = [
            text(CONF, conf),
            text(SST_CONF, sst, 0o640, group="mysql"),
            text(BOOTSTRAP_SQL, sql, 0o600),
        ]
        if (node_tls := tls_files.for_node(spec, secrets, node)) is not None:
            out[node.name] += tls_files.files(node_tls, TLS_DIR, owner="mysql")
    if spec.galera.arbitrator:
        arb = spec.node(spec.galera.arbitrator)
        garb = render(
            "garb.j2",
            cluster=spec.cluster,
            node=arb.name,
            peers=[f"{p}:{PORT}" for p in peers],
            group=spec.galera.cluster_name,
            options=";".join([f"gmcast.listen_addr=tcp://{arb.address}:{PORT}", *evs_options(spec.timing),
                              *(tls_options(GARBD_TLS_DIR) if spec.tls.enabled else ())]),
        )
        dropin = ("# Rendered by hastack: Debian's unit runs garbd as nobody, who may write nowhere;\n"
                  "# systemd makes /var/lib/garbd for it.\n[Service]\nStateDirectory=garbd\n")
        out.setdefault(arb.name, []).extend([text(GARBD, garb), text(GARBD_DROPIN, dropin)])
        if (arb_tls := tls_files.for_node(spec, secrets, arb)) is not None:
            out[arb.name] += tls_files.files(arb_tls, GARBD_TLS_DIR, group="nogroup")
    return out
