"""Recovery's facts and acts over fake hosts: what it reads from a crashed node, and the commands each step sends."""

from __future__ import annotations

import asyncio
import shlex
from typing import Any, cast

import pytest

from hastack.components.fact import shell
from hastack.components.galera import GRASTATE, RUNNING, STATUS, TRANSFER
from hastack.components.mongodb import set_hosts
from hastack.components.systemd import unit_age
from hastack.credentials.model import complete
from hastack.hosts.ssh import Result, SshHost
from hastack.recovery import galera, mongodb, rabbitmq
from hastack.recovery import run as rec
from hastack.recovery.decision import Action, Outcome
from hastack.spec.load import load_spec
from tests.helpers import SEED, THREE
from tests.unit.fake_cluster import FIXTURES, FakeHost, cluster

SPEC = load_spec(THREE)
SECRETS = complete(SPEC, {})[0]
PRIMARY = Result(0, (FIXTURES / "galera_wsrep_status.tsv").read_text(), "")
NOT_PRIMARY = Result(0, (FIXTURES / "galera_wsrep_status.tsv").read_text().replace("\tPrimary", "\tnon-Primary"), "")
STOPPED = {RUNNING.command: Result(1, "", ""),
           unit_age("mariadb").command: Result(0, (FIXTURES / "systemd_unit_age_inactive.txt").read_text(), ""),
           GRASTATE.command: Result(0, (FIXTURES / "galera_grastate_crashed.dat").read_text(), ""),
           "galera_recovery": Result(0, (FIXTURES / "galera_recovery_stdout.txt").read_text(), "")}


def hosts_of(fakes: dict[str, FakeHost]) -> dict[str, SshHost]:
    return cast(dict[str, SshHost], fakes)


def sent(host: FakeHost, argv: tuple[str, ...] | list[str]) -> bool:
    return shlex.join(argv) in host.log


def test_a_crashed_node_is_read_for_its_last_commit_and_a_running_one_for_its_state() -> None:
    fakes = cluster(SPEC, SECRETS, ctl3=STOPPED)
    facts = {f.name: f for f in asyncio.run(rec.galera_facts(SPEC, hosts_of(fakes), {"ctl2": "timed out"}, {}))}
    assert facts["ctl3"].running is False and facts["ctl3"].recovered is not None
    assert facts["ctl3"].grastate is not None and facts["ctl3"].grastate.seqno < 0
    assert facts["ctl2"].reachable is False and facts["ctl2"].error == "timed out"
    assert facts["ctl1"].state is not None and facts["ctl1"].state.local_state == "Synced"
    assert "galera_recovery" not in fakes["ctl1"].log  # a running node's position comes from its status


def test_a_failed_wsrep_recover_is_an_error_on_that_node_not_a_position() -> None:
    fakes = cluster(SPEC, SECRETS, ctl3={**STOPPED, "galera_recovery": Result(1, "", "InnoDB: corrupt page\n")})
    facts = {f.name: f for f in asyncio.run(rec.galera_facts(SPEC, hosts_of(fakes), {}, {}))}
    assert facts["ctl3"].recovered is None and "InnoDB: corrupt page" in facts["ctl3"].error


def test_a_silent_node_is_timed_from_its_first_look_and_bytes_arriving_restart_the_clock() -> None:
    silent = {STATUS.command: Result(124, "", "")}
    feeds = iter(["10", "10", "99"])
    fakes = cluster(SPEC, SECRETS, ctl2=silent)
    quiet: rec.Quiet = {}
    transfer = TRANSFER.command

    def look() -> float:
        bytes_in = next(feeds)
        seen = (FIXTURES / "ss_tin_state_transfer.txt").read_text()
        fakes["ctl2"].answers[transfer] = Result(0, seen.replace("received:100000", f"received:{bytes_in}"), "")
        return {f.name: f for f in asyncio.run(rec.galera_facts(SPEC, hosts_of(fakes), {}, quiet))}["ctl2"].silent_s

    first = look()
    quiet["ctl2"] = (quiet["ctl2"][0] - 50, quiet["ctl2"][1])  # 50 s pass with the same bytes
    assert first == 0 and look() >= 50
    assert look() < 1  # bytes arrived: it is being fed, the silence starts over


