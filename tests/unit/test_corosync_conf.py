"""What a corosync.conf change needs on a running cluster: nothing, a reload, or a restart of every node."""

from __future__ import annotations

import copy

import pytest

from hastack.components.corosync import conf_change, node_sections, parse_conf, section
from hastack.render import render_all
from hastack.spec.model import Spec
from tests.helpers import SEED, raw, secrets_for, spec_from, variant

CONF = "/etc/corosync/corosync.conf"


def conf(spec: Spec) -> str:
    return render_all(spec, secrets_for(spec))["ctl1"][CONF].content.decode()


def test_parser_reads_what_hastack_renders() -> None:
    parsed = parse_conf(conf(variant()))
    totem = section(parsed, "totem")
    assert totem["token"] == "3000" and totem["transport"] == "knet"
    nodes = node_sections(parsed)
    assert [n["name"] for n in nodes.values()] == ["ctl1", "ctl2", "ctl3"]
    assert nodes["1"]["ring1_addr"] == "10.77.2.11"
    with pytest.raises(ValueError, match="unclosed"):
        parse_conf("totem {\n token: 1\n")


def test_timing_profile_and_a_new_node_reload_without_a_restart() -> None:
    base = conf(variant())
    assert conf_change(base, base).kind == "none"
    fast = conf_change(base, conf(variant(timing={"profile": "fast"})))
    assert fast.kind == "reload" and "token" in fast.reason
    # The guide's seed cluster grows a third data node: one member more, quorum settings change.
    data = raw(SEED)
    grown = copy.deepcopy(data)
    grown["nodes"].append({"name": "ctl3", "roles": ["controller", "network"], "address": "10.77.0.14",
                           "heartbeat": ["10.77.1.14", "10.77.2.14"],
                           "fence": {"agent": "fence_ipmilan", "params": {"ip": "10.77.9.14"}}})
    change = conf_change(conf(spec_from(data)), conf(spec_from(grown)))
    assert change.kind == "reload" and "members 3 -> 4" in change.reason


def test_crypto_links_and_addresses_need_a_restart() -> None:
    base = conf(variant())
    crypto = conf_change(base, conf(variant(corosync={"crypto": False})))
    assert crypto.kind == "restart" and "crypto_cipher" in crypto.reason
    moved = raw()
    moved["nodes"][1]["heartbeat"] = ["10.77.1.42", "10.77.2.12"]
    readdressed = conf_change(base, conf(spec_from(moved)))
    assert readdressed.kind == "restart" and "ctl2" in readdressed.reason


def test_a_member_taken_out_keeps_the_others_ids_and_reloads() -> None:
    """Node ids come from the spec's `nodes`, not from `corosync.nodes`: dropping ctl2 must not
    renumber ctl3 (corosync cannot change a running node's id: that would restart every node)."""
    base = conf(variant())
    smaller = conf(variant(corosync={"nodes": ["ctl1", "ctl3"]}))
    ids = {n["name"]: n["nodeid"] for n in node_sections(parse_conf(smaller)).values()}
    assert ids == {"ctl1": "1", "ctl3": "3"}
    change = conf_change(base, smaller)
    assert change.kind == "reload" and "members 3 -> 2" in change.reason, change
    assert conf_change(smaller, base).kind == "reload"


def test_a_renumbered_member_is_refused() -> None:
    """Reordering `nodes` would renumber running members: only a restart of every node at once could do it."""
    reordered = raw()
    reordered["nodes"][1], reordered["nodes"][2] = reordered["nodes"][2], reordered["nodes"][1]
    change = conf_change(conf(variant()), conf(spec_from(reordered)))
    assert change.kind == "refuse" and "node ids would change: ctl2 2 -> 3, ctl3 3 -> 2" in change.reason, change

