"""The VRRP gate's pure parts: verdicts with rise/fall, which checks run, the /proc read, the file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from hastack.agent.vrrp_gate import FPING, QUORUM_TOOL, Gate, checks, passes, running, write_verdict


def _through(results: list[bool], rise: int, fall: int) -> list[bool | None]:
    gate, seen = Gate(), []
    for passed in results:
        gate = gate.after(passed, rise, fall)
        seen.append(gate.ok)
    return seen


def test_the_first_result_decides_then_rise_and_fall_hold_it() -> None:
    # A starting gate knows nothing: its first result is written at once, either way.
    assert _through([False], 2, 2) == [False] and _through([True], 2, 2) == [True]
    # fall 2: one failure is a blip, two in a row fail; rise 2 likewise to pass again.
    assert _through([True, False, True, False, False, True, True], 2, 2) == \
        [True, True, True, True, False, False, True]
    # fall 1 (the network, quorum): the first failure fails; rise 2 needs two passes in a row.
    assert _through([True, False, True, False, True, True], 2, 1) == [True, False, False, False, False, True]


def test_checks_follow_the_vip_manager() -> None:
    alone = checks(False, ["10.0.0.2", "10.0.0.3"], 3.0)
    assert [c.name for c in alone] == ["haproxy", "mgmt"]
    haproxy, mgmt = alone
    assert haproxy.process == "haproxy" and not haproxy.argv and (haproxy.rise, haproxy.fall) == (2, 2)
    # One of the peers answering one of two tries of 0.5 s is enough (fping -x 1 -r 1), once every 3 s.
    assert mgmt.argv == (FPING, "-q", "-x", "1", "-r", "1", "-t", "500", "-B", "1.0", "10.0.0.2", "10.0.0.3")
    assert (mgmt.every_s, mgmt.fall) == (3.0, 1)
    gated = checks(True, ["10.0.0.2"], 1.0, process="hst-haproxy")
    assert [c.name for c in gated] == ["haproxy", "mgmt", "quorum"]
    assert gated[0].process == "hst-haproxy" and gated[2].argv == (QUORUM_TOOL, "-s")
    # Nothing to ping (a single node): no network check rather than one that can never pass.
    assert [c.name for c in checks(True, [], 1.0)] == ["haproxy", "quorum"]


def test_running_reads_each_process_name(tmp_path: Path) -> None:
    for pid, comm in (("1", "systemd\n"), ("42", "haproxy\n"), ("77", "haproxy-wrapper\n")):
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "comm").write_text(comm)
    (tmp_path / "self").mkdir()  # not a process number: skipped
    (tmp_path / "self" / "comm").write_text("haproxy\n")
    assert running("haproxy", tmp_path)
    (tmp_path / "42" / "comm").write_text("sleep\n")
    assert not running("haproxy", tmp_path)  # a longer name is not the same process
    # The real /proc: this very process is found by its name.
    assert running(Path(f"/proc/{os.getpid()}/comm").read_text().strip(), Path("/proc"))


def test_a_verdict_replaces_the_file_whole(tmp_path: Path) -> None:
    write_verdict(tmp_path, "mgmt", False)
    assert (tmp_path / "mgmt").read_text() == "1\n"
    write_verdict(tmp_path, "mgmt", True)
    assert (tmp_path / "mgmt").read_text() == "0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mgmt"]  # no temporary left behind


def test_a_command_passes_on_exit_0_and_fails_on_anything_else() -> None:
    assert asyncio.run(passes(["/bin/true"]))
    assert not asyncio.run(passes(["/bin/false"]))
    assert not asyncio.run(passes(["/nonexistent/tool"]))
    # A command that hangs fails at the timeout, and is killed.
    assert not asyncio.run(passes(["/bin/sleep", "30"], timeout=0.3))
