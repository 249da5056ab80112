"""Prometheus metrics of one app instance (prometheus-client).

With one process (no ``PROMETHEUS_MULTIPROC_DIR``), each app has its own registry rather than
prometheus-client's global one, so tests can build several apps in one process.

With ``WORKERS`` > 1 the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts,
and prometheus-client's multiprocess mode takes over: every worker writes its values to files
in that folder, and a scrape, whichever worker answers it, reads all of them into a fresh
registry (``MultiProcessCollector``). Counters and histograms are then sums over the workers,
including those that have exited since (a counter never goes down), and equal from scrape to
scrape. The gauges say how their workers' values combine (``multiprocess_mode``); the live
modes count only running workers (the supervisor calls ``mark_process_dead`` for the others).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from service.observe.drift import Series, SignalMetrics

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)
SHADOW_BUCKETS = (1e-6, 1e-4, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared folder of the workers' metric files, when there are several workers."""
    return os.environ.get(MULTIPROC_DIR) or None


class LoopValue:
    """prometheus-client's value without its lock, for one process: every metric here is
    updated on the event loop's thread (the requests' bookkeeping, the data plane, the shadow
    runner, the reloader's swap; the thread pool only computes answers) and read there by the
    scrape, so a lock guards nothing. It saves about a quarter of a request's metric updates
    (9.8 → 7.6 µs for the seven series a text prediction touches, measured in process)."""

    _multiprocess = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._value = 0.0
        self._exemplar: Any = None

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def set_exemplar(self, exemplar: Any) -> None:
        self._exemplar = exemplar

    def get(self) -> float:
        return self._value

    def get_exemplar(self) -> Any:
        return self._exemplar


def _use_shared_values() -> None:
    """prometheus-client picks per-process or file-backed values once, when it is imported. A
    process that imported it before the supervisor set the variable would count alone, silently;
    switch it to the files before the first metric is made."""
    if values.ValueClass in (values.MutexValue, LoopValue):
        values.ValueClass = values.MultiProcessValue()


class Metrics:
    """The series of one app. ``signals`` are the drift series the served kinds declare."""

    def __init__(self, signals: Iterable[Series] = ()) -> None:
        self._children: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        self.shared = multiprocess_dir() is not None
        if self.shared:
            _use_shared_values()
        elif values.ValueClass is values.MutexValue:
            values.ValueClass = LoopValue
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests by route, method and status.",
            ["method", "route", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "http_request_duration_seconds", "Time from request to last response byte.",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.predictions = Counter(
            "predictions_total", "Predictions served (one per input item), by model version.",
            ["model", "version"], registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "prediction_batch_size", "Items per predict request.",
            ["model"], buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        # Across workers: ready only if every live worker serves the model.
        self.model_ready = Gauge(
            "model_ready", "1 when the model has a version loaded and serving, else 0.",
            ["model"], registry=self.registry, multiprocess_mode="livemin",
        )  # fmt: skip
        # Across workers: the version every live worker has reached, so an upgrade shows once it
        # is complete; a group reload makes the workers differ for well under a second.
        self.default_version = Gauge(
            "model_default_version", "The version served when a request names none (0: none).",
            ["model"], registry=self.registry, multiprocess_mode="livemin",
        )  # fmt: skip
        # Across workers: the most any live worker failed to load (they read the same folder).
        self.load_failures = Gauge(
            "model_load_failures", "Model folders and versions that failed their last load.",
            registry=self.registry, multiprocess_mode="livemax",
        )  # fmt: skip
        # Shadow traffic (service.serving.rollout): how often the shadow version agrees with stable.
        self.shadow_predictions = Counter(
            "shadow_predictions_total", "Shadow predictions by outcome: 'agree' or 'disagree' "
            "with stable (per item), 'error' or 'dropped' (per request).",
            ["model", "stable", "shadow", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.shadow_difference = Histogram(
            "shadow_absolute_difference", "Regressors: |stable - shadow| of each item's value.",
            ["model", "stable", "shadow"], buckets=SHADOW_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.reloads = Counter(
            "model_reloads_total", "Hot reloads by outcome: 'ok', or 'failed' (a version did not load).",
            ["outcome"], registry=self.registry,
        )  # fmt: skip
        self.signals = SignalMetrics(self.registry, signals)
        """What the models see and answer, per model version (``service.observe.drift``)."""

    def exposed(self) -> CollectorRegistry:
        """The registry a scrape renders: this app's own, or, with several workers, a fresh one
        that collects every worker's files (the multiprocess mode's documented way)."""
        if not self.shared:
            return self.registry
        scraped = CollectorRegistry()
        MultiProcessCollector(scraped)
        return scraped

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        requests, latency = self._child(("request", method, route, status), lambda: (
            self.requests.labels(method, route, str(status)),
            self.latency.labels(method, route, str(status)),
        ))  # fmt: skip
        requests.inc()
        latency.observe(seconds)

    def record_batch(self, model: str, version: str, size: int) -> None:
        predictions, batch_size = self._child(("batch", model, version), lambda: (
            self.predictions.labels(model, version), self.batch_size.labels(model),
        ))  # fmt: skip
        predictions.inc(size)
        batch_size.observe(size)

    def record_shadow(
        self, model: str, stable: str, shadow: str, outcome: str, count: int = 1
    ) -> None:
        if count:
            counter, _ = self._child(("shadow", model, stable, shadow, outcome), lambda: (
                self.shadow_predictions.labels(model, stable, shadow, outcome), None,
            ))  # fmt: skip
            counter.inc(count)

    def record_shadow_difference(
        self, model: str, stable: str, shadow: str, difference: float
    ) -> None:
        histogram, _ = self._child(("shadow-difference", model, stable, shadow), lambda: (
            self.shadow_difference.labels(model, stable, shadow), None,
        ))  # fmt: skip
        histogram.observe(difference)

    def _child(self, key: tuple[Any, ...], make: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
        """The labelled series of one key, looked up once: ``labels()`` takes a lock and builds
        a tuple on every call, about half of what counting a request costs."""
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = make()
        return children

    def record_serving(self, names: Iterable[str], serving: Mapping[str, str], failures: int) -> None:
        """The gauges that describe what is served, after start-up and after each reload: each
        known model, its default version if it has one, and how many loads failed."""
        for name in names:
            self.model_ready.labels(name).set(1 if name in serving else 0)
            self.default_version.labels(name).set(int(serving.get(name, 0)))
        self.load_failures.set(failures)
