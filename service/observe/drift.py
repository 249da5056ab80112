"""What the models see and say, per model and version, in ``/metrics``: the signals of drift.

A kind fills one ``Signals`` record per request while it answers (``Kind.answer``,
``Kind.v2_answer``), and the data plane hands the record to ``SignalMetrics.record``. So the
kinds never see Prometheus, and nothing here knows what a model's inputs are: each kind declares
the series it records (``Kind.signals``, each a ``Series``), and this module makes them.

Every kind that answers with labels or values gets two series for free:

* ``model_predictions_by_label_total{label}`` (counter): items answered with that label;
* ``model_predicted_value`` (histogram): regression outputs, in buckets spread over the card's
  target range (``target.train_min`` to ``train_max``), each model version its own.

The series a kind declares are labelled ``model`` and ``version`` (and its ``by`` label, if
any). The book's kinds declare these (``service.kinds.text``, ``service.kinds.table``):

* ``model_input_text_words`` (histogram): words per text, as the tokenizer splits it.
* ``model_input_unknown_word_ratio`` (histogram): per text of at least one word, the share of
  its words that do not reach the model as themselves.
* ``model_input_out_of_range_total{feature}`` (counter): rows with that feature outside
  ``[train_min, train_max]`` of the card.

Counters and histograms only: with several workers, prometheus-client's multiprocess mode sums
them over the workers (``service.observe.metrics``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

VALUE_BUCKETS = (0.1, 0.5, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000)
"""For a regressor whose card gives no target range."""


@dataclass(frozen=True, eq=False)
class Series:
    """A drift series a kind records: a histogram when it has ``buckets``, else a counter (by
    its ``by`` label). Compared and hashed by identity: a kind module declares each once."""

    name: str
    help: str
    buckets: tuple[float, ...] | None = None
    by: str | None = None


@dataclass(slots=True)
class Signals:
    """What one request showed a kind: the labels or values it answered (what a shadow run is
    compared on, ``service.serving.shadow``), and the observations of its own series."""

    labels: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    value_buckets: tuple[float, ...] = VALUE_BUCKETS
    observed: dict[Series, list[float]] = field(default_factory=dict)
    counted: dict[Series, Tally[str]] = field(default_factory=dict)

    def observe(self, series: Series, value: float) -> None:
        """One observation of a histogram series."""
        observed = self.observed.get(series)
        if observed is None:
            observed = self.observed[series] = []
        observed.append(value)

    def count(self, series: Series, counts: Iterable[str] | Mapping[str, int]) -> None:
        """Occurrences of a counter series by its ``by`` label: names (once each) or counts."""
        tally = self.counted.get(series)
        if tally is None:
            tally = self.counted[series] = Tally()
        tally.update(counts)


def target_buckets(target: Mapping[str, Any]) -> tuple[float, ...]:
    """Ten equal steps over a card's target range, with one step either side of it, so a
    prediction outside the training targets shows: Boston's 5 to 50 gives 0.5, 5, 9.5, ..., 50, 54.5."""
    low, high = target.get("train_min"), target.get("train_max")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (low, high)):
        return VALUE_BUCKETS
    if not high > low:  # type: ignore[operator]
        return VALUE_BUCKETS
    step = (high - low) / 10  # type: ignore[operator]
    return tuple(float(f"{low + step * i:.6g}") for i in range(-1, 12))


class SignalMetrics:
    """The signal series of one app, and the labelled children it has used, looked up once."""

    def __init__(self, registry: CollectorRegistry, series: Iterable[Series] = ()) -> None:
        self.registry = registry
        self.families: dict[Series, Any] = {}
        for declared in series:
            self._family(declared)
        self.labels = Counter(
            "model_predictions_by_label", "Items answered with this label.",
            ["model", "version", "label"], registry=registry,
        )  # fmt: skip
        self.values = ValueHistograms()
        registry.register(self.values)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _family(self, series: Series) -> Any:
        """The Prometheus metric of a series, made at its first use if no kind declared it."""
        family = self.families.get(series)
        if family is None:
            names = ["model", "version", *([series.by] if series.by else [])]
            if series.buckets is not None:
                family = Histogram(series.name, series.help, names, buckets=series.buckets,
                                   registry=self.registry)  # fmt: skip
            else:
                family = Counter(series.name, series.help, names, registry=self.registry)
            self.families[series] = family
        return family

    def record(self, model: str, version: str, seen: Signals) -> None:
        """Everything one request showed, in a handful of cached lookups."""
        for series, observations in seen.observed.items():
            child = self._child((series, model, version),
                                lambda s=series: self._family(s).labels(model, version))  # fmt: skip
            observe_all(child, observations)
        for series, tally in seen.counted.items():
            for key, count in tally.items():
                self._child((series, model, version, key),
                            lambda s=series, k=key: self._family(s).labels(model, version, k)).inc(count)  # fmt: skip
        if seen.labels:
            counts = {seen.labels[0]: 1} if len(seen.labels) == 1 else Tally(seen.labels)
            for label, items in counts.items():
                self._child(("label", model, version, label),
                            lambda x=label: self.labels.labels(model, version, x)).inc(items)  # fmt: skip
        if seen.values:
            values = self._child(("value", model, version),
                                 lambda: self.values.child(model, version, seen.value_buckets))  # fmt: skip
            observe_all(values, seen.values)

    def _child(self, key: tuple[Any, ...], make: Any) -> Any:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = make()
        return child


def observe_all(histogram: Any, values: list[float] | list[int]) -> None:
    """``observe`` each value, with one update per bucket and one of the sum for the lot.

    With several workers every update of a histogram's value is a locked write to its worker's
    metrics file, about 1 to 4 µs: a batch of 1,000 texts observed one by one would spend 2,000
    of those on the two text histograms. Grouped, a batch costs at most one per bucket. This
    reads the child's bucket bounds and values, which prometheus-client keeps private (its
    ``observe`` does the same, one value at a time): a version without them gets ``observe``.
    """
    bounds, buckets, total = (
        getattr(histogram, attr, None) for attr in ("_upper_bounds", "_buckets", "_sum")
    )
    if len(values) < 4 or bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    counts = Tally(bisect_left(bounds, value) for value in values)
    for index, count in counts.items():
        buckets[index].inc(count)
    total.inc(sum(values))


class ValueHistograms(Collector):
    """``model_predicted_value``, with each model version's own buckets.

    A prometheus-client histogram has one set of buckets for all its series, but Boston's
    prices and another model's targets need different ones. So each model version gets its own
    unregistered ``Histogram`` of the same name; this collector renders them as one family.
    With several workers, their values go to the multiprocess files like any other metric's, and
    the multiprocess collector merges series whatever their buckets.
    """

    NAME = "model_predicted_value"
    HELP = "Predicted values of regression models, in buckets over the card's target range."

    def __init__(self) -> None:
        self.histograms: dict[tuple[str, str], Histogram] = {}

    def child(self, model: str, version: str, buckets: Iterable[float]) -> Any:
        histogram = self.histograms.get((model, version))
        if histogram is None:
            histogram = Histogram(self.NAME, self.HELP, ["model", "version"], buckets=tuple(buckets),
                                  registry=None)  # fmt: skip
            self.histograms[(model, version)] = histogram
        return histogram.labels(model, version)

    def collect(self) -> Iterator[Metric]:
        family = Metric(self.NAME, self.HELP, "histogram")
        for histogram in list(self.histograms.values()):
            for metric in histogram.collect():
                family.samples.extend(metric.samples)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield Metric(self.NAME, self.HELP, "histogram")
