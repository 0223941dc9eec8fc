"""Loading: good specs load, bad input fails with file, line, field and a fix."""

from __future__ import annotations

import copy

import pytest

from hastack.spec.errors import SpecLoadError
from hastack.spec.load import load_spec, parse_spec
from tests.helpers import SEED, THREE, raw, spec_from


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


def errors_of(text: str) -> list[str]:
    with pytest.raises(SpecLoadError) as exc:
        parse_spec(text, "bad.yaml")
    return [e.render() for e in exc.value.errors]


def test_examples_load_with_placement_filled_in() -> None:
    three = load_spec(THREE)
    assert three.corosync.nodes == ("ctl1", "ctl2", "ctl3")
    assert three.galera.nodes == ("ctl1", "ctl2", "ctl3")
    assert three.galera.arbitrator is None
    assert three.rabbitmq.nodes == ("ctl1", "ctl2", "ctl3")
    assert three.haproxy.nodes == ("ctl1", "ctl2", "ctl3")
    assert "keystone" in three.haproxy.services and "glance-registry" not in three.haproxy.services
    seed = load_spec(SEED)
    assert seed.corosync.nodes == ("ctl1", "ctl2", "arb1")  # the voting node votes in corosync
    assert seed.galera.arbitrator == "arb1"
    assert seed.mongodb.arbiter == "arb1"
    assert [m.priority for m in seed.mongodb.members] == [3, 1]


def test_spec_is_immutable() -> None:
    spec = load_spec(THREE)
    with pytest.raises(Exception, match="frozen"):
        spec.cluster = "other"  # type: ignore[misc]


def test_yaml_syntax_error_has_line() -> None:
    [msg] = errors_of("cluster: x\nnodes: [\n  - name: a\n")
    assert msg.startswith("bad.yaml:")
    assert "not valid YAML" in msg


def test_unknown_field_names_line_and_suggests() -> None:
    text = THREE.read_text().replace("  fencing: true", "  fenceing: true")
    [msg] = errors_of(text)
    assert msg.startswith(f"bad.yaml:{line_of(text, 'fenceing')}:")
    assert "pacemaker.fenceing: unknown field 'fenceing'" in msg
    assert "did you mean 'fencing'" in msg


def test_duplicate_yaml_key_is_an_error() -> None:
    text = THREE.read_text().replace("cluster: openstack", "cluster: openstack\ncluster: other")
    msgs = errors_of(text)
    assert any("appears twice" in m and "bad.yaml:" in m for m in msgs)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "ctl1\nbind 0.0.0.0"),
        ("name", "ctl1; rm -rf /"),
        ("name", "Ctl1"),
        ("name", "ctl 1"),
        ("interface", "eth0 up"),
        ("interface", "eth0\"x"),
    ],
)
def test_injection_in_node_fields_is_rejected(field: str, value: str) -> None:
    data = raw()
    data["nodes"][0][field] = value
    with pytest.raises(SpecLoadError) as exc:
        spec_from(data)
    err = exc.value.errors[0]
    assert err.field == f"nodes[0].{field}"
    assert err.hint  # says what is allowed


@pytest.mark.parametrize("value", ["a b", "x'y", 'x"y', "$(reboot)", "a`b`", "a\nb", "a;b", ""])
def test_injection_in_fence_params_is_rejected(value: str) -> None:
    data = raw()
    data["nodes"][0]["fence"]["params"]["username"] = value
    with pytest.raises(SpecLoadError) as exc:
        spec_from(data)
    assert exc.value.errors[0].field == "nodes[0].fence.params.username"


def test_error_points_at_the_offending_line() -> None:
    text = THREE.read_text().replace("address: 10.77.0.12", "address: 10.77.0.300")
    [msg] = errors_of(text)
    assert msg.startswith(f"bad.yaml:{line_of(text, '10.77.0.300')}:")
    assert "nodes[1].address" in msg


def test_duplicate_addresses_are_rejected() -> None:
    data = raw()
    data["nodes"][1]["address"] = data["nodes"][0]["address"]
    data["nodes"][2]["heartbeat"][0] = data["nodes"][0]["heartbeat"][0]
    data["vips"][0]["address"] = "10.77.0.21"
    with pytest.raises(SpecLoadError) as exc:
        spec_from(data)
    fields = {e.field for e in exc.value.errors}
    assert {"nodes[1].address", "nodes[2].heartbeat[0]", "vips[0].address"} <= fields


