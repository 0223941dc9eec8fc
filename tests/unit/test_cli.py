"""The command line: exit codes, JSON, friendly errors, secrets never printed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import asyncssh
import pytest
from click.testing import CliRunner

from hastack.cli import main
from tests.helpers import SEED, THREE


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def copy_spec(tmp_path: Path, src: Path = THREE, text: str | None = None) -> Path:
    dst = tmp_path / src.name
    if text is None:
        shutil.copy(src, dst)
    else:
        dst.write_text(text)
    return dst


def test_check_clean_and_seed_exit_zero() -> None:
    assert run("check", str(THREE))[0] == 0
    code, out = run("check", str(SEED))
    assert code == 0 and "HA202" in out and "why:" in out and "fix:" in out


def test_check_fail_on_warning() -> None:
    assert run("check", str(SEED), "--fail-on", "warning")[0] == 1


def test_check_json(tmp_path: Path) -> None:
    code, out = run("check", str(SEED), "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["counts"]["warning"] == 3
    assert {f["code"] for f in doc["findings"] if not f.get("waived")} == {"HA202", "HA303", "HA402"}


def test_check_errors_exit_one(tmp_path: Path) -> None:
    spec = copy_spec(tmp_path, text=THREE.read_text().replace("fencing: true", "fencing: false"))
    code, out = run("check", str(spec))
    assert code == 1 and "HA110" in out


def test_bad_spec_exit_two_with_location(tmp_path: Path) -> None:
    spec = copy_spec(tmp_path, text=THREE.read_text().replace("address: 10.77.0.10", "address: 10.99.0.10"))
    code, out = run("check", str(spec))
    assert code == 2
    assert f"{spec}:" in out and "vips[0].address" in out and "fix:" in out
    assert "Traceback" not in out


def test_bad_spec_json(tmp_path: Path) -> None:
    spec = copy_spec(tmp_path, text=THREE.read_text().replace("name: ctl2", "name: ctl 2"))
    code, out = run("check", str(spec), "--format", "json")
    doc = json.loads(out)
    assert code == 2 and doc["input_errors"][0]["field"] == "nodes[1].name"
    assert doc["input_errors"][0]["line"] > 1


def test_list_rules() -> None:
    code, out = run("check", "--list", "--format", "json")
    assert code == 0 and len(json.loads(out)) >= 15


def test_render_writes_tree_and_never_prints_secrets(tmp_path: Path) -> None:
    spec = copy_spec(tmp_path)
    out_dir = tmp_path / "out"
    code, out = run("render", str(spec), "-o", str(out_dir))
    assert code == 0, out
    secrets_text = (tmp_path / "three-controller.secrets.yaml").read_text()
    values = [line.split(": ", 1)[1] for line in secrets_text.splitlines() if ": " in line]
    assert values and not any(v in out for v in values)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["ctl1"]["/etc/corosync/authkey"]["mode"] == "0400"
    authkey = out_dir / "ctl1/etc/corosync/authkey"
    assert authkey.stat().st_mode & 0o777 == 0o400
    # Second render: same secrets, same bytes.
    first = (out_dir / "ctl1/etc/haproxy/haproxy.cfg").read_bytes()
    code, out = run("render", str(spec), "-o", str(out_dir), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["secrets_generated"] == []
    assert (out_dir / "ctl1/etc/haproxy/haproxy.cfg").read_bytes() == first


def test_render_refuses_blocking_findings(tmp_path: Path) -> None:
    spec = copy_spec(tmp_path, text=THREE.read_text().replace("fencing: true", "fencing: false"))
    code, out = run("render", str(spec), "-o", str(tmp_path / "out"))
    assert code == 1 and "HA110" in out and "waive" in out
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "three-controller.secrets.yaml").exists()


def test_render_with_waiver(tmp_path: Path) -> None:
    text = THREE.read_text().replace("fencing: true", "fencing: false")
    text = text.replace("waivers:\n", "waivers:\n  - {code: HA110, reason: \"no fence device in this test rig\"}\n")
    spec = copy_spec(tmp_path, text=text)
    code, out = run("render", str(spec), "-o", str(tmp_path / "out"))
    assert code == 0, out


def test_a_command_without_known_hosts_refuses_before_connecting(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("not used\n")
    for cmd in ("status", "deploy", "recover"):
        code, out = run(cmd, str(THREE), "--ssh-key", str(key), "--known-hosts", str(tmp_path / "none"))
        assert code == 2 and "no known_hosts file" in out and "hastack trust" in out, (cmd, out)


def test_trust_names_hosts_it_cannot_reach_and_records_nothing(tmp_path: Path) -> None:
    # Loopback addresses where nothing listens on port 22: refused at once.
    spec = copy_spec(tmp_path, THREE, THREE.read_text().replace("10.77.0.", "127.0.0."))
    known = tmp_path / "known_hosts"
    code, out = run("trust", str(spec), "--known-hosts", str(known), "--yes", "--json")
    report = json.loads(out)
    assert code == 3 and report["recorded"] == 0 and not known.exists()
    assert {h["state"] for h in report["hosts"]} == {"unreachable"} and all(h["error"] for h in report["hosts"])


def test_docs_checks_md_is_the_rule_lists_output() -> None:
    code, out = run("check", "--list", "--format", "markdown")
    assert code == 0 and out.count("\n### HA") >= 50
    docs = (Path(__file__).resolve().parents[2] / "docs" / "checks.md").read_text()
    assert docs == out, ("docs/checks.md differs from the rule table: run "
                         "`hastack check --list --format markdown > docs/checks.md`")


def test_markdown_is_only_for_the_rule_list() -> None:
    code, out = run("check", str(THREE), "--format", "markdown")
    assert code == 2 and "--list" in out


def test_a_lab_on_this_machine_changes_nothing_without_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real cluster named like a lab here was deployed with the lab's fence agent and key. Not any more."""
    from hastack import cli
    from hastack.lab.runtime import LabDirs
    from hastack.spec.load import load_spec

    monkeypatch.setattr(LabDirs, "of", classmethod(lambda cls, cluster: cls(tmp_path / "lab" / cluster)))
    model = load_spec(THREE)
    dirs = LabDirs.of(model.cluster)
    dirs.root.mkdir(parents=True)
    for f in (dirs.state, dirs.known_hosts):
        f.write_text("{}" if f == dirs.state else "x\n")
    key, known = tmp_path / "id", tmp_path / "known_hosts"
    for k in (key, dirs.key):
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(k)
    known.write_text("")
    real, access = cli._target(model, cli.Reach(key, known))
    assert real == model and access.key == key and access.known_hosts == known
    assert {n.fence.agent for n in real.nodes if n.fence} == {"fence_ipmilan"}
    lab, access = cli._target(model, cli.Reach(lab=True))
    assert {n.fence.agent for n in lab.nodes if n.fence} == {"fence_hastack_lab"}
    assert (access.key, access.known_hosts) == (dirs.key, dirs.known_hosts)


