"""Train/serve parity on the real data.

* raw text → service.contract.vectorize gives exactly the Keras sequence, for every IMDB test review and
  every Reuters newswire;
* the API's answers on raw text equal the offline Keras model's on the Keras sequences;
* the committed models give the same outputs on both serving engines (ONNX Runtime on
  ``model.onnx``; the Keras fallback's numpy backend) as on TensorFlow.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from service.contract.artifacts import MODEL_FILE, read_word_index
from service.serving.registry import PARITY_EPSILONS
from service.engine.runtime import ONNX_FILE, OnnxRuntime
from service.contract.vectorize import NUM_WORDS, WordIndex, hot_positions, multi_hot, tokenize
from tests.conftest import REPO, SHARED_DATA
from training.datasets import DataSource, keras_sequences, load_boston, load_npz, load_reuters

pytestmark = pytest.mark.skipif(
    not (SHARED_DATA / "imdb" / "aclImdb_test.tar.gz").is_file(),
    reason=f"the raw IMDB and Reuters texts are not under {SHARED_DATA}",
)
SAMPLE = 250


@pytest.fixture(scope="module")
def imdb_test(keras_data) -> tuple[list[str], list[list[int]], np.ndarray]:
    """Raw test reviews with their Keras sequences and labels, in imdb.npz's own order
    (sorted positive file names, then sorted negative ones), before Keras' shuffle."""
    with tarfile.open(SHARED_DATA / "imdb" / "aclImdb_test.tar.gz") as archive:
        members = {m.name: m for m in archive.getmembers() if m.isfile()}
        order = sorted(n for n in members if "/pos/" in n) + sorted(n for n in members if "/neg/" in n)
        texts = [archive.extractfile(members[name]).read().decode("utf-8") for name in order]
    data = load_npz(keras_data / "imdb.npz")
    return texts, keras_sequences(data["x_test"], NUM_WORDS), data["y_test"]


@pytest.fixture(scope="module")
def reuters_test(keras_data) -> tuple[list[str], list[list[int]], np.ndarray]:
    """Raw test newswires with their Keras-split sequences and labels (seed 113, test 0.2)."""
    split = load_reuters(DataSource(keras_data))
    with gzip.open(SHARED_DATA / "keras" / "reuters46_texts_keras_order.jsonl.gz", "rt") as lines:
        rows = [json.loads(line) for line in lines]
    test = sorted((r for r in rows if r["keras_split"] == "test"), key=lambda r: r["keras_pos"])
    return [r["text"] for r in test], list(split.x_test), split.y_test


def test_every_raw_imdb_test_review_encodes_to_its_keras_sequence(imdb_test, artifacts):
    texts, sequences, _ = imdb_test
    word_index = WordIndex(read_word_index(artifacts["imdb"]))
    mismatches = [i for i, (t, s) in enumerate(zip(texts, sequences)) if word_index.encode(t) != s]
    assert len(texts) == 25_000
    assert mismatches == []


def test_every_raw_reuters_test_newswire_encodes_to_its_keras_sequence(reuters_test, artifacts):
    texts, sequences, labels = reuters_test
    word_index = WordIndex(read_word_index(artifacts["reuters"]))
    assert len(texts) == 2_246
    assert [word_index.encode(t) for t in texts] == [list(s) for s in sequences]


