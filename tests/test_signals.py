"""The signals of what the models see and say are exact, per model and version, summed over
workers: a real service with ``WORKERS=2`` gets known inputs (texts with a known number of
unknown words, word-id sequences, Boston rows with CRIM outside its training range) through
REST and V2, each request on a fresh connection, and ``/metrics`` must show exactly their
counts and sums; the per-process metric files show that both workers took part."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from service.contract.artifacts import read_word_index
from service.kinds.text import TEXT_WORDS, UNKNOWN_WORD_RATIO, note_text
from service.observe.drift import Signals, target_buckets
from service.contract.vectorize import INDEX_FROM
from tests.serverproc import running_server

FRESH = {"Connection": "close"}
ROUNDS = 12


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def rare_word(folder: Path) -> str:
    """A word in the index whose rank is past the model's num_words: read as out of vocabulary."""
    card = json.loads((folder / "metadata.json").read_text())
    num_words = card["preprocessing"]["num_words"]
    index = read_word_index(folder)
    return next(w for w, rank in index.items() if rank + INDEX_FROM >= num_words and w.isalpha())


def post(url: str, path: str, body: dict) -> httpx.Response:
    response = httpx.post(url + path, json=body, headers=FRESH, timeout=30)
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def models(tmp_path: Path, models_dir: Path) -> Path:
    """Version 1 of each book model, the multi-hot networks these inputs are counted for (a
    word index, word-id sequences), whatever newer versions the repository holds."""
    folder = tmp_path / "models"
    for name in ("imdb", "reuters", "boston"):
        shutil.copytree(models_dir / name / "1", folder / name / "1")
    return folder


def test_signals_are_exact_per_model_version_and_summed_over_two_workers(tmp_path, models):
    oov = rare_word(models / "imdb" / "1")
    # words: 4 (0 unknown), 3 (1 not in the index), 2 (1 ranked past num_words), 0 (no ratio)
    texts = ["The movie was GREAT", "the zzqqxx film", f"the {oov}", "!!! ..."]
    # word ids from 2 up are words; 2 and ids past num_words are unknown: 4 words, 2 unknown
    sequence = [1, 2, 5, 20_000, 40]
    boston = json.loads((models / "boston" / "1" / "metadata.json").read_text())
    inside = [f["train_mean"] for f in boston["features"]]
    crim_out = [boston["features"][0]["train_max"] * 2, *inside[1:]]
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {"WORKERS": "2", "MODELS_DIR": str(models), "ACCESS_LOG": "false",
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}  # fmt: skip

    labels: Counter[tuple[str, str]] = Counter()
    prices: list[float] = []
    with running_server(tmp_path / "server.log", env=env) as server:
        for _ in range(ROUNDS):
            for p in post(server.url, "/imdb/predict", {"texts": texts}).json()["predictions"]:
                labels["imdb", p["label"]] += 1
            reply = post(server.url, "/reuters/predict", {"sequences": [sequence]}).json()
            labels["reuters", reply["predictions"][0]["label"]] += 1
            reply = post(server.url, "/boston/predict", {"instances": [crim_out, inside]}).json()
            prices += [p["price"] for p in reply["predictions"]]
            # V2: one more text (3 words, 1 unknown) and one more out-of-range row
            tensor = {
                "name": "text",
                "datatype": "BYTES",
                "shape": [1],
                "data": ["the zzqqxx film"],
            }
            reply = post(server.url, "/v2/models/imdb/infer", {"inputs": [tensor]}).json()
            labels["imdb", reply["outputs"][1]["data"][0]] += 1
            tensor = {"name": "features", "datatype": "FP64", "shape": [1, 13], "data": crim_out}
            reply = post(server.url, "/v2/models/boston/infer", {"inputs": [tensor]}).json()
            prices.append(reply["outputs"][0]["data"][0])
        scraped = samples(httpx.get(server.url + "/metrics", headers=FRESH).text)
        per_worker = {
            path.name.rsplit("_", 1)[1]: samples_of_files([path])
            for path in metrics_dir.glob("histogram_*.db")
        }

    imdb, reuters, bos = ({"model": m, "version": "1"} for m in ("imdb", "reuters", "boston"))
    # texts: 4 per REST request + 1 per V2 request
    assert value(scraped, "model_input_text_words_count", **imdb) == 5 * ROUNDS
    assert value(scraped, "model_input_text_words_sum", **imdb) == (4 + 3 + 2 + 0 + 3) * ROUNDS
    assert value(scraped, "model_input_text_words_bucket", le="0.0", **imdb) == ROUNDS
    assert value(scraped, "model_input_text_words_bucket", le="5.0", **imdb) == 5 * ROUNDS
    # the empty text has no ratio; the others: 0, 1/3, 1/2 and (V2) 1/3
    assert value(scraped, "model_input_unknown_word_ratio_count", **imdb) == 4 * ROUNDS
    assert value(scraped, "model_input_unknown_word_ratio_sum", **imdb) == pytest.approx(
        (0 + 1 / 3 + 1 / 2 + 1 / 3) * ROUNDS
    )
    assert value(scraped, "model_input_unknown_word_ratio_bucket", le="0.0", **imdb) == ROUNDS
    assert value(scraped, "model_input_unknown_word_ratio_bucket", le="0.3", **imdb) == ROUNDS
    assert value(scraped, "model_input_unknown_word_ratio_bucket", le="0.5", **imdb) == 4 * ROUNDS
    assert value(scraped, "model_input_text_words_sum", **reuters) == 4 * ROUNDS
    assert value(scraped, "model_input_unknown_word_ratio_sum", **reuters) == 0.5 * ROUNDS

    # out of range: CRIM in 1 of the 2 REST rows and in the V2 row; nothing else
    assert value(scraped, "model_input_out_of_range_total", feature="CRIM", **bos) == 2 * ROUNDS
    assert {
        dict(k[1]).get("feature") for k in scraped if k[0] == "model_input_out_of_range_total"
    } == {"CRIM"}

    # labels: exactly the labels answered
    for (model, label), count in labels.items():
        assert (
            value(
                scraped, "model_predictions_by_label_total", model=model, version="1", label=label
            )
            == count
        )
    counted = sum(
        v for (name, _), v in scraped.items() if name == "model_predictions_by_label_total"
    )
    assert counted == sum(labels.values()) == 6 * ROUNDS

    # values: every price answered, in buckets over the card's 5-50 target range
    assert value(scraped, "model_predicted_value_count", **bos) == len(prices) == 3 * ROUNDS
    assert value(scraped, "model_predicted_value_sum", **bos) == pytest.approx(
        sum(prices), rel=1e-5
    )
    for bound in target_buckets(boston["target"]):
        below = sum(1 for price in prices if price <= bound)
        assert value(scraped, "model_predicted_value_bucket", le=repr(float(bound)), **bos) == below

    # both workers took part, and the scrape is their sum
    counts = [value(s, "model_input_text_words_count", **imdb) for s in per_worker.values()]
    assert len([c for c in counts if c > 0]) == 2, f"one worker served every request: {counts}"
    assert sum(counts) == 5 * ROUNDS