def test_a_stop_decided_without_a_primary_is_dropped_when_one_formed_meanwhile() -> None:
    fakes = cluster(SPEC, SECRETS)  # every member Synced in a primary component
    shown: list[str] = []
    d = galera.Decision(Outcome.BOOTSTRAP, "no primary", (Action(galera.Step.STOP, "ctl2"),))
    asyncio.run(rec.apply_galera(SPEC, d, hosts_of(fakes), shown.append))
    assert shown == ["galera: a primary component formed meanwhile; deciding again"]
    assert not [c for c in fakes["ctl2"].log if "systemctl stop" in c]


def test_a_bootstrap_marks_safe_starts_the_chosen_node_and_waits_for_its_primary() -> None:
    fakes = cluster(SPEC, SECRETS, **{n: {STATUS.command: NOT_PRIMARY} for n in ("ctl1", "ctl2", "ctl3")})
    d = galera.Decision(Outcome.BOOTSTRAP, "all down", (
        Action(galera.Step.STOP, "ctl2"), Action(galera.Step.MARK_SAFE, "ctl1"), Action(galera.Step.BOOTSTRAP, "ctl1")))
    shown: list[str] = []

    async def go() -> None:
        task = asyncio.create_task(rec.apply_galera(SPEC, d, hosts_of(fakes), shown.append))
        while not sent(fakes["ctl1"], shell("systemctl reset-failed mariadb; galera_new_cluster")):
            await asyncio.sleep(0.01)
        fakes["ctl1"].answers[STATUS.command] = PRIMARY  # the bootstrapped node forms a primary component
        await asyncio.wait_for(task, 10)

    asyncio.run(go())
    assert shown == ["galera: stop ctl2", "galera: mark-safe ctl1", "galera: bootstrap ctl1"]
    assert [c for c in fakes["ctl2"].log if c.startswith("sh -c 'timeout 10 systemctl stop mariadb")]
    assert [c for c in fakes["ctl1"].log if c.startswith("sed -i 's/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/'")]


def test_a_join_that_never_reaches_synced_times_out_with_what_it_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = cluster(SPEC, SECRETS, ctl3={STATUS.command: NOT_PRIMARY})
    real_until = rec._until
    monkeypatch.setattr(rec, "_until", lambda check, timeout, what: real_until(check, 0.3, what))
    d = galera.Decision(Outcome.REJOIN, "ctl3 out", (Action(galera.Step.JOIN, "ctl3"),))
    with pytest.raises(rec.RecoverError, match="ctl3 to be Synced in the primary component"):
        asyncio.run(rec.apply_galera(SPEC, d, hosts_of(fakes), lambda _: None))
    assert sent(fakes["ctl3"], shell("systemctl reset-failed mariadb; systemctl start mariadb"))


def test_an_action_on_a_host_that_does_not_answer_is_an_error_naming_it() -> None:
    d = galera.Decision(Outcome.REJOIN, "ctl3 out", (Action(galera.Step.JOIN, "ctl3"),))
    with pytest.raises(rec.RecoverError, match="ctl3: not reachable for `join ctl3`"):
        asyncio.run(rec.apply_galera(SPEC, d, {}, lambda _: None))


