"""Deploy over fake hosts that answer as a healthy lab cluster does: every phase runs, no lab needed."""

from __future__ import annotations

import asyncio
import itertools
import json
import shlex
from typing import Any, cast

import pytest

from hastack.components.galera import GRASTATE
from hastack.credentials.model import FINGERPRINTS_PATH, complete, fingerprints_text
from hastack.deploy.context import (
    COROSYNC_CONF,
    PENDING_BEFORE,
    PENDING_PATH,
    REPLSET_PATH,
    DeployContext,
    DeployError,
    Report,
)
from hastack.deploy.phases import mongodb as mongo_phase
from hastack.deploy.run import run
from hastack.hosts.ssh import Result, SshHost
from hastack.render import render_all
from hastack.render.haproxy import CONF as HAPROXY_CONF
from hastack.spec.load import load_spec
from hastack.spec.model import Spec, Tls
from tests.helpers import THREE, variant
from tests.unit.fake_cluster import FIXTURES, FakeHost, FakeMongo, cluster, fake_mongo, fake_reachable

SPEC = load_spec(THREE)
SECRETS = complete(SPEC, {})[0]


@pytest.fixture
def mongo(monkeypatch: pytest.MonkeyPatch) -> list[FakeMongo]:
    """mongod on every member answers as an initiated set with the spec's configuration."""
    document = json.loads(render_all(SPEC, SECRETS)["ctl1"][REPLSET_PATH].content)
    clients: list[FakeMongo] = []
    monkeypatch.setattr(mongo_phase, "mongo_client", fake_mongo({**document, "version": 1}, clients))
    return clients


def deploy(hosts: dict[str, FakeHost]) -> Report:
    ctx = DeployContext(SPEC, SECRETS, render_all(SPEC, SECRETS), cast(dict[str, SshHost], hosts), lambda _: None)
    return asyncio.run(run(ctx))


def commands(hosts: dict[str, FakeHost]) -> list[str]:
    return [c for h in hosts.values() for c in h.log]


def test_a_deploy_on_a_healthy_cluster_changes_nothing(mongo: list[FakeMongo]) -> None:
    hosts = cluster(SPEC, SECRETS)
    report = deploy(hosts)
    assert report.changes == []
    assert set(report.timings) == {"files", "agent", "corosync", "galera", "rabbitmq", "mongodb", "memcached", "cib",
                                   "openstack"}
    sent = commands(hosts)
    # Nothing placed, restarted, bootstrapped or reloaded; the CIB left as it runs.
    assert not [c for c in sent if "python3 -c" in c and "O_EXCL" in c]
    assert not [c for c in sent if c.startswith(("systemctl restart", "systemctl start", "galera_new_cluster",
                                                 "corosync-cfgtool -R", "cibadmin --replace"))]
    reads = {"replSetGetStatus", "replSetGetConfig"}
    assert not [c for m in mongo for c in m.sent if c.startswith("replSet") and c not in reads]


def test_a_host_with_other_secrets_stops_the_deploy_before_anything_is_placed(mongo: list[FakeMongo]) -> None:
    other = complete(SPEC, {})[0]  # a copied spec: a new secrets file
    hosts = cluster(SPEC, SECRETS, ctl2={shlex.join(["cat", FINGERPRINTS_PATH]): Result(
        0, fingerprints_text(other), "")})
    with pytest.raises(DeployError, match="other secrets") as exc:
        deploy(hosts)
    assert "ctl2" in str(exc.value) and "rabbitmq_erlang_cookie" in str(exc.value)
    assert not [c for c in commands(hosts) if "O_EXCL" in c]


