"""Concurrent work that ends together: the first failure stops the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def all_or_stop(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Every result, in order; on the first error the others are cancelled (and awaited) before it is
    raised. asyncio.gather alone leaves them running: a failed deploy step's siblings went on against
    hosts whose connections the failure's cleanup was closing ("ctl1: not connected")."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
