"""SshHost against a real sshd on loopback: commands, errors, idempotent file placement."""

from __future__ import annotations

import asyncio
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from hastack.hosts.files import Change
from hastack.hosts.ssh import HostError, SshHost
from hastack.render.files import RenderedFile
from tests.integration.conftest import Daemons, require, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


@pytest.fixture
def sshd(tmp_path: Path, daemons: Daemons) -> tuple[int, Path]:
    keygen = require("ssh-keygen")
    for name in ("hostkey", "client"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    (tmp_path / "authorized_keys").write_text((tmp_path / "client.pub").read_text())
    port = _free_port()
    cfg = tmp_path / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp_path / 'hostkey'}\n"
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile {tmp_path / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    daemons.spawn([require("sshd"), "-D", "-e", "-f", str(cfg)], tmp_path / "sshd.log")
    wait_until(lambda: _answers(port), 20, "sshd to answer")
    return port, tmp_path / "client"


def test_run_and_put_over_ssh(sshd: tuple[int, Path], tmp_path: Path) -> None:
    port, key = sshd
    target = tmp_path / "remote" / "etc" / "secret.conf"

    async def scenario() -> list[Change]:
        changes = []
        async with SshHost("lab1", "127.0.0.1", str(key), port=port) as host:
            assert (await host.run(["id", "-u"])).stdout.strip() == "0"
            with pytest.raises(HostError) as exc:
                await host.run("echo boom >&2; exit 3")
            assert exc.value.result.rc == 3 and "lab1" in str(exc.value) and "boom" in str(exc.value)
            f = RenderedFile(str(target), b"password = x\n", 0o600)
            changes.append(await host.put(f))  # create
            changes.append(await host.put(f))  # already right
            changes.append(await host.put(RenderedFile(str(target), b"password = y\n", 0o600)))
            target.chmod(0o644)
            changes.append(await host.put(RenderedFile(str(target), b"password = y\n", 0o600)))
        return changes

    changes = asyncio.run(scenario())
    assert changes == [Change.CREATE, Change.NONE, Change.CONTENT, Change.METADATA]
    assert target.read_bytes() == b"password = y\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not list(target.parent.glob("*.hastack-new"))
