"""SshHost against a real sshd on loopback: commands, errors, idempotent file placement."""

from __future__ import annotations

import asyncio
import socket
import stat
import subprocess
from pathlib import Path

import asyncssh
import pytest

from hastack.hosts.files import Change
from hastack.hosts.place import put
from hastack.hosts.ssh import CommandTimeout, HostError, SshHost
from hastack.hosts.trust import KeyState, record, scan
from hastack.render.files import RenderedFile
from hastack.spec.load import parse_spec
from tests.helpers import THREE
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
    """sshd on loopback; returns its port and the client key. Its host key is `tmp_path/hostkey`."""
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


def pinned(tmp_path: Path, port: int, key: str = "hostkey") -> str:
    """A known_hosts file holding `key` for the sshd (its real key unless told otherwise)."""
    kind, blob = (tmp_path / f"{key}.pub").read_text().split()[:2]
    path = tmp_path / f"known_hosts.{key}"
    path.write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
    return str(path)


def test_run_and_put_over_ssh(sshd: tuple[int, Path], tmp_path: Path) -> None:
    port, key = sshd
    target = tmp_path / "remote" / "etc" / "secret.conf"

    async def scenario() -> list[Change]:
        changes = []
        async with SshHost("lab1", "127.0.0.1", str(key), port=port, known_hosts=pinned(tmp_path, port)) as host:
            assert (await host.run(["id", "-u"])).stdout.strip() == "0"
            with pytest.raises(HostError) as exc:
                await host.run(["sh", "-c", "echo boom >&2; exit 3"])
            assert exc.value.result.rc == 3 and "lab1" in str(exc.value) and "boom" in str(exc.value)
            # Interpolated values are arguments, never shell: nothing splits or injects.
            odd = "a b; touch /tmp/hastack-injected $(id)"
            assert (await host.run(["printf", "%s", odd])).stdout == odd
            assert not Path("/tmp/hastack-injected").exists()
            with pytest.raises(TypeError, match="argv"):
                await host.run("id -u")
            # A command that outruns its time is a HostError naming host, command and bound (a wait that
            # polls it retries it), not a bare TimeoutError with no words; the connection stays usable.
            with pytest.raises(CommandTimeout, match=r"lab1: `sh -c 'echo started; sleep 30'` did not finish "
                                                     r"within 0.5 s\nstarted"):
                await host.run(["sh", "-c", "echo started; sleep 30"], timeout=0.5)
            assert (await host.run(["echo", "still"])).stdout == "still\n"
            f = RenderedFile(str(target), b"password = x\n", 0o600)
            changes.append(await put(host, f))  # create
            changes.append(await put(host, f))  # already right
            changes.append(await put(host, RenderedFile(str(target), b"password = y\n", 0o600)))
            target.chmod(0o644)
            changes.append(await put(host, RenderedFile(str(target), b"password = y\n", 0o600)))
        return changes

    changes = asyncio.run(scenario())
    assert changes == [Change.CREATE, Change.NONE, Change.CONTENT, Change.METADATA]
    assert target.read_bytes() == b"password = y\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.conf"]  # no temporary left


def test_a_host_whose_key_is_not_the_recorded_one_is_refused(sshd: tuple[int, Path], tmp_path: Path) -> None:
    port, key = sshd
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "impostor")], check=True)
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")

    async def connect(known: str) -> None:
        async with SshHost("lab1", "127.0.0.1", str(key), port=port, known_hosts=known) as host:
            await host.run(["true"])

    for known in (pinned(tmp_path, port, "impostor"), str(empty)):  # another key; no key at all
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            asyncio.run(connect(known))
    asyncio.run(connect(pinned(tmp_path, port)))  # the real one


def test_trust_shows_records_and_then_knows_a_key(sshd: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = sshd
    spec = parse_spec(THREE.read_text(), "t.yaml")
    one = spec.model_copy(update={"nodes": [spec.nodes[0].model_copy(update={"address": "127.0.0.1"})]})
    known = tmp_path / "ssh" / "known_hosts"
    first = asyncio.run(scan(one, known, port=port))
    assert [k.state for k in first] == [KeyState.NEW] and first[0].fingerprint.startswith("SHA256:")
    expected = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "hostkey.pub")], capture_output=True, text=True,
                              check=True).stdout.split()[1]
    assert first[0].fingerprint == expected  # what the operator compares with the host's console
    assert record(known, first) == 1
    assert stat.S_IMODE(known.stat().st_mode) == 0o600 and stat.S_IMODE(known.parent.stat().st_mode) == 0o700
    assert [k.state for k in asyncio.run(scan(one, known, port=port))] == [KeyState.KNOWN]
    assert record(known, asyncio.run(scan(one, known, port=port))) == 0  # nothing new: nothing appended
    known.write_text(Path(pinned(tmp_path, port, "client")).read_text())  # another ed25519 key recorded
    assert [k.state for k in asyncio.run(scan(one, known, port=port))] == [KeyState.CHANGED]
