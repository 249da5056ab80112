"""The version-2 IMDB and Reuters networks (issue 16): TF-IDF bags of words and word pairs.

* the vectorization's rules hold on a small corpus, and a vocabulary file round-trips;
* through the real HTTP API, on the full raw test sets, version 2 meets the targets (IMDB
  ≥ 0.905, Reuters ≥ 0.82) and answers what its card records;
* parity on raw text: the served probabilities equal the offline path's (training's
  vectorization + the Keras model of record);
* an unknown word, a text with no known word, Keras word ids and V2 behave.

``V2_MODELS`` is the one place that says where the version-2 folders are: the staging folder
until the lead moves them into ``models/`` (then point it there).
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import tarfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.contract.tfidf import PAD_ID, TfidfBag, pad, terms_of
from tests.conftest import REPO, SHARED_DATA
from tests.serverproc import running_server

V2_MODELS = REPO / "models"
"""Where ``imdb/2`` and ``reuters/2`` are (``python -m training train NAME --recipe improved
--version 2``)."""
TARGETS = {"imdb": 0.905, "reuters": 0.82}
BATCH = 500

# --- The vectorization's rules ------------------------------------------------------------

CORPUS = ["good film, good acting", "bad film", "a good plot; bad acting", "film"]


def test_terms_are_the_tokenizer_s_words_then_adjacent_pairs():
    assert terms_of("Good FILM, good acting<br />") == [
        "good", "film", "good", "acting", "br",
        "good film", "film good", "good acting", "acting br",
    ]  # fmt: skip


def test_the_vocabulary_keeps_the_terms_in_most_documents_with_the_smooth_idf():
    bag = TfidfBag.fit(CORPUS, size=3, min_df=2)
    # film: 3 documents; good, bad, acting: 2 each, alphabetical on the tie
    assert bag.terms == ["film", "acting", "bad"]
    assert bag.idf[0] == pytest.approx(math.log(5 / 4) + 1)
    assert bag.idf[1] == pytest.approx(math.log(5 / 3) + 1)


def test_a_row_is_sublinear_tf_times_idf_scaled_to_unit_length():
    bag = TfidfBag.fit(CORPUS, size=100, min_df=1)
    terms, weights = bag.row("good film good")
    by_term = dict(zip((bag.term(int(i)) for i in terms), weights.tolist()))
    idf = dict(zip(bag.terms, bag.idf.tolist()))
    raw = {"good": (1 + math.log(2)) * idf["good"], "film": idf["film"],
           "good film": idf["good film"], "film good": idf["film good"]}  # fmt: skip
    norm = math.sqrt(sum(v * v for v in raw.values()))
    assert by_term == pytest.approx({term: value / norm for term, value in raw.items()}, rel=1e-6)
    assert list(terms) == sorted(terms)


def test_unknown_words_are_dropped_and_an_empty_row_is_padding():
    bag = TfidfBag.fit(CORPUS, size=10, min_df=2)
    assert bag.row("zzqx qqzv")[0].size == 0
    terms, _, words, unknown = bag.weigh("good zzqx film")
    assert (words, unknown) == (3, 1)
    assert [bag.term(int(i)) for i in terms] == ["film", "good"]
    batch = bag.encode(["", "good film"])
    assert batch.terms.shape == batch.weights.shape == (2, 2)
    assert batch.terms[0].tolist() == [PAD_ID, PAD_ID] and batch.weights[0].tolist() == [0.0, 0.0]
    assert pad([], None).terms.shape == (0, 1)


def test_the_vocabulary_file_round_trips_and_is_checked_against_the_card(tmp_path):
    bag = TfidfBag.fit(CORPUS, size=100, min_df=1)
    (tmp_path / "vocabulary.json").write_text(bag.to_json(), encoding="utf-8")
    again = TfidfBag.read(tmp_path, bag.card())
    assert again.terms == bag.terms and np.array_equal(again.idf, bag.idf)
    for a, b in zip(bag.encode(CORPUS).feeds().values(), again.encode(CORPUS).feeds().values()):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="terms, the card says"):
        TfidfBag.read(tmp_path, {**bag.card(), "vocabulary_size": bag.size + 1})


# --- The trained models, served -------------------------------------------------------------

requires_v2 = pytest.mark.skipif(
    not all((V2_MODELS / name / "2" / "metadata.json").is_file() for name in TARGETS)
    or not (SHARED_DATA / "imdb" / "aclImdb_test.tar.gz").is_file(),
    reason=f"needs the version-2 folders under {V2_MODELS} and the raw texts under {SHARED_DATA}",
)


def imdb_test_texts() -> tuple[list[str], np.ndarray]:
    with tarfile.open(SHARED_DATA / "imdb" / "aclImdb_test.tar.gz") as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
        texts = [archive.extractfile(m).read().decode("utf-8") for m in members]  # type: ignore[union-attr]
        labels = np.array([1 if "/pos/" in m.name else 0 for m in members])
    return texts, labels


def reuters_test_texts() -> tuple[list[str], np.ndarray]:
    with gzip.open(SHARED_DATA / "keras" / "reuters46_texts_keras_order.jsonl.gz", "rt") as lines:
        rows = [row for row in map(json.loads, lines) if row["keras_split"] == "test"]
    return [r["text"] for r in rows], np.array([r["label"] for r in rows])


@pytest.fixture(scope="module")
def served(tmp_path_factory, models_dir: Path) -> httpx.Client:
    """A real server over version 1 of the book models plus the version-2 text models."""
    from service.api.book import BOOK_MODELS
    from service.contract.artifacts import version_folders

    models = tmp_path_factory.mktemp("improved") / "models"
    for name in BOOK_MODELS:
        shutil.copytree(version_folders(models_dir / name)[1], models / name / "1")
    for name in TARGETS:
        shutil.copytree(V2_MODELS / name / "2", models / name / "2")
    log = tmp_path_factory.mktemp("improved-log") / "server.log"
    with (
        running_server(log, env={"MODELS_DIR": str(models)}) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        yield client


def predict(client: httpx.Client, name: str, texts: list[str], **extra: object) -> list[dict]:
    answers: list[dict] = []
    for i in range(0, len(texts), BATCH):
        response = client.post(
            f"/{name}/predict", json={"texts": texts[i : i + BATCH], "version": 2, **extra}
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == {"name": name, "version": "2"}
        answers += response.json()["predictions"]
    return answers


def card(name: str) -> dict:
    return json.loads((V2_MODELS / name / "2" / "metadata.json").read_text())


@requires_v2
def test_imdb_version_2_meets_the_target_on_all_25000_raw_test_reviews(served):
    texts, labels = imdb_test_texts()
    answers = predict(served, "imdb", texts)
    accuracy = np.mean([(a["label"] == "positive") == bool(y) for a, y in zip(answers, labels)])
    assert len(answers) == 25_000
    assert accuracy >= TARGETS["imdb"]
    # the card's figure came from TensorFlow on other batches: a review within float32 rounding of
    # the 0.5 threshold could land on the other side, so one answer of 25,000 may differ
    assert accuracy == pytest.approx(card("imdb")["metrics"]["test_accuracy"], abs=1.5 / 25_000)


@pytest.fixture(scope="module")
def reuters_accuracy(served) -> float:
    """Version 2's accuracy through the API on all 2,246 raw test newswires."""
    texts, labels = reuters_test_texts()
    answers = predict(served, "reuters", texts)
    assert len(answers) == 2_246
    return float(np.mean([a["class_id"] == y for a, y in zip(answers, labels)]))


