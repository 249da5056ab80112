"""Prometheus metrics of one app instance (prometheus-client, its own registry per app).

A registry per app, rather than prometheus-client's global one, lets tests build several apps
in one process. With ``WORKERS`` > 1 each worker keeps its own counters and a scrape reads the
worker that answers it; run one worker per container and scale containers for exact totals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from service.registry import Registry

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)


class Metrics:
    def __init__(self) -> None:
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
        self.model_ready = Gauge(
            "model_ready", "1 when the model has a version loaded and serving, else 0.",
            ["model"], registry=self.registry,
        )  # fmt: skip
        self.default_version = Gauge(
            "model_default_version", "The version served when a request names none (0: none).",
            ["model"], registry=self.registry,
        )  # fmt: skip
        self.load_failures = Gauge(
            "model_load_failures", "Model folders and versions that failed their last load.",
            registry=self.registry,
        )  # fmt: skip
        self.reloads = Counter(
            "model_reloads_total", "Hot reloads by outcome: 'ok', or 'failed' (a version did not load).",
            ["outcome"], registry=self.registry,
        )  # fmt: skip

    def record_batch(self, model: str, version: str, size: int) -> None:
        self.predictions.labels(model, version).inc(size)
        self.batch_size.labels(model).observe(size)

    def record_registry(self, registry: Registry) -> None:
        """The gauges that describe what is served, after start-up and after each reload."""
        serving = registry.serving()
        for name in registry.names:
            self.model_ready.labels(name).set(1 if name in serving else 0)
            self.default_version.labels(name).set(int(serving.get(name, 0)))
        self.load_failures.set(len(registry.failures))
