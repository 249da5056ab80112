"""What the models see and say, per model and version, in ``/metrics``: the signals of drift.

A kind fills one ``Signals`` record per request while it answers (``Kind.answer``,
``Kind.v2_answer``): the words of each text and how many of them the model could not read, the
features outside their training range, the labels it gave, the values it predicted. The
protocol adapters hand the record to ``SignalMetrics.record``. So the kinds never see
Prometheus, and no module outside a kind knows what a model's inputs or outputs are.

The series, labelled ``model`` and ``version``:

* ``model_input_text_words`` (histogram): words per text, as the tokenizer splits it.
* ``model_input_unknown_word_ratio`` (histogram): per text of at least one word, the share of
  its words that do not reach the model as themselves: words missing from the word index
  (dropped) plus words in the index whose rank is at or past ``num_words`` (read as the
  out-of-vocabulary id). For word-id sequences, the words are the ids from 2 up (0 pads, 1
  starts) and the unknown ones are the out-of-vocabulary id 2 and ids at or past ``num_words``.
* ``model_input_out_of_range_total{feature}`` (counter): rows with that feature outside
  ``[train_min, train_max]`` of the card.
* ``model_predictions_by_label_total{label}`` (counter): items answered with that label.
* ``model_predicted_value`` (histogram): regression outputs, in buckets spread over the card's
  target range (``target.train_min`` to ``train_max``), each model version its own.

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

WORDS_BUCKETS = (0, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)
UNKNOWN_RATIO_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
VALUE_BUCKETS = (0.1, 0.5, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000)
"""For a regressor whose card gives no target range."""


@dataclass(slots=True)
class Signals:
    """What one request showed a kind; empty lists for what its kind does not measure."""

    text_words: list[int] = field(default_factory=list)
    unknown_ratios: list[float] = field(default_factory=list)
    out_of_range: Tally[str] = field(default_factory=Tally)
    labels: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    value_buckets: tuple[float, ...] = VALUE_BUCKETS

    def text(self, words: int, unknown: int) -> None:
        """One text (or word-id sequence): its words, and how many the model could not read."""
        self.text_words.append(words)
        if words:
            self.unknown_ratios.append(unknown / words)


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

    def __init__(self, registry: CollectorRegistry) -> None:
        self.words = Histogram(
            "model_input_text_words", "Words per input text (or word ids past the start id per sequence).",
            ["model", "version"], buckets=WORDS_BUCKETS, registry=registry,
        )  # fmt: skip
        self.unknown = Histogram(
            "model_input_unknown_word_ratio",
            "Per text of at least one word: share of its words not in the served vocabulary "
            "(missing from the word index, or ranked at or past num_words).",
            ["model", "version"], buckets=UNKNOWN_RATIO_BUCKETS, registry=registry,
        )  # fmt: skip
        self.out_of_range = Counter(
            "model_input_out_of_range", "Input rows with this feature outside its training range.",
            ["model", "version", "feature"], registry=registry,
        )  # fmt: skip
        self.labels = Counter(
            "model_predictions_by_label", "Items answered with this label.",
            ["model", "version", "label"], registry=registry,
        )  # fmt: skip
        self.values = ValueHistograms()
        registry.register(self.values)
        self._children: dict[tuple[str, ...], Any] = {}

    def record(self, model: str, version: str, seen: Signals) -> None:
        """Everything one request showed, in a handful of cached lookups."""
        if seen.text_words:
            words = self._child(
                ("words", model, version), lambda: self.words.labels(model, version)
            )
            observe_all(words, seen.text_words)
            unknown = self._child(
                ("unknown", model, version), lambda: self.unknown.labels(model, version)
            )
            observe_all(unknown, seen.unknown_ratios)
        for feature, rows in seen.out_of_range.items():
            self._child(("range", model, version, feature),
                        lambda f=feature: self.out_of_range.labels(model, version, f)).inc(rows)  # fmt: skip
        if seen.labels:
            for label, items in Tally(seen.labels).items():
                self._child(("label", model, version, label),
                            lambda x=label: self.labels.labels(model, version, x)).inc(items)  # fmt: skip
        if seen.values:
            values = self._child(("value", model, version),
                                 lambda: self.values.child(model, version, seen.value_buckets))  # fmt: skip
            observe_all(values, seen.values)

    def _child(self, key: tuple[str, ...], make: Any) -> Any:
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
