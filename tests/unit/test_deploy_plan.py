"""Deploy's pure plans: what each phase does from what the hosts showed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hastack.components.galera import GaleraState
from hastack.deploy.phases import cib, corosync, galera
from hastack.deploy.plan import PhaseKey, phases
from hastack.deploy.run import APPLY
from hastack.render import render_all
from tests.helpers import SEED, secrets_for, variant
from tests.unit.test_corosync_conf import conf


def test_the_deploy_plan_reloads_once_restarts_for_a_new_key_and_leaves_stopped_nodes_alone() -> None:
    base, fast = conf(variant()), conf(variant(timing={"profile": "fast"}))
    hosts = ("ctl1", "ctl2", "ctl3")
    every = set(hosts)
    running = {"ctl1": True, "ctl2": True, "ctl3": False}
    todo = corosync.plan(running, dict.fromkeys(hosts, base), dict.fromkeys(hosts, fast), every, set())
    assert todo.reload is not None and todo.reload[0] == "ctl1" and "token" in todo.reload[1]
    assert todo.restart == {}
    keyed = corosync.plan(running, dict.fromkeys(hosts, base), dict.fromkeys(hosts, base), set(), every)
    assert keyed.reload is None and keyed.restart == {"ctl1": "a new authkey", "ctl2": "a new authkey"}
    assert corosync.plan(running, dict.fromkeys(hosts, base), dict.fromkeys(hosts, base), set(), set()) == \
        type(todo)(None, {})


def test_every_phase_has_its_apply() -> None:
    assert set(APPLY) == set(PhaseKey)


def test_the_galera_plan_joins_the_rest_and_rolls_a_changed_config_writer_last() -> None:
    def st(state: str) -> GaleraState:
        return GaleraState(3, "Primary", state, True, True, "u", 10)

    nodes = ["ctl1", "ctl2", "ctl3"]
    first = galera.plan(nodes, {"ctl1": st("Synced")}, "ctl1", set())
    assert first.join == ("ctl2", "ctl3") and first.restart == () and first.synced == ("ctl1",)
    rolling = galera.plan(nodes, dict.fromkeys(nodes, st("Synced")), "ctl1", set(nodes))
    assert rolling.join == () and rolling.restart == ("ctl2", "ctl3", "ctl1")  # the primary last
    alone = galera.plan(["ctl1"], {"ctl1": st("Synced")}, "ctl1", {"ctl1"})
    assert alone.restart == () and alone.defer == ("ctl1",)  # never restart the only node


def test_the_cib_plan_loads_when_resources_differ_or_the_file_changed_and_reloads_changed_haproxies() -> None:
    from hastack.credentials.model import complete
    from hastack.deploy.context import CIB_PATH
    from hastack.render import render_all

    spec = variant()
    desired = render_all(spec, complete(spec, {})[0])["ctl1"][CIB_PATH].content
    root = ET.fromstring(desired)
    resources = root.find("configuration/resources")
    assert resources is not None
    live = ET.tostring(resources).decode()
    same = cib.plan(desired, live, False, {"ctl1": False, "ctl2": True})
    assert same == cib.CibPlan(None, ("ctl2",))
    assert cib.plan(desired, live, True, {}).load == "the rendered CIB changed"
    vip = next(el for el in resources.iter("primitive") if el.get("id", "").startswith("vip-"))
    for parent in resources.iter():
        if vip in list(parent):
            parent.remove(vip)
    missing = cib.plan(desired, ET.tostring(resources).decode(), False, {})
    assert missing.load == f"resources differ: +{vip.get('id')}"
    assert cib.plan(desired, None, False, {}).load is not None and "+" in str(cib.plan(desired, None, False, {}).load)


def test_instance_ha_starts_pacemaker_remote_before_the_cib_names_the_computes() -> None:
    spec = variant(SEED, instance_ha={"enabled": True})
    plan = phases(spec)
    keys = [p.key for p in plan]
    assert keys.index(PhaseKey.REMOTE) < keys.index(PhaseKey.CIB)
    remote = next(p for p in plan if p.key is PhaseKey.REMOTE)
    assert remote.hosts == ("compute1", "compute2")
    # The evacuator's controllers get the agent bundle; the voting node runs neither.
    agent = next(p for p in plan if p.key is PhaseKey.AGENT)
    assert set(agent.hosts) == {"ctl1", "ctl2"} and "evacuator" in agent.what
    cib = ET.fromstring(render_all(spec, secrets_for(spec))["ctl1"]["/etc/hastack/cib.xml"].content)
    bans = {(c.get("rsc"), c.get("node")) for c in cib.iter("rsc_location") if c.get("score") == "-INFINITY"}
    assert ("evacuator", "arb1") in bans and ("evacuator", "compute1") in bans
    assert ("haproxy-clone", "compute2") in bans and ("vip-internal", "compute2") in bans
    # A compute's device turns it off when pacemaker fences it (the evacuator powers it on once its
    # evacuations are done); the members' devices still reboot theirs.
    devices = {p.get("id"): {a.get("name"): a.get("value") for a in p.iter("nvpair")}
               for p in cib.iter("primitive") if p.get("class") == "stonith"}
    assert devices["fence-compute1"]["pcmk_reboot_action"] == "off"
    assert "pcmk_reboot_action" not in devices["fence-ctl1"]
    assert phases(variant(SEED)) == tuple(p for p in phases(variant(SEED)) if p.key is not PhaseKey.REMOTE)


def test_a_phase_error_without_words_is_named_by_its_kind() -> None:
    import asyncssh

    from hastack.common.errors import described

    assert described(asyncssh.ConnectionLost("")) == "ConnectionLost (no message)"
    assert described(OSError(113, "No route to host")) == "[Errno 113] No route to host"
