"""Every recorded fact: the command is the one its output was captured with, and parses as recorded."""

from __future__ import annotations

import asyncio
import json
import shlex

import pytest

from hastack.components.fact import Fact, FactFailed, on_success, script, shell
from hastack.hosts.probe import probe
from hastack.hosts.ssh import HostError, Result
from tests.unit.fact_fixtures import FACTS, FIXTURES, RECORDED, plain

RECORDS = json.loads(RECORDED.read_text())


def test_every_fact_is_recorded() -> None:
    assert set(RECORDS) == set(FACTS)


@pytest.mark.parametrize("name", sorted(FACTS))
def test_a_fact_reads_its_recorded_output_as_recorded(name: str) -> None:
    fact, output, rc = FACTS[name]
    rec = RECORDS[name]
    assert list(fact.argv) == rec["argv"], f"{name}: its command changed; capture its output again in the lab"
    assert rec["output"] == output and rec["rc"] == rc
    assert plain(fact.parse(rc, (FIXTURES / output).read_text())) == rec["parsed"]


def test_a_fact_that_needs_success_names_host_command_and_output() -> None:
    class Failing:
        name = "ctl1"

        async def run(self, argv: tuple[str, ...], check: bool = True, timeout: float = 300) -> Result:
            return Result(1, "", "Cannot initialize CMAP service")

    fact = Fact("quorum", ("corosync-quorumtool", "-s"), on_success(str.strip))
    with pytest.raises(HostError) as exc:
        asyncio.run(probe(Failing(), fact))
    assert "ctl1" in str(exc.value) and "corosync-quorumtool -s" in str(exc.value) and "CMAP" in str(exc.value)
    with pytest.raises(FactFailed):
        fact.parse(2, "")


def test_interpolated_values_are_quoted_in_scripts() -> None:
    # A shell group is not a format field: recover's stop of a wedged mariadbd is such a line.
    group = "timeout 10 systemctl stop mariadb || { systemctl kill -s KILL mariadb; systemctl stop mariadb; }"
    assert shell(group) == ("sh", "-c", group)
    assert script("test -e {p} || {{ echo missing; }}", p="a b") == "test -e 'a b' || { echo missing; }"
    odd = "x'; rm -rf / #"
    assert shlex.split(script("cat {path}", path=odd)) == ["cat", odd]
    assert shell("cat {path}", path=odd) == ("sh", "-c", f"cat {shlex.quote(odd)}")
