"""Deploy's waits and concurrent steps: a timed-out probe is retried, a failed step stops its siblings."""

from __future__ import annotations

import asyncio

import pytest

from hastack.common.tasks import all_or_stop
from hastack.deploy.context import DeployError, wait_for
from hastack.hosts.ssh import CommandTimeout, Result


def test_a_probe_that_outran_its_time_is_tried_again_until_it_answers() -> None:
    # CI's lab up on a busy controller: the API probe's command took longer than its 13 s once and the
    # whole deploy failed with "TimeoutError (no message)" instead of asking again.
    calls = []

    async def answers() -> bool | None:
        calls.append(1)
        if len(calls) < 3:
            raise CommandTimeout("ctl1", "python3 -c ...", Result(-1, "", ""), 13)
        return True

    assert asyncio.run(wait_for(answers, 5, "keystone on ctl1", interval=0.01)) is True
    assert len(calls) == 3


def test_a_probe_that_never_finishes_in_time_says_so_when_the_wait_ends() -> None:
    async def never() -> bool | None:
        raise CommandTimeout("ctl1", "python3 -c ...", Result(-1, "", ""), 13)

    with pytest.raises(DeployError, match=r"waiting for keystone on ctl1; last error: ctl1: `python3 -c \.\.\.` "
                                          r"did not finish within 13 s"):
        asyncio.run(wait_for(never, 0.05, "keystone on ctl1", interval=0.01))


def test_the_first_failure_cancels_the_other_steps_before_it_is_raised() -> None:
    ended: list[str] = []

    async def fails() -> str:
        await asyncio.sleep(0.01)
        raise DeployError("ctl1: no")

    async def slow(name: str) -> str:
        try:
            await asyncio.sleep(10)
        finally:
            ended.append(name)  # still inside all_or_stop when it raises: nothing runs on after it
        return name

    async def run() -> None:
        with pytest.raises(DeployError, match="ctl1: no"):
            await all_or_stop([slow("ctl2"), fails(), slow("ctl3")])
        assert sorted(ended) == ["ctl2", "ctl3"]

    asyncio.run(asyncio.wait_for(run(), 5))


def test_every_result_in_order_when_nothing_fails() -> None:
    async def after(s: float, v: int) -> int:
        await asyncio.sleep(s)
        return v

    assert asyncio.run(all_or_stop([after(0.03, 1), after(0.01, 2), after(0, 3)])) == [1, 2, 3]
