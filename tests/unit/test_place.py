"""The file placement program, run here as deploy runs it on a host (as root: it sets owners)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hastack.hosts.place import REFUSED, place_argv
from hastack.render.files import RenderedFile

NOBODY = 65534  # a service user: owns the directory it may plant links in

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="placement sets owners: the tests run as root")


def place(f: RenderedFile) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(place_argv(f, sys.executable), input=f.content, capture_output=True, check=False)


def service_dir(tmp_path: Path) -> Path:
    d = tmp_path / "etc" / "rabbitmq"
    d.mkdir(parents=True)
    os.chown(d, NOBODY, NOBODY)
    return d


def test_a_new_file_gets_its_owner_mode_and_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "secret.conf"
    res = place(RenderedFile(str(target), b"x = 1\n", 0o640, "nobody", "nogroup"))
    assert res.returncode == 0, res.stderr
    st = target.stat()
    assert target.read_bytes() == b"x = 1\n" and stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert os.listdir(target.parent) == ["secret.conf"]  # no temporary left behind


def test_a_link_planted_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root's\n")
    victim.chmod(0o600)
    d = service_dir(tmp_path)
    (d / "rabbitmq.conf").symlink_to(victim)
    res = place(RenderedFile(str(d / "rabbitmq.conf"), b"new\n", 0o644, "nobody", "nogroup"))
    assert res.returncode == 0, res.stderr
    assert victim.read_text() == "root's\n" and victim.stat().st_uid == 0
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not (d / "rabbitmq.conf").is_symlink() and (d / "rabbitmq.conf").read_bytes() == b"new\n"


def test_a_link_for_the_old_temporary_name_catches_nothing(tmp_path: Path) -> None:
    # The old deploy wrote PATH.hastack-new by name: a link there received the file and its chown.
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    d = service_dir(tmp_path)
    (d / "rabbitmq.conf.hastack-new").symlink_to(victim)
    assert place(RenderedFile(str(d / "rabbitmq.conf"), b"new\n", 0o600, "nobody", "nogroup")).returncode == 0
    assert victim.read_text() == "keep\n" and victim.stat().st_uid == 0


def test_a_linked_directory_in_a_service_users_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    d = service_dir(tmp_path)
    (d / "conf.d").symlink_to(elsewhere)
    res = place(RenderedFile(str(d / "conf.d" / "10-hastack.conf"), b"x\n"))
    assert res.returncode == REFUSED and b"conf.d is a link" in res.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_link_in_a_directory_only_root_can_change_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "run"
    real.mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to(real)  # as /var/run -> /run
    tmp_path.chmod(0o755)
    res = place(RenderedFile(str(tmp_path / "var" / "run" / "x.pid"), b"1\n"))
    assert res.returncode == 0, res.stderr
    assert (real / "x.pid").read_bytes() == b"1\n"


def test_binary_content_arrives_intact(tmp_path: Path) -> None:
    data = bytes(range(256)) * 512  # a corosync authkey is binary; a bundle is large
    target = tmp_path / "authkey"
    assert place(RenderedFile(str(target), data, 0o400)).returncode == 0
    assert target.read_bytes() == data
