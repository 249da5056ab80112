"""Shadow traffic: the rollout's shadow version runs on stable's input after the response is on
its way, and ``/metrics`` counts how often the two agree (``service.serving.rollout`` says when a
request is shadowed). A shadow failure never touches the response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from service.kinds.base import InputProblems
from service.observe.drift import Signals
from service.observe.metrics import Metrics
from service.serving.offload import Work, run
from service.serving.registry import ServedModel

logger = logging.getLogger("service.rollout")

SHADOW_OUTCOMES = ("agree", "disagree", "error", "dropped")


def compared(stable: Signals, shadow: Signals) -> tuple[int, int, list[float]]:
    """Agreements, disagreements and (regressors) absolute differences, item by item, read from
    what each run recorded while it answered (``service.observe.drift``), so the REST and V2 answers,
    whatever their shapes, compare alike and no model is known here by name or kind.

    Labels (a classifier) agree when they are the same. Values (a regressor's target) agree when
    equal to float32 precision; the histogram shows how far apart they are."""
    ours, theirs = (
        (stable.labels, shadow.labels) if stable.labels else (stable.values, shadow.values)
    )
    if len(ours) != len(theirs):
        raise ValueError(f"stable answered {len(ours)} items, the shadow {len(theirs)}")
    if stable.labels:
        agree = sum(a == b for a, b in zip(ours, theirs))
        return agree, len(ours) - agree, []
    differences = [abs(float(a) - float(b)) for a, b in zip(ours, theirs)]
    agree = sum(d <= 1e-6 * max(1.0, abs(float(a))) for d, a in zip(differences, ours))
    return agree, len(ours) - agree, differences


class ShadowRunner:
    """Runs shadow predictions after the response, at most ``limit`` at a time.

    Why bounded: a shadow doubles the model work of every request it copies. Under load,
    unbounded shadow tasks would pile up behind the requests that do need answers, holding their
    inputs in memory and taking the CPU the stable path needs. A shadow over the limit is
    dropped and counted (``outcome="dropped"``), so the comparison becomes a sample, and the
    metric says how large."""

    def __init__(self, metrics: Metrics, limit: int) -> None:
        self.metrics = metrics
        self.limit = limit
        self.tasks: set[asyncio.Task[None]] = set()

    def submit(self, stable: ServedModel, seen: Signals, shadow: ServedModel,
               prepare: Callable[[], Work[Any]]) -> None:  # fmt: skip
        """Start one shadow run. ``seen`` is what stable answered; ``prepare`` reads the same
        input for the shadow (its own schema and limits: ``InputProblems`` or a pydantic
        ``ValidationError`` if it cannot take it) as its ``Work``."""
        labels = (stable.name, stable.version, shadow.version)
        if len(self.tasks) >= self.limit:
            self.metrics.record_shadow(*labels, "dropped")
            return
        task = asyncio.get_running_loop().create_task(self._run(labels, seen, prepare))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, labels: tuple[str, str, str], seen: Signals,
                   prepare: Callable[[], Work[Any]]) -> None:  # fmt: skip
        name, _, version = labels
        theirs = Signals()
        try:
            await run(prepare(), theirs)
            agree, disagree, differences = compared(seen, theirs)
        except (ValidationError, InputProblems, ValueError, TypeError, ArithmeticError) as error:
            logger.warning("shadow %s/%s failed: %s", name, version, error)
            self.metrics.record_shadow(*labels, "error")
            return
        except Exception:  # a shadow failure must never reach the stable path
            logger.exception("shadow %s/%s failed", name, version)
            self.metrics.record_shadow(*labels, "error")
            return
        self.metrics.record_shadow(*labels, "agree", agree)
        self.metrics.record_shadow(*labels, "disagree", disagree)
        for difference in differences:
            self.metrics.record_shadow_difference(*labels, difference)

    async def drain(self, timeout: float = 5.0) -> None:
        """At shutdown: let the shadow runs in flight finish (briefly), then drop the rest."""
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
            for task in pending:
                task.cancel()
