"""A request's model work, and where it runs: on the event loop when it is small, in the thread
pool when it is not.

A single review costs ~0.1 ms, less than the ~0.15 ms round trip to the thread pool, so small
requests run inline. A batch of 1,000 reviews goes to the pool, so it never stalls the loop that
accepts other requests. The kinds size each request (``Kind.check``, ``Kind.v2_cost``); the data
plane and the shadow runner decide here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from fastapi.concurrency import run_in_threadpool

from service.observe.drift import Signals

T = TypeVar("T")

INLINE_COST = 8
"""Requests up to this cost (about one short item each) run on the event loop."""


@dataclass(frozen=True)
class Work(Generic[T]):
    """A request as one model version's kind has read it, within the limits: its items, its
    cost in short items, and the call that answers it (recording what it saw in ``Signals``)."""

    items: int
    cost: int
    answer: Callable[[Signals], T]


async def run(work: Work[T], seen: Signals) -> T:
    """``work`` inline or in the thread pool, by its cost."""
    if work.cost <= INLINE_COST:
        return work.answer(seen)
    return await run_in_threadpool(work.answer, seen)