def test_garbd_is_restarted_only_while_the_cluster_misses_it() -> None:
    seed = load_spec(SEED)
    secrets = complete(seed, {})[0]
    two = Result(0, (FIXTURES / "galera_wsrep_status.tsv").read_text().replace("wsrep_cluster_size\t3",
                                                                                "wsrep_cluster_size\t2"), "")
    d = galera.Decision(Outcome.REJOIN, "garbd out", (Action(galera.Step.GARBD, "arb1"),))
    whole = cluster(seed, secrets)  # size 3: the two members and garbd
    asyncio.run(rec.apply_galera(seed, d, hosts_of(whole), lambda _: None))
    assert not [c for c in whole["arb1"].log if "restart garb" in c]
    missing = cluster(seed, secrets, ctl1={STATUS.command: two}, ctl2={STATUS.command: two})

    async def go() -> None:
        task = asyncio.create_task(rec.apply_galera(seed, d, hosts_of(missing), lambda _: None))
        while not sent(missing["arb1"], shell("systemctl reset-failed garb; systemctl restart garb")):
            await asyncio.sleep(0.01)
        missing["ctl1"].answers[STATUS.command] = PRIMARY  # garbd counted again
        await asyncio.wait_for(task, 10)

    asyncio.run(go())


def test_rabbitmq_steps_are_sent_where_they_run() -> None:
    fakes = cluster(SPEC, SECRETS)
    d = rabbitmq.Decision(Outcome.REJOIN, "two down", (
        rabbitmq.Action(rabbitmq.Step.START, "ctl2"), rabbitmq.Action(rabbitmq.Step.FORCE_BOOT, "ctl3"),
        rabbitmq.Action(rabbitmq.Step.FORGET, "rabbit@ctl3", on="ctl1"),
        rabbitmq.Action(rabbitmq.Step.RESTART, "ctl1")))
    shown: list[str] = []
    asyncio.run(rec.apply_rabbit(d, hosts_of(fakes), shown.append))
    assert sent(fakes["ctl2"], shell("systemctl reset-failed rabbitmq-server; systemctl start --no-block "
                                     "rabbitmq-server"))
    assert sent(fakes["ctl3"], ["rabbitmqctl", "force_boot"])
    assert sent(fakes["ctl1"], ["rabbitmqctl", "forget_cluster_node", "rabbit@ctl3"])
    assert sent(fakes["ctl1"], ["systemctl", "restart", "--no-block", "rabbitmq-server"])
    assert shown[2] == "rabbitmq: forget rabbit@ctl3 (on ctl1)"


def test_a_rabbit_node_whose_app_neither_runs_nor_boots_is_read_as_stalled() -> None:
    stuck = (FIXTURES / "rabbitmq_cluster_status_boot_stuck.json").read_text()
    from hastack.components.rabbitmq import BOOT_STATE, CLUSTER
    fakes = cluster(SPEC, SECRETS, ctl2={CLUSTER.command: Result(0, stuck, ""),
                                         BOOT_STATE.command: Result(0, "{false,false}\n", "")},
                    ctl3={CLUSTER.command: Result(69, "", "Error: unable to perform an operation on node\n")})
    facts = {f.name: f for f in asyncio.run(rec.rabbit_facts(SPEC, hosts_of(fakes), {}))}
    assert facts["ctl1"].view is not None and not facts["ctl1"].stalled
    assert facts["ctl2"].stalled
    assert facts["ctl3"].view is None and "unable to perform an operation" in facts["ctl3"].error


def test_mongod_is_started_without_blocking_on_each_node_named() -> None:
    fakes = cluster(SPEC, SECRETS)
    d = mongodb.Decision(Outcome.REJOIN, "ctl2 down", (mongodb.Action(mongodb.Step.START, "ctl2"),))
    asyncio.run(rec.apply_mongo(d, hosts_of(fakes), lambda _: None))
    assert sent(fakes["ctl2"], shell("systemctl reset-failed mongod; systemctl start --no-block mongod"))


def test_the_set_names_members_and_the_arbiter_by_address_and_port() -> None:
    seed = load_spec(SEED)
    names: dict[str, Any] = set_hosts(seed)
    assert set(names) == {"ctl1", "ctl2", "arb1"}
    assert names["arb1"] == f"{seed.node('arb1').address}:27017"
