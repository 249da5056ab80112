"""Where a request's model work runs: on the event loop when it is small, in the thread pool
when it is not.

A single review costs ~0.1 ms, less than the ~0.15 ms round trip to the thread pool, so small
requests run inline. A batch of 1,000 reviews goes to the pool, so it never stalls the loop that
accepts other requests. The kinds size each request (``Kind.check``); both protocol adapters
decide here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi.concurrency import run_in_threadpool

T = TypeVar("T")

INLINE_COST = 8
"""Requests up to this cost (about one short item each) run on the event loop."""


async def run_sized(work: Callable[[], T], cost: int) -> T:
    if cost <= INLINE_COST:
        return work()
    return await run_in_threadpool(work)
