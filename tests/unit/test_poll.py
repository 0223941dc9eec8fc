"""Bounded polling: the value when it comes, None or PollTimeout when it does not, never unbounded."""

from __future__ import annotations

import asyncio
import time

import pytest

from hastack.common.poll import PollTimeout, until, until_async


def test_until_returns_the_first_truthy_value() -> None:
    seen = iter([None, 0, "", "ready", "later"])
    assert until(lambda: next(seen), 5, every=0.001) == "ready"


def test_until_gives_up_at_its_deadline() -> None:
    t0 = time.monotonic()
    assert until(lambda: False, 0.05, every=0.01) is None
    assert 0.05 <= time.monotonic() - t0 < 1


def test_until_async_retries_the_errors_it_was_told_and_keeps_the_last() -> None:
    calls = []

    async def probe() -> str | None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "up"

    assert asyncio.run(until_async(probe, 5, every=0.001, retry_on=(ConnectionError,))) == "up"

    async def never() -> None:
        raise ConnectionError("refused")

    with pytest.raises(PollTimeout) as exc:
        asyncio.run(until_async(never, 0.02, every=0.005, retry_on=(ConnectionError,)))
    assert "refused" in str(exc.value) and isinstance(exc.value.last, ConnectionError)


def test_until_async_does_not_swallow_other_errors() -> None:
    async def broken() -> None:
        raise KeyError("a bug, not a wait")

    with pytest.raises(KeyError):
        asyncio.run(until_async(broken, 5, retry_on=(ConnectionError,)))
