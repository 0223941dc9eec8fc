"""The secrets store and the render output never follow a planted link, and reject what is not theirs."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from hastack.credentials.model import complete
from hastack.credentials.store import SecretsError, load_or_create, secrets_path
from hastack.render import render_all
from hastack.render.write import MANIFEST, OutputError, write_tree
from hastack.spec.load import load_spec
from tests.helpers import THREE
from tests.unit.test_cli import run


def spec_copy(tmp_path: Path, name: str = "cluster.yaml") -> Path:
    dst = tmp_path / name
    shutil.copy(THREE, dst)
    return dst


# --- the secrets store ---

def test_a_link_at_the_secrets_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    spec = spec_copy(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    victim.chmod(0o600)
    secrets_path(spec).symlink_to(victim)
    with pytest.raises(SecretsError, match="not a link"):
        load_or_create(load_spec(spec), spec)
    assert victim.read_text() == "keep\n"


def test_a_link_at_the_old_temporary_name_receives_nothing(tmp_path: Path) -> None:
    spec = spec_copy(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    Path(f"{secrets_path(spec)}.tmp").symlink_to(victim)  # where the old store wrote first
    _, added, path = load_or_create(load_spec(spec), spec)
    assert added and victim.read_text() == "keep\n"
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == ["cluster.secrets.yaml.tmp"]


def test_a_secrets_file_that_is_not_yaml_says_so(tmp_path: Path) -> None:
    spec = spec_copy(tmp_path)
    path = secrets_path(spec)
    path.write_text("a: [unclosed\n")
    path.chmod(0o600)
    with pytest.raises(SecretsError, match="not valid YAML at line 2"):
        load_or_create(load_spec(spec), spec)


def test_a_secret_with_a_newline_is_refused_by_name_not_shown(tmp_path: Path) -> None:
    spec = spec_copy(tmp_path)
    good = dict(complete(load_spec(spec), {})[0].data)
    good["haproxy_stats_password"] = "abc\nlisten evil\n  bind :22"
    path = secrets_path(spec)
    path.write_text(yaml.safe_dump(good))
    path.chmod(0o600)
    with pytest.raises(SecretsError) as exc:
        load_or_create(load_spec(spec), spec)
    assert "haproxy_stats_password" in str(exc.value) and "listen evil" not in str(exc.value)
    code, out = run("render", str(spec), "-o", str(tmp_path / "out"))  # the command: exit 2, one message
    assert code == 2 and "haproxy_stats_password" in out and "Traceback" not in out


def test_a_spec_name_with_a_newline_keeps_the_header_a_comment(tmp_path: Path) -> None:
    spec = spec_copy(tmp_path, "odd\nname.yaml")
    _, _, path = load_or_create(load_spec(spec), spec)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# hastack secrets for odd?name.yaml")
    assert all(not ln or ln.startswith("#") or ":" in ln for ln in lines)
    assert load_or_create(load_spec(spec), spec)[1] == ()  # it reads back whole


# --- the render output ---

def render(spec: Path, out: Path) -> int:
    model = load_spec(spec)
    return write_tree(render_all(model, complete(model, {})[0]), out)


def test_the_output_is_private_and_a_rerender_leaves_no_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render(THREE, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    stale = out / "ctl1" / "etc" / "heat" / "old-password.conf"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("password = hunter2\n")
    count = render(THREE, out)
    assert not stale.exists() and count == sum(1 for p in out.rglob("*") if p.is_file()) - 1  # + manifest
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing left beside it


def test_a_link_planted_in_an_earlier_render_is_not_written_through(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render(THREE, out)
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    authkey = out / "ctl1" / "etc" / "corosync" / "authkey"
    authkey.unlink()
    authkey.symlink_to(victim)
    render(THREE, out)
    assert victim.read_text() == "keep\n" and not authkey.is_symlink()


def test_an_output_that_is_a_file_or_someone_elses_directory_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        render(THREE, a_file)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine\n")
    with pytest.raises(OutputError, match=f"no {MANIFEST}"):
        render(THREE, theirs)
    assert (theirs / "notes.txt").read_text() == "mine\n"
    (tmp_path / "s").mkdir()
    spec = spec_copy(tmp_path / "s")
    for target in (a_file, theirs):
        code, out = run("render", str(spec), "-o", str(target))
        assert code == 2 and "cannot write the render" in out and "Traceback" not in out


def test_an_unwritable_output_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    spec = spec_copy(tmp_path)
    code, out = run("render", str(spec), "-o", "/proc/hastack-out")
    assert code == 2 and "cannot write the render" in out
    assert os.path.exists(spec)