def test_turning_tls_on_under_running_members_stops_the_deploy_before_anything_is_placed(
        mongo: list[FakeMongo]) -> None:
    """The fake cluster runs as deployed without TLS; this deploy's spec has it: galera's members
    would be restarted one by one into a cluster they cannot reach."""
    plain = SPEC.model_copy(update={"tls": Tls(enabled=False)})  # the examples have TLS: this cluster had not
    spec = plain.model_copy(update={"tls": Tls(enabled=True)})
    secrets = complete(spec, dict(SECRETS))[0]
    hosts = cluster(plain, SECRETS)
    ctx = DeployContext(spec, secrets, render_all(spec, secrets), cast(dict[str, SshHost], hosts), lambda _: None)
    with pytest.raises(DeployError, match="cannot reach each other") as exc:
        asyncio.run(run(ctx))
    assert str(exc.value).startswith("galera: ctl1 runs without TLS; ctl2 runs without TLS; ctl3 runs without TLS, "
                                     "and this deploy installs TLS")
    assert not [c for c in commands(hosts) if "O_EXCL" in c]


def test_a_compute_watched_by_instance_ha_is_not_made_a_member_in_the_same_deploy(
        mongo: list[FakeMongo]) -> None:
    """compute1 runs pacemaker_remote (instance HA watched it); the spec now lists it in corosync: pacemaker
    would meet it as a cluster node and a remote node at once. Refused before anything is placed."""
    data = SPEC.model_dump(mode="json", exclude_defaults=False)
    data["corosync"]["nodes"] = [*data["corosync"]["nodes"], "compute1"]
    grown = Spec.model_validate(data)
    secrets = complete(grown, dict(SECRETS))[0]
    hosts = cluster(SPEC, SECRETS)
    hosts["compute1"].units.add("pacemaker_remote")
    ctx = DeployContext(grown, secrets, render_all(grown, secrets), cast(dict[str, SshHost], hosts), lambda _: None)
    with pytest.raises(DeployError, match="Deploy first with it out of instance HA") as exc:
        asyncio.run(run(ctx))
    assert str(exc.value).startswith("compute1 runs pacemaker_remote")
    assert not [c for c in commands(hosts) if "O_EXCL" in c]


def test_no_galera_node_running_but_history_on_disk_is_an_outage_not_a_first_deploy(
        mongo: list[FakeMongo]) -> None:
    down = Result(3, "inactive\n", "")
    history = Result(0, (FIXTURES / "galera_grastate_crashed.dat").read_text(), "")
    answers: dict[str, dict[str, Any]] = {n: {"systemctl is-active --quiet mariadb": down, GRASTATE.command: history}
                                          for n in ("ctl1", "ctl2", "ctl3")}
    hosts = cluster(SPEC, SECRETS, **answers)
    with pytest.raises(DeployError, match="hastack recover") as exc:
        deploy(hosts)
    assert "ctl1, ctl2, ctl3 hold cluster history" in str(exc.value)
    assert "galera_new_cluster" not in commands(hosts)


def test_status_and_recover_read_a_healthy_cluster_as_healthy(monkeypatch: pytest.MonkeyPatch) -> None:

    from hastack.components.mongodb import parse_replset_status
    from hastack.hosts.fleet import Access
    from hastack.recovery import run as rec
    from hastack.status import gather
    from hastack.status.model import verdict

    hosts = cluster(SPEC, SECRETS)
    rs = parse_replset_status(json.loads((FIXTURES / "mongo_replsetgetstatus.json").read_text()))

    async def replset(h: Any, login: Any, timeout_ms: int = 2000) -> Any:
        return rs

    monkeypatch.setattr(gather, "replset", replset)
    facts = asyncio.run(gather.gather(SPEC, SECRETS, cast(dict[str, SshHost], hosts), {}))
    unhealthy = [r for r in verdict(SPEC, facts) if not r.healthy and r.component not in ("vip", "haproxy")]
    assert not unhealthy, unhealthy  # (the captured haproxy and address output is another lab's)
    monkeypatch.setattr(rec, "replset", replset)
    monkeypatch.setattr(rec, "reachable", fake_reachable(hosts))
    report = asyncio.run(rec.recover(SPEC, SECRETS, Access(FIXTURES, FIXTURES), lambda _: None, lambda _: None,
                                     timeout=5))
    assert report.ok and report.healthy == {"galera": True, "rabbitmq": True, "mongodb": True, "pacemaker": True}
    assert [(r.component, r.outcome) for r in report.rounds] == [
        ("galera", "healthy"), ("rabbitmq", "healthy"), ("mongodb", "healthy"), ("pacemaker", "healthy")]


