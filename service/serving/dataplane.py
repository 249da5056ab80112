"""The data plane: the one inference path every protocol calls, after its adapter has decoded the
request and before it encodes the answer (KServe's ``DataPlane.infer``, MLServer's
``handlers/dataplane.py``).

For each request, in order:

1. **resolve** the model version once (``model(name).resolve(version, key)``: the version the
   request names, else the rollout's stable one or, in its share, the canary; and the shadow);
2. **admit** it: the adapter's ``read`` turns the decoded request into the kind's ``Work`` for
   that version (the kind's schema and limits: ``InputProblems`` if it cannot take it, before
   anything is counted or run), and the request is counted;
3. **run** the kind (preprocess → engine → postprocess) inline or in the thread pool, by cost;
4. **record** what the kind saw and answered (drift signals);
5. **shadow**: hand the same request to the shadow version, off the response path.

A plain function call on the fast path: measured against the tree before it existed, no
throughput is lost (``bench/ab.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from service.kinds.base import Limits
from service.observe.drift import Signals
from service.observe.metrics import Metrics
from service.serving.offload import Work, run
from service.serving.registry import Registry, Resolved, ServedModel, ServedVersions
from service.serving.shadow import ShadowRunner

T = TypeVar("T")

Read = Callable[[ServedModel], Work[T]]
"""How an adapter reads its decoded request for one model version: the served one, then the
shadow (``InputProblems`` or a pydantic ``ValidationError`` when that version cannot take it)."""


class DataPlane:
    """The registry in force, and everything a request passes through between the adapters and
    the kinds. Built once at start-up; a reload swaps ``registry`` in one assignment."""

    def __init__(self, limits: Limits, metrics: Metrics, shadows: ShadowRunner) -> None:
        self.limits = limits
        self.metrics = metrics
        self.shadows = shadows
        self.registry = Registry()

    def model(self, name: str) -> ServedVersions:
        """A model's served versions and rollout: ``UnknownModel`` or ``ModelUnavailable`` if
        there are none."""
        return self.registry.model(name)

    def resolve(self, name: str, version: str | None, key: str | None = None) -> Resolved:
        """The version that answers, and its shadow (``service.serving.registry``)."""
        return self.registry.model(name).resolve(version, key)

    async def infer(self, resolved: Resolved, read: Read[T]) -> T:
        """Admit, count, run, record, shadow: the answer of ``resolved.served``."""
        served = resolved.served
        work = read(served)
        self.metrics.record_batch(served.name, served.version, work.items)
        seen = Signals()
        answer = await run(work, seen)
        self.metrics.signals.record(served.name, served.version, seen)
        if resolved.shadow is not None:
            shadow = resolved.shadow
            self.shadows.submit(served, seen, shadow, lambda: read(shadow))
        return answer