@requires_v2
def test_reuters_version_2_answers_its_card_s_figure_and_beats_version_1(reuters_accuracy):
    assert reuters_accuracy == pytest.approx(
        card("reuters")["metrics"]["test_accuracy"], abs=1.5 / 2_246
    )
    assert reuters_accuracy > 0.7907 + 0.025  # version 1: 0.7907 ± 0.0012 over 3 seeds


@requires_v2
def test_reuters_version_2_meets_the_target_on_all_2246_raw_test_newswires(reuters_accuracy):
    assert reuters_accuracy >= TARGETS["reuters"]


@requires_v2
@pytest.mark.parametrize("name", list(TARGETS))
def test_served_answers_equal_the_offline_keras_model_on_raw_text(served, name):
    import keras

    from training.tfidf_networks import predict_texts

    folder = V2_MODELS / name / "2"
    model = keras.saving.load_model(folder / "model.keras", compile=False, safe_mode=True)
    bag = TfidfBag.read(folder, card(name)["preprocessing"])
    texts = (imdb_test_texts() if name == "imdb" else reuters_test_texts())[0][::50]
    offline = predict_texts(model, bag, texts)
    answers = predict(served, name, texts)
    got = np.array([[a["probability"]] if name == "imdb" else a["probabilities"] for a in answers])
    assert got.shape == offline.shape
    np.testing.assert_allclose(got, offline, atol=2e-6)


