"""Bounded polling: wait on real state, never on a fixed sleep, and never without a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class PollTimeout(Exception):
    """The deadline passed; `last` is the last error a probe raised, if it raised one."""

    def __init__(self, timeout: float, last: BaseException | None) -> None:
        self.timeout, self.last = timeout, last
        super().__init__(f"timed out after {timeout:.0f} s" + (f"; last error: {last}" if last else ""))


def until(probe: Callable[[], T | None], timeout: float, every: float = 0.1) -> T | None:
    """The first truthy value `probe` returns, polling every `every` seconds; None after `timeout`.

    The probe runs at least once, and once more after the deadline passed while it slept.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(every)


async def until_async(probe: Callable[[], Awaitable[T | None]], timeout: float, every: float = 0.5,
                      retry_on: tuple[type[BaseException], ...] = ()) -> T:
    """The first truthy value of the awaited `probe`; PollTimeout after `timeout`.

    An error in `retry_on` (a transport hiccup, a daemon still starting) is kept and the
    probe tried again; any other error ends the wait.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = await probe()
            if value:
                return value
        except retry_on as exc:
            last = exc
        if time.monotonic() > deadline:
            raise PollTimeout(timeout, last)
        await asyncio.sleep(every)
