"""A corpus of bad specs, run through `hastack check` as a user runs it: each gives exit 2 (or its
finding), one clear message, no traceback, in bounded time and memory.

Each case runs in its own process with its address space capped at 1 GiB, so a spec
that could take the machine down (before: /dev/zero used 24 GB in 5 s, a 353-byte
alias bomb ~7 GB) fails the test instead.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers import THREE

HASTACK = str(Path(sys.executable).parent / "hastack")
CAP = 1 << 30


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


def check(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HASTACK, "check", path], capture_output=True, text=True, timeout=30, check=False,
                          preexec_fn=_capped)


def write(tmp: Path, name: str, data: str | bytes) -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return str(path)


def three(tmp: Path, old: str = "", new: str = "", name: str = "spec.yaml") -> str:
    text = THREE.read_text()
    assert old in text
    path = tmp / name
    path.write_text(text.replace(old, new, 1) if old else text)
    return str(path)


# 1,100 aliases in 11 levels of 100: the old mark walk expanded every one of them (100^10 nodes).
BOMB = "a: &a [x, x]\n" + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 100)}]\n"
                                  for p, c in zip("abcdefghijk", "bcdefghijkl", strict=True))
FENCE = "fence: {agent: fence_ipmilan, params: {ip: 10.77.9.11,"


@dataclass(frozen=True)
class Bad:
    name: str
    make: Callable[[Path], str]  # writes the spec, returns the path to check
    exit: int
    says: str
    never: str = ""  # a value that must not be echoed (a secret)


def three_iha_nofence(tmp: Path) -> str:
    data = yaml.safe_load(THREE.read_text())
    data["instance_ha"] = {"enabled": True}
    data["nodes"][-1].pop("fence")
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


CASES = [
    Bad("not a file", lambda t: "/dev/zero", 2, "not a regular file"),
    Bad("too large", lambda t: three(t, "cluster: openstack", "cluster: openstack\n" + "#" * (5 << 20)), 2,
        "at most 4 MiB"),
    Bad("alias bomb", lambda t: write(t, "bomb.yaml", BOMB), 2, "YAML aliases"),
    Bad("control character", lambda t: three(t, "cluster: openstack", "cluster: open\x07stack"), 2,
        "U+0007"),
    Bad("not UTF-8", lambda t: write(t, "latin1.yaml", b"cluster: caf\xe9\n"), 2, "cannot read the spec"),
    Bad("markup in the path", lambda t: write(t, "[/]x.yaml", THREE.read_text().replace("10.77.0.11", "10.77.0.300")),
        2, "[/]x.yaml"),
    Bad("emoji code in the path", lambda t: three(t, "address: 10.77.0.11", "address: 10.77.0.300",
                                                  ":100:.yaml"), 2, ":100:.yaml"),
    Bad("fence target overridden", lambda t: three(t, FENCE, FENCE + " pcmk_host_list: ctl2,"), 2,
        "pcmk_host_list is set by hastack"),
    Bad("escape sequence in a waiver", lambda t: three(t, "waivers:\n",
                                                       'waivers:\n  - {code: HA110, reason: '
                                                       '"\\e[2J\\e[31mall fine here, really"}\n'), 2, "waivers[0]"),
    Bad("instance HA without fencing", lambda t: three(
        t, "pacemaker:\n  fencing: true\n", "instance_ha: {enabled: true}\npacemaker:\n  fencing: false\n"), 2,
        "instance HA needs pacemaker with fencing on"),
    Bad("instance HA, a compute with no fence device", three_iha_nofence, 2,
        "compute compute2 has no fence device"),
    Bad("instance HA, a reserved host that is no compute", lambda t: three(
        t, "pacemaker:\n", "instance_ha: {enabled: true, reserved: [ctl2]}\npacemaker:\n"), 2,
        "'ctl2' is not a compute node"),
    Bad("fence password echoed", lambda t: three(t, FENCE, FENCE + " password: 'hunter2 secret!',"), 2,
        "value (hidden", never="hunter2"),
]


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_a_bad_spec_gets_one_clear_message(bad: Bad, tmp_path: Path) -> None:
    path = bad.make(tmp_path)
    res = check(path)
    text = res.stdout + res.stderr
    assert res.returncode == bad.exit, text[-2000:]
    assert "Traceback" not in text and "Error:" not in text.split("\n", 1)[0], text[-2000:]
    assert bad.says in text, text[-2000:]
    assert "\x1b[2J" not in text and "\x07" not in text  # nothing from the spec drives the terminal
    if bad.never:
        assert bad.never not in text


def test_nine_mongo_voters_is_a_finding_not_a_failed_deploy(tmp_path: Path) -> None:
    data = yaml.safe_load(THREE.read_text())
    for i in range(4, 10):
        data["nodes"].append({"name": f"ctl{i}", "roles": ["controller"], "address": f"10.77.0.{30 + i}",
                              "heartbeat": [f"10.77.1.{30 + i}", f"10.77.2.{30 + i}"],
                              "fence": {"agent": "fence_ipmilan", "params": {"ip": f"10.77.9.{30 + i}"}}})
    data["mongodb"]["members"] = [{"node": f"ctl{i}"} for i in range(1, 10)]
    path = tmp_path / "nine.yaml"
    path.write_text(yaml.safe_dump(data))
    res = check(str(path))
    assert res.returncode == 1 and "HA406" in res.stdout and "9 voting" in res.stdout, res.stdout[-2000:]