def test_vip_outside_its_network() -> None:
    data = raw()
    data["vips"][0]["address"] = "10.78.0.10"
    with pytest.raises(SpecLoadError) as exc:
        spec_from(data)
    [err] = exc.value.errors
    assert err.field == "vips[0].address"
    assert "outside its network 10.77.0.0/24" in err.message


def test_vip_on_network_address_is_rejected() -> None:
    data = raw()
    data["vips"][0]["address"] = "10.77.0.255"
    with pytest.raises(SpecLoadError):
        spec_from(data)


def test_heartbeat_must_match_links() -> None:
    data = raw()
    data["nodes"][0]["heartbeat"] = ["10.77.1.11"]
    data["nodes"][1]["heartbeat"][1] = "10.77.9.12"
    with pytest.raises(SpecLoadError) as exc:
        spec_from(data)
    fields = {e.field for e in exc.value.errors}
    assert {"nodes[0].heartbeat", "nodes[1].heartbeat[1]"} <= fields


def test_references_to_unknown_nodes() -> None:
    data = raw()
    data["galera"]["writer"] = "ctl9"
    data["mongodb"]["members"][0]["node"] = "nope"
    data["rabbitmq"]["nodes"] = ["ctl1", "ctl1", "ctl2"]
    with pytest.raises(SpecLoadError) as exc:
        spec_from(data)
    by_field = {e.field: e.message for e in exc.value.errors}
    assert "is not a node of this spec" in by_field["galera.writer"]
    assert "is not a node of this spec" in by_field["mongodb.members[0].node"]
    assert "listed 2 times" in by_field["rabbitmq.nodes"]


def test_writer_must_run_galera() -> None:
    data = raw()
    data["galera"]["writer"] = "compute1"
    with pytest.raises(SpecLoadError, match=r"not one of galera\.nodes"):
        spec_from(data)


def test_unknown_service_and_endpoint() -> None:
    data = raw()
    data["openstack"]["services"] = ["keystone", "novaa"]
    data["haproxy"] = {"services": ["keystone", "glance-regisry"]}
    with pytest.raises(SpecLoadError) as exc:
        spec_from(data)
    fields = {e.field for e in exc.value.errors}
    assert {"openstack.services[1]", "haproxy.services[1]"} <= fields


def test_missing_required_field() -> None:
    data = copy.deepcopy(raw())
    del data["networks"]
    with pytest.raises(SpecLoadError) as exc:
        spec_from(data)
    assert exc.value.errors[0].field == "networks"
    assert "required" in exc.value.errors[0].message


def test_not_a_mapping() -> None:
    [msg] = errors_of("- just\n- a list\n")
    assert "must be a YAML mapping" in msg


def test_all_errors_reported_at_once_in_file_order() -> None:
    data = raw()
    data["nodes"][0]["interface"] = "bad name"
    data["nodes"][3]["address"] = "nonsense"
    with pytest.raises(SpecLoadError) as exc:
        spec_from(data)
    lines = [e.line for e in exc.value.errors]
    assert len(lines) == 2 and lines == sorted(lines)


def test_unreadable_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecLoadError, match="cannot read the spec"):
        load_spec(tmp_path / "missing.yaml")


def test_enabled_component_without_nodes() -> None:
    data = raw()
    for n in data["nodes"]:
        n["roles"] = ["network"] if "controller" in n["roles"] else n["roles"]
    for key in ("galera", "mongodb"):
        data[key] = {}
    with pytest.raises(SpecLoadError) as exc:
        spec_from(data)
    by_field = {e.field: e for e in exc.value.errors}
    assert "galera is enabled but has no nodes" in by_field["galera.nodes"].message
    assert "galera.enabled: false" in by_field["galera.nodes"].hint
    assert "mongodb is enabled but has no members" in by_field["mongodb.members"].message
    assert "rabbitmq.nodes" in by_field and "haproxy.nodes" in by_field