def test_lab_without_a_lab_up_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hastack.lab.runtime import LabDirs

    monkeypatch.setattr(LabDirs, "of", classmethod(lambda cls, cluster: cls(tmp_path / "lab" / cluster)))
    code, out = run("status", str(THREE), "--lab")
    assert code == 2 and "no lab is up" in out


def test_lab_client_without_a_lab_says_so_and_writes_no_secrets(tmp_path: Path) -> None:
    spec = tmp_path / "nolab.yaml"
    spec.write_text(THREE.read_text().replace("cluster: openstack", "cluster: nolabofthisname"))
    rc, output = run("lab", "client", "--spec", str(spec), "--", "openstack", "token", "issue")
    assert rc == 2 and "is not up" in output and "hastack lab up" in output
    assert not list(tmp_path.glob("*.secrets.yaml"))


def test_recover_waits_for_hosts_that_do_not_answer_as_long_as_told(tmp_path: Path) -> None:
    # Loopback addresses where nothing listens on port 22: every host refuses at once, as a booting one does.
    spec = copy_spec(tmp_path, THREE, THREE.read_text().replace("10.77.0.", "127.0.0."))
    key, known = tmp_path / "id", tmp_path / "known_hosts"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(key)
    known.write_text("")
    args = ("recover", str(spec), "--only", "galera", "--ssh-key", str(key), "--known-hosts", str(known), "--json")
    code, out = run(*args, "--wait-hosts", "0")
    report = json.loads(out)
    assert code == 3 and "cannot be read" in report["refused"]["galera"], report
    assert [r["outcome"] for r in report["rounds"]] == ["refuse"], report["rounds"]
    code, out = run(*args, "--wait-hosts", "3")
    report = json.loads(out)
    assert code == 3 and "cannot be read" in report["refused"]["galera"], report
    assert report["rounds"][0]["outcome"] == "wait" and "booting" in report["rounds"][0]["reason"], report["rounds"]
    assert report["seconds"] >= 3, report


def test_a_key_file_that_is_no_private_key_is_refused_in_one_line(tmp_path: Path) -> None:
    key, known = tmp_path / "id", tmp_path / "known_hosts"
    key.write_text("not a key\n")
    known.write_text("")
    for cmd in ("status", "deploy", "recover"):
        code, out = run(cmd, str(THREE), "--ssh-key", str(key), "--known-hosts", str(known))
        assert code == 2 and f"{key}: not a usable SSH private key" in out and "Traceback" not in out, (cmd, out)