def samples_of_files(files: list[Path]) -> dict:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for metric in MultiProcessCollector.merge([str(f) for f in files], accumulate=True)
        for s in metric.samples
    }


def test_a_text_of_no_words_counts_zero_words_and_no_ratio():
    seen = Signals()
    note_text(seen, 0, 0)
    note_text(seen, 4, 1)
    assert (seen.observed[TEXT_WORDS], seen.observed[UNKNOWN_WORD_RATIO]) == ([0, 4], [0.25])


def test_value_buckets_spread_over_the_card_target_range_with_a_step_either_side():
    assert target_buckets({"train_min": 5.0, "train_max": 50.0}) == (
        0.5, 5.0, 9.5, 14.0, 18.5, 23.0, 27.5, 32.0, 36.5, 41.0, 45.5, 50.0, 54.5,
    )  # fmt: skip
    # no usable range: generic buckets, never an error
    assert target_buckets({}) == target_buckets({"train_min": 3, "train_max": 3})
    assert len(target_buckets({"train_min": "a", "train_max": 2})) > 5


def test_a_batch_observed_at_once_gives_the_histogram_of_observing_each_value():
    from prometheus_client import CollectorRegistry, Histogram

    from service.observe.drift import observe_all

    values = [0, 0.01, 0.5, 0.3, 1.0, 7, 5, 0.0099, 0.01, 12.5] * 7

    def rendered(observe) -> dict:
        registry = CollectorRegistry()
        histogram = Histogram(
            "h", "h", ["model"], buckets=(0, 0.01, 0.5, 1.0, 5), registry=registry
        )
        observe(histogram.labels("m"))
        return {
            k: v for k, v in samples_of_registry(registry).items() if not k[0].endswith("_created")
        }

    one_by_one = rendered(lambda child: [child.observe(v) for v in values])
    assert rendered(lambda child: observe_all(child, values)) == one_by_one
    assert one_by_one[("h_bucket", frozenset({("model", "m"), ("le", "0.01")}))] == 4 * 7


def samples_of_registry(registry) -> dict:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for m in registry.collect()
        for s in m.samples
    }
