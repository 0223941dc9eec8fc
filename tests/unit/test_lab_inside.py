"""Writing into a lab host's tree from outside never goes through a link its root planted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hastack.lab import inside


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(a host's tree, a file of "the machine" outside it)."""
    root = tmp_path / "rootfs"
    (root / "root/.ssh").mkdir(parents=True)
    victim = tmp_path / "machine-file"
    victim.write_text("the machine's own\n")
    victim.chmod(0o644)
    return root, victim


def test_a_file_is_placed_with_its_mode_and_replaces_the_old_one(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    inside.write(root, "/root/.ssh/authorized_keys", "key 1\n", 0o600)
    inside.write(root, "/root/.ssh/authorized_keys", "key 2\n", 0o600)
    f = root / "root/.ssh/authorized_keys"
    assert f.read_text() == "key 2\n" and stat.S_IMODE(f.stat().st_mode) == 0o600
    inside.write(root, "etc/hastack/new/dir/file", "x", 0o644)  # missing directories are made
    assert (root / "etc/hastack/new/dir/file").read_text() == "x"
    assert [p.name for p in (root / "root/.ssh").iterdir()] == ["authorized_keys"]  # no temporary left


def test_a_planted_file_link_is_replaced_not_written_through(tree: tuple[Path, Path]) -> None:
    root, victim = tree
    (root / "root/.ssh/authorized_keys").symlink_to(victim)
    inside.write(root, "/root/.ssh/authorized_keys", "lab key\n", 0o600)
    assert victim.read_text() == "the machine's own\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    f = root / "root/.ssh/authorized_keys"
    assert not f.is_symlink() and f.read_text() == "lab key\n"


def test_a_planted_directory_link_is_refused(tree: tuple[Path, Path]) -> None:
    root, victim = tree
    outside = victim.parent / "machine-etc"
    outside.mkdir()
    (root / "etc").symlink_to(outside)
    with pytest.raises(inside.Refused, match="etc is a link"):
        inside.write(root, "/etc/hastack/token", "secret", 0o600)
    with pytest.raises(inside.Refused):
        inside.chmod_dir(root, "etc", 0o700)
    assert list(outside.iterdir()) == [] and stat.S_IMODE(outside.stat().st_mode) != 0o700


def test_chmod_of_a_linked_directory_leaves_the_target_alone(tree: tuple[Path, Path]) -> None:
    root, victim = tree
    os.rename(root / "root/.ssh", root / "root/ssh-real")
    (root / "root/.ssh").symlink_to(victim.parent)
    before = stat.S_IMODE(victim.parent.stat().st_mode)
    with pytest.raises(inside.Refused):
        inside.chmod_dir(root, "root/.ssh", 0o700)
    assert stat.S_IMODE(victim.parent.stat().st_mode) == before


def test_reading_host_keys_skips_links_and_odd_names(tree: tuple[Path, Path]) -> None:
    root, victim = tree
    inside.write(root, "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA host\n", 0o644)
    (root / "etc/ssh/ssh_host_rsa_key.pub").symlink_to(victim)
    assert inside.read_files(root, "etc/ssh", ".pub") == {"ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA host\n"}


@pytest.mark.parametrize("path", ["../escape", "root/../../escape", "", "/"])
def test_a_path_that_is_not_plain_is_refused(tree: tuple[Path, Path], path: str) -> None:
    root, _ = tree
    with pytest.raises(inside.Refused):
        inside.write(root, path, "x", 0o600)