def test_each_change_is_recorded_with_its_host_and_phase(mongo: list[FakeMongo]) -> None:
    hosts = cluster(SPEC, SECRETS)
    hosts["ctl2"].units.discard("memcached")  # stopped since the last deploy
    report = deploy(hosts)
    assert [(c.host, c.phase, c.what) for c in report.changes] == [("ctl2", "memcached", "started memcached")]
    assert str(report.changes[0]) == "ctl2: started memcached"
    assert "systemctl start memcached" in hosts["ctl2"].log


def test_a_changed_api_configuration_restarts_one_controller_at_a_time(mongo: list[FakeMongo]) -> None:
    from hastack.render.openstack_run import uwsgi_path
    from hastack.spec.catalog import daemons_for

    keystone = next(d for d in daemons_for(SPEC.openstack.services) if d.project == "keystone")
    hosts = cluster(SPEC, SECRETS)
    sent: list[tuple[str, str]] = []  # every command on every host, in the order it ran
    for h in hosts.values():
        h.files.pop(uwsgi_path(keystone), None)  # the controllers still have the old uwsgi settings: a new file lands
        run = h.run

        async def logged(argv: Any, *args: Any, _run: Any = run, _name: str = h.name, **kw: Any) -> Result:
            sent.append((_name, shlex.join(argv)))
            return cast(Result, await _run(argv, *args, **kw))

        h.run = logged  # type: ignore[method-assign]
    report = deploy(hosts)
    restarts = [i for i, (_, c) in enumerate(sent) if c == "systemctl restart keystone"]
    assert [sent[i][0] for i in restarts] == ["ctl1", "ctl2", "ctl3"]
    # Between two restarts, the one before answers on its own address and is up in haproxy again.
    for a, b in itertools.pairwise(restarts):
        between = [c for h, c in sent[a:b] if h == sent[a][0]]
        assert any("5000/v3" in c for c in between)
        assert any("show stat" in c for _, c in sent[a:b])
    assert [str(c) for c in report.changes if "keystone" in c.what and c.phase == "openstack"] == [
        "ctl1: restarted keystone", "ctl2: restarted keystone", "ctl3: restarted keystone"]


def test_a_stopped_api_with_new_files_is_started_once_not_restarted(mongo: list[FakeMongo]) -> None:
    from hastack.render.openstack_run import unit_path
    from hastack.spec.catalog import daemons_for

    glance = next(d for d in daemons_for(SPEC.openstack.services) if d.project == "glance")
    hosts = cluster(SPEC, SECRETS)
    hosts["ctl2"].units.discard(glance.unit)
    hosts["ctl2"].files.pop(unit_path(glance))  # a first deploy of it there: its unit file is new
    report = deploy(hosts)
    mine = [str(c) for c in report.changes if c.phase == "openstack"]
    assert mine == ["ctl2: started glance-api"]
    assert "systemctl restart glance-api" not in hosts["ctl2"].log


def test_a_file_an_interrupted_deploy_placed_is_still_acted_on(mongo: list[FakeMongo]) -> None:
    """The deploy before placed haproxy.cfg on ctl2 and stopped before it reloaded haproxy (seen in
    the lab: the next deploy found every file as rendered, changed nothing, and haproxy ran the old
    settings for good). Its record on the host makes this deploy reload it, then forget it."""
    hosts = cluster(SPEC, SECRETS, ctl2={shlex.join(["cat", PENDING_PATH]): Result(0, f"{HAPROXY_CONF}\n", "")})
    hosts["ctl2"].units.add("haproxy")
    report = deploy(hosts)
    assert [str(c) for c in report.changes] == [
        f"ctl2: {HAPROXY_CONF} (placed by a deploy that did not finish)", "ctl2: reloaded haproxy"]
    assert "systemctl reload haproxy" in hosts["ctl2"].log
    assert hosts["ctl2"].log[-1] == f"rm -rf {PENDING_PATH} {PENDING_BEFORE}"  # once every phase ran
    assert not [c for h in ("ctl1", "ctl3") for c in hosts[h].log if PENDING_PATH in c and c.startswith("rm")]