def test_raw_text_and_keras_sequence_give_the_same_multi_hot(imdb_test, artifacts):
    texts, sequences, _ = imdb_test
    word_index = WordIndex(read_word_index(artifacts["imdb"]))
    picks = range(0, 25_000, 25_000 // SAMPLE)
    by_text = multi_hot(word_index.encode(texts[i]) for i in picks)
    assert np.array_equal(by_text, multi_hot(sequences[i] for i in picks))


@pytest.mark.parametrize("name", ["imdb", "reuters"])
def test_the_servers_one_pass_reading_gives_the_multi_hot_and_counts_of_encode(
    name, imdb_test, reuters_test, artifacts
):
    """``WordIndex.read`` (a set of ids, issue 25) against ``hot_positions(encode(text))`` and
    the counts of ``encode_counting_unknown``, on every raw test text."""
    texts = (imdb_test if name == "imdb" else reuters_test)[0]
    word_index = WordIndex(read_word_index(artifacts[name]))
    for text in texts:
        positions, words, unknown = word_index.read(text)
        sequence, expected_unknown = word_index.encode_counting_unknown(text)
        assert np.array_equal(positions, hot_positions(sequence))
        assert (words, unknown) == (len(tokenize(text)), expected_unknown)


def test_the_tfidf_weighing_equals_its_definition_on_every_raw_test_text(imdb_test, reuters_test):
    """``TfidfBag.weigh`` (rewritten for speed in issue 25) against the rules written out
    plainly: the vocabulary's terms among the text's words and word pairs, counted, sorted by
    id, sublinear tf times idf; words outside the vocabulary counted as unknown."""
    from collections import Counter

    from service.contract.tfidf import TfidfBag, ngrams

    for name, texts in (("imdb", imdb_test[0]), ("reuters", reuters_test[0])):
        bag = TfidfBag.read(REPO / "models" / name / "2", json.loads(
            (REPO / "models" / name / "2" / "metadata.json").read_text())["preprocessing"])  # fmt: skip
        ids = {term: i for i, term in enumerate(bag.terms, start=1)}
        for text in texts[:: 5 if name == "imdb" else 1]:
            tokens = tokenize(text)
            counts = Counter(ids[t] for t in ngrams(tokens, bag.ngram_max) if t in ids)
            terms = sorted(counts)
            tf = 1.0 + np.log(np.array([counts[t] for t in terms], dtype=np.float64))
            expected_weights = tf * bag.idf[np.array(terms, dtype=np.int64) - 1] if terms else tf
            got_terms, got_weights, words, unknown = bag.weigh(text)
            assert got_terms.tolist() == terms and np.array_equal(got_weights, expected_weights)
            assert (words, unknown) == (len(tokens), sum(t not in ids for t in tokens))


@pytest.mark.parametrize("name", ["imdb", "reuters"])
def test_the_kernel_row_sums_equal_onnx_runtime_on_every_raw_test_text(
    name, imdb_test, reuters_test, artifacts
):
    """The served first layer as sums of kernel rows (issue 25) against ONNX Runtime on the
    dense multi-hot rows, on every raw test text: the same outputs to float32 precision (the
    order of the sums differs; ``PARITY_EPSILONS`` relative, at least 1), the same labels."""
    from service.serving.registry import load_model

    texts = (imdb_test if name == "imdb" else reuters_test)[0]
    kind = load_model(artifacts[name], name).kind
    assert kind.runtime.network is not None, "the gather path was not taken"
    for start in range(0, len(texts), 500):
        chunk = texts[start : start + 500]
        positions = kind.positions(chunk)
        served = kind.predict(positions)
        dense = kind.runtime(multi_hot(kind.word_index.encode(t) for t in chunk))
        allowed = PARITY_EPSILONS * np.finfo(np.float32).eps * np.maximum(np.abs(dense), 1.0)
        assert (np.abs(served.astype(np.float64) - dense) <= allowed).all()
        assert kind.labels_of(served) == kind.labels_of(dense)


def offline(artifacts, name: str):
    import keras

    return keras.saving.load_model(artifacts[name] / MODEL_FILE, compile=False, safe_mode=True)


def test_api_on_raw_reviews_equals_the_offline_model_on_keras_sequences(api, imdb_test, artifacts):
    texts, sequences, _ = imdb_test
    picks = list(range(0, 25_000, 25_000 // SAMPLE))
    expected = offline(artifacts, "imdb").predict_on_batch(multi_hot(sequences[i] for i in picks))
    answer = api.post("/imdb/predict", json={"texts": [texts[i] for i in picks]}).json()
    served = np.array([p["probability"] for p in answer["predictions"]])
    assert len(served) >= 200
    np.testing.assert_allclose(served, np.asarray(expected)[:, 0], rtol=0, atol=1e-5)


def test_api_on_raw_newswires_equals_the_offline_model_on_keras_sequences(api, reuters_test, artifacts):
    texts, sequences, _ = reuters_test
    picks = list(range(0, 2_246, 2_246 // SAMPLE))[:SAMPLE]
    expected = offline(artifacts, "reuters").predict_on_batch(multi_hot(sequences[i] for i in picks))
    answer = api.post("/reuters/predict", json={"texts": [texts[i] for i in picks]}).json()
    served = np.array([p["probabilities"] for p in answer["predictions"]])
    assert served.shape == (SAMPLE, 46)
    np.testing.assert_allclose(served, np.asarray(expected), rtol=0, atol=1e-5)


def test_api_on_the_102_boston_test_rows_gives_the_recorded_mae(api, keras_data, artifacts):
    split = load_boston(DataSource(keras_data))
    answer = api.post("/boston/predict", json={"instances": split.x_test.tolist()}).json()
    prices = np.array([p["price"] for p in answer["predictions"]])
    recorded = json.loads((artifacts["boston"] / "metadata.json").read_text())["metrics"]
    assert len(prices) == 102
    assert abs(np.mean(np.abs(prices - split.y_test)) - recorded["test_mae"]) < 1e-4


NUMPY_BACKEND_OUTPUTS = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "numpy"
import keras, numpy as np
inputs, folders = np.load(sys.argv[1]), json.loads(sys.argv[2])
outputs = {name: np.asarray(keras.saving.load_model(f"{folders[name]}/model.keras",
           compile=False, safe_mode=True)(inputs[name])) for name in inputs.files}
np.savez(sys.argv[3], **outputs)
"""


def test_tensorflow_and_both_serving_engines_give_the_same_outputs(imdb_test, reuters_test, keras_data,
                                                                  artifacts, tmp_path):
    import keras

    assert keras.backend.backend() == "tensorflow", "run the test suite with TensorFlow installed"
    picks = range(0, 2_000, 10)
    inputs = {
        "imdb": multi_hot(imdb_test[1][i] for i in picks),
        "reuters": multi_hot(reuters_test[1][i] for i in picks),
        "boston": load_boston(DataSource(keras_data)).x_test.astype("float32"),
    }
    np.savez(tmp_path / "inputs.npz", **inputs)
    subprocess.run(
        [sys.executable, "-c", NUMPY_BACKEND_OUTPUTS, tmp_path / "inputs.npz",
         json.dumps({name: str(folder) for name, folder in artifacts.items()}),
         tmp_path / "outputs.npz"], check=True, timeout=120,
    )  # fmt: skip
    numpy_outputs = np.load(tmp_path / "outputs.npz")
    for name, x in inputs.items():
        tensorflow_output = np.asarray(offline(artifacts, name)(x))
        # Two backends, two summation orders (TensorFlow's kernels vs NumPy's, per CPU): float32
        # promises agreement within a few units in the last place at the value's size, the
        # registry's load-time bound (PARITY_EPSILONS relative, at least 1): 1.9e-6 on a
        # probability, 3.8e-5 on a price near 20 ($1000s, under a cent).
        allowed = PARITY_EPSILONS * np.finfo(np.float32).eps * np.maximum(np.abs(tensorflow_output), 1.0)
        onnx_output = OnnxRuntime(artifacts[name] / ONNX_FILE)(x)
        for engine, output in (("ONNX Runtime", onnx_output), ("numpy backend", numpy_outputs[name])):
            gap = np.abs(output.astype(np.float64) - tensorflow_output)
            assert (gap <= allowed).all(), f"{name} on {engine}: largest gap {gap.max():.3g}"