@requires_v2
def test_words_the_vocabulary_lacks_change_nothing(served):
    base = served.post("/imdb/predict", json={"text": "a wonderful film", "version": 2}).json()
    noisy = served.post(
        "/imdb/predict", json={"text": "a wonderful zzqxv film", "version": 2}
    ).json()
    none = served.post(
        "/imdb/predict", json={"texts": ["zzqxv", "qqzvx wwkq"], "version": 2}
    ).json()
    assert base["predictions"][0]["label"] == "positive"
    # the unknown word breaks the pair "wonderful film", so only a text of unknown words alone
    # is compared exactly: two texts with no known term give the network's bias, the same number
    assert noisy["predictions"][0]["label"] == "positive"
    first, second = none["predictions"]
    assert first == second


@requires_v2
def test_empty_text_is_refused_as_for_version_1(served):
    response = served.post("/imdb/predict", json={"text": "", "version": 2})
    assert response.status_code == 422


@requires_v2
@pytest.mark.parametrize("path", ["/imdb/predict", "/reuters/predict"])
def test_keras_word_ids_are_refused_by_version_2_and_say_why(served, path):
    response = served.post(path, json={"sequences": [[1, 14, 22]], "version": 2})
    assert response.status_code == 422
    assert "reads raw text only" in response.text
    assert served.post(path, json={"sequences": [[1, 14, 22]], "version": 1}).status_code == 200


@requires_v2
def test_explanations_name_terms_with_their_exact_effect(served):
    text = "A wonderful film. I did not like the ending, but the acting was wonderful."
    body = served.post("/imdb/predict", json={"text": text, "version": 2, "explain": True,
                                              "explain_top": 3}).json()  # fmt: skip
    explanation = body["predictions"][0]["explanation"]
    assert len(explanation["words"]) == 3
    assert explanation["unknown_words"] == 0
    effects = [abs(w["effect"]) for w in explanation["words"]]
    assert effects == sorted(effects, reverse=True) and effects[0] > 0


@requires_v2
def test_reuters_version_2_answers_in_version_1_s_shape(served):
    texts, _ = reuters_test_texts()
    v1 = served.post("/reuters/predict", json={"text": texts[0], "version": 1, "top_k": 3}).json()
    v2 = served.post("/reuters/predict", json={"text": texts[0], "version": 2, "top_k": 3}).json()
    assert set(v2["predictions"][0]) == set(v1["predictions"][0])
    assert (
        len(v2["predictions"][0]["probabilities"]) == 46 and len(v2["predictions"][0]["top"]) == 3
    )
    assert sum(v2["predictions"][0]["probabilities"]) == pytest.approx(1, abs=1e-5)


@requires_v2
def test_v2_protocol_takes_text_only_for_version_2(served):
    meta = served.get("/v2/models/imdb/versions/2").json()
    assert [i["name"] for i in meta["inputs"]] == ["text"]
    body = {
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a wonderful film"]}
        ]
    }
    response = served.post("/v2/models/imdb/versions/2/infer", json=body)
    assert response.status_code == 200, response.text
    rest = served.post("/imdb/predict", json={"text": "a wonderful film", "version": 2}).json()
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs["probability"][0] == pytest.approx(
        rest["predictions"][0]["probability"], abs=1e-7
    )


@requires_v2
def test_training_evaluate_rescores_reuters_version_2_on_raw_text_as_its_card_says():
    # ``python -m training evaluate NAME`` picks the highest version, now a TF-IDF bag: it must
    # score that on raw texts through its vocabulary file, not as a multi-hot Keras split
    from training.datasets import DataSource
    from training.evaluate import evaluate

    recomputed = evaluate(V2_MODELS / "reuters" / "2", DataSource(SHARED_DATA / "keras"))
    recorded = card("reuters")["metrics"]  # rounded to 6 places; one newswire is 4.5e-4
    assert recomputed["test_accuracy"] == pytest.approx(recorded["test_accuracy"], abs=1e-6)
    top3 = recorded["test_top3_accuracy"]
    assert recomputed["test_top3_accuracy"] == pytest.approx(top3, abs=1e-6)