def test_a_file_is_recorded_as_owed_before_it_is_written(mongo: list[FakeMongo]) -> None:
    hosts = cluster(SPEC, SECRETS)
    hosts["ctl1"].files.pop(HAPROXY_CONF)  # a new haproxy.cfg lands on ctl1
    hosts["ctl1"].units.add("haproxy")
    deploy(hosts)
    log = hosts["ctl1"].log
    owe = next(i for i, c in enumerate(log) if PENDING_PATH in c and c.startswith("sh -c") and HAPROXY_CONF in c)
    write = next(i for i, c in enumerate(log) if "O_EXCL" in c and HAPROXY_CONF in c)
    reload = log.index("systemctl reload haproxy")
    assert owe < write < reload < log.index(f"rm -rf {PENDING_PATH} {PENDING_BEFORE}")
    # haproxy's reload does not depend on what the file held: nothing kept beside the record.
    assert not [c for c in log if PENDING_BEFORE + HAPROXY_CONF in c]


def older_corosync_conf() -> str:
    """The example's corosync.conf with another token: a change corosync takes by a reload."""
    slower = variant(timing={"corosync_token_ms": 4000})
    return render_all(slower, complete(slower, {})[0])["ctl2"][COROSYNC_CONF].content.decode()


def test_an_interrupted_corosync_change_is_reloaded_by_the_next_deploy(mongo: list[FakeMongo]) -> None:
    """The deploy before placed a new corosync.conf on ctl2, kept the one corosync runs with beside its
    record, and stopped. The file is as rendered now; the kept one says how to apply it: a reload."""
    old = older_corosync_conf()
    hosts = cluster(SPEC, SECRETS, ctl2={shlex.join(["cat", PENDING_PATH]): Result(0, f"{COROSYNC_CONF}\n", ""),
                                         shlex.join(["cat", PENDING_BEFORE + COROSYNC_CONF]): Result(0, old, "")})
    report = deploy(hosts)
    assert [str(c) for c in report.changes if c.phase == "files"] == [
        f"ctl2: {COROSYNC_CONF} (placed by a deploy that did not finish)"]
    reloads = [c for h in hosts.values() for c in h.log if c == "corosync-cfgtool -R"]
    assert reloads == ["corosync-cfgtool -R"]  # one reload reaches every node
    assert not [c for c in commands(hosts) if c.startswith("systemctl restart corosync")]
    assert hosts["ctl2"].log[-1] == f"rm -rf {PENDING_PATH} {PENDING_BEFORE}"


def test_the_content_a_file_replaces_is_kept_before_it_is_written(mongo: list[FakeMongo]) -> None:
    old = older_corosync_conf()
    hosts = cluster(SPEC, SECRETS, ctl1={shlex.join(["cat", COROSYNC_CONF]): Result(0, old, "")})
    hosts["ctl1"].files.pop(COROSYNC_CONF)  # what ctl1 holds differs from the rendered file
    deploy(hosts)
    log = hosts["ctl1"].log
    keep = next(i for i, c in enumerate(log) if c.startswith("sh -c") and PENDING_BEFORE + COROSYNC_CONF in c)
    owe = next(i for i, c in enumerate(log) if c.startswith("sh -c") and PENDING_PATH + " " in c
               and COROSYNC_CONF in c)
    write = next(i for i, c in enumerate(log) if "O_EXCL" in c and COROSYNC_CONF in c)
    assert keep < owe < write < log.index("corosync-cfgtool -R")
    assert hosts["ctl1"].stdin[keep] == old  # what corosync runs with, not the new file
