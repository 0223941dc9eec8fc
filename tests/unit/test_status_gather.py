"""Status gathering over fake hosts that replay real command output: a failing probe is named."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any, cast

from hastack.components import corosync, rabbitmq
from hastack.credentials.model import complete
from hastack.hosts.ssh import Result, SshHost
from hastack.spec.load import load_spec
from hastack.status.gather import gather
from hastack.status.model import verdict
from tests.helpers import THREE

FIXTURES = Path(__file__).parent / "fixtures"


class FakeHost:
    """Answers the commands it was given (real output captured in the lab); fails every other one."""

    def __init__(self, name: str, answers: dict[str, Result]) -> None:
        self.name = name
        self.answers = answers

    async def run(self, argv: Any, check: bool = True, timeout: float = 300, input: str | None = None) -> Result:
        command = argv if isinstance(argv, str) else shlex.join(argv)
        return self.answers.get(command, Result(127, "", f"{command.split()[0]}: not answered by this fake"))

    @property
    def conn(self) -> Any:
        raise OSError("no SSH tunnel in a fake host")


def facts_with(answers: dict[str, Result]) -> Any:
    spec = load_spec(THREE)
    hosts = {n.name: cast(SshHost, FakeHost(n.name, answers)) for n in spec.nodes}
    return asyncio.run(gather(spec, complete(spec, {})[0], hosts, {}))


def test_a_failing_corosync_and_rabbitmq_probe_is_reported_with_its_own_words() -> None:
    down = Result(1, "", "Cannot initialize CMAP service")
    refused = Result(69, "", "Error: unable to perform an operation on node 'rabbit@ctl1'")
    f = facts_with({corosync.QUORUM.command: down, rabbitmq.STATUS.command: refused})
    rows = {r.component: r for r in verdict(load_spec(THREE), f)}
    # Before, probe errors were filed under "quorum" and "rabbit" and these said "no ... node answered".
    assert "Cannot initialize CMAP service" in rows["corosync"].problems[0], rows["corosync"]
    assert "unable to perform an operation" in rows["rabbitmq"].problems[0], rows["rabbitmq"]
    assert "no SSH tunnel" in rows["mongodb"].problems[0], rows["mongodb"]
    assert not rows["corosync"].healthy and not rows["rabbitmq"].healthy


def test_real_output_is_parsed_into_facts() -> None:
    f = facts_with({corosync.QUORUM.command: Result(0, (FIXTURES / "corosync_quorumtool_s.txt").read_text(), ""),
                    rabbitmq.STATUS.command: Result(0, (FIXTURES / "rabbitmq_status_ctl1_down.tsv").read_text(), "")})
    assert f.quorum is not None and f.quorum.quorate and len(f.quorum.members) == 3
    # One rabbitmqctl call fills both the cluster's view and its queues.
    assert f.rabbit is not None and f.rabbit.running == ("rabbit@ctl2", "rabbit@ctl3")
    assert len(f.rabbit_queues) > 20 and all(q.degraded for q in f.rabbit_queues)
    assert "corosync" not in f.errors and "rabbitmq" not in f.errors
