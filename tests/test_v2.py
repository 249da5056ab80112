"""The Open Inference Protocol (V2) endpoints, driven by a client we did not write:
``tritonclient.http`` from PyPI, in its default binary tensor encoding and in plain JSON. Every
number it gets back must equal, to the last bit, what our own endpoints answer.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from service.api.book import SAMPLE_FEATURES, SAMPLE_NEWSWIRE, SAMPLE_REVIEW

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is in the test extra")
from tritonclient.utils import InferenceServerException  # noqa: E402

REVIEWS = [
    SAMPLE_REVIEW,
    "The worst film I have ever seen: boring, stupid and a waste of time.",
    "Ünïcode, tabs\tand <br /> tags: all tokenized as in training.",
]
NEWSWIRES = [SAMPLE_NEWSWIRE, "The central bank raised interest rates by half a point."]
HOUSES = [SAMPLE_FEATURES, [0.02731, 0.0, 7.07, 0.0, 0.469, 6.421, 78.9, 4.9671, 2.0, 242.0, 17.8, 396.9, 9.14]]  # fmt: skip


@pytest.fixture(scope="module")
def client(server):
    triton = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    yield triton
    triton.close()


def text_input(texts: list[str], binary: bool = True):
    tensor = httpclient.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
    return tensor


def ours(api: httpx.Client, path: str, body: dict) -> list[dict]:
    response = api.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_the_server_is_live_and_ready_for_a_v2_client(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "keras-chapter3-serving"
    assert "binary_tensor_data" in metadata["extensions"]


def test_each_model_is_ready_in_its_version_and_not_in_another(client):
    for name in ("imdb", "reuters", "boston"):
        assert client.is_model_ready(name)
        assert client.is_model_ready(name, "1")
        assert not client.is_model_ready(name, "99")


def test_model_metadata_names_each_tensor_with_datatype_and_shape(client):
    reuters = client.get_model_metadata("reuters")
    assert reuters["name"] == "reuters" and reuters["versions"][0] == "1"  # then version 2
    assert reuters["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "word_ids", "datatype": "INT64", "shape": [-1, -1]},
    ]
    assert reuters["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 46]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    boston = client.get_model_metadata("boston", "1")
    assert boston["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 13]}]
    assert boston["outputs"] == [{"name": "price", "datatype": "FP32", "shape": [-1, 1]}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_imdb_infer_on_raw_reviews_equals_our_endpoint(client, api, binary):
    result = client.infer("imdb", [text_input(REVIEWS, binary)])
    expected = ours(api, "/imdb/predict", {"texts": REVIEWS})
    probability = result.as_numpy("probability")
    assert probability.shape == (3, 1) and probability.dtype == np.float32
    assert probability[:, 0].tolist() == [p["probability"] for p in expected]
    assert [label.decode() for label in result.as_numpy("label")] == [p["label"] for p in expected]
    assert result.get_response()["model_version"] == "1"


def test_imdb_infer_on_padded_word_ids_equals_our_sequences_endpoint(client, api):
    sequences = [[1, 14, 22, 16, 43, 530], [1, 194, 1153, 194, 8255, 78, 228, 5, 6, 1463]]
    padded = np.zeros((2, 10), dtype=np.int64)  # 0 is Keras' padding id and is ignored
    for row, sequence in zip(padded, sequences):
        row[-len(sequence):] = sequence
    tensor = httpclient.InferInput("word_ids", list(padded.shape), "INT64")
    tensor.set_data_from_numpy(padded)
    result = client.infer("imdb", [tensor])
    expected = ours(api, "/imdb/predict", {"sequences": sequences})
    assert result.as_numpy("probability")[:, 0].tolist() == [p["probability"] for p in expected]


def test_reuters_infer_gives_46_probabilities_and_the_topic_name(client, api):
    result = client.infer("reuters", [text_input(NEWSWIRES)])
    expected = ours(api, "/reuters/predict", {"texts": NEWSWIRES})
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 46)
    assert probabilities.tolist() == [p["probabilities"] for p in expected]
    assert [label.decode() for label in result.as_numpy("label")] == [p["label"] for p in expected]


def test_boston_infer_on_raw_features_equals_our_endpoint(client, api):
    features = httpclient.InferInput("features", [2, 13], "FP32")
    features.set_data_from_numpy(np.array(HOUSES, dtype=np.float32))
    result = client.infer("boston", [features], model_version="1")
    expected = ours(api, "/boston/predict", {"instances": HOUSES})
    assert result.as_numpy("price")[:, 0].tolist() == [p["price"] for p in expected]


def test_only_the_requested_outputs_come_back(client):
    wanted = [httpclient.InferRequestedOutput("label", binary_data=False)]
    result = client.infer("reuters", [text_input(NEWSWIRES)], outputs=wanted)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("probabilities") is None


def test_an_unknown_model_is_an_error_the_client_reports(client):
    with pytest.raises(InferenceServerException, match="unknown model 'mnist'"):
        client.infer("mnist", [text_input(REVIEWS)])


def test_a_wrong_datatype_is_an_error_naming_the_input(client):
    features = httpclient.InferInput("features", [1, 13], "INT32")
    features.set_data_from_numpy(np.zeros((1, 13), dtype=np.int32))
    with pytest.raises(InferenceServerException, match="input 'features' must be FP32"):
        client.infer("boston", [features])


def infer_json(api: httpx.Client, path: str, body: dict) -> httpx.Response:
    return api.post(path, json=body)


def test_errors_are_an_error_object_with_400_or_404(api):
    unknown = infer_json(api, "/v2/models/mnist/infer", {"inputs": []})
    assert unknown.status_code == 404 and "unknown model" in unknown.json()["error"]
    version = infer_json(api, "/v2/models/imdb/versions/7/infer", {"inputs": []})
    assert version.status_code == 404 and "served versions: 1" in version.json()["error"]
    shape = infer_json(api, "/v2/models/boston/infer", {"inputs": [
        {"name": "features", "datatype": "FP32", "shape": [1, 12], "data": [0.0] * 12}]})  # fmt: skip
    assert shape.status_code == 400
    assert shape.json() == {"error": "input 'features' must have shape [N, 13], got [1, 12]"}


def test_a_data_count_that_disagrees_with_the_shape_is_400(api):
    response = infer_json(api, "/v2/models/imdb/infer", {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["only one"]}]})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"] == "input 'text': 'data' holds 1 elements, its shape 2"


def test_non_finite_or_huge_features_are_400(api):
    for value in (1e10, -1e10):
        body = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 13],
                            "data": [value] + [0.0] * 12}]}  # fmt: skip
        response = infer_json(api, "/v2/models/boston/infer", body)
        assert response.status_code == 400, response.text
        assert "finite number within" in response.json()["error"]


def test_nested_json_data_is_read_in_row_major_order(api):
    nested = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 13], "data": HOUSES}]}
    flat = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 13],
                        "data": [x for row in HOUSES for x in row]}]}  # fmt: skip
    a = infer_json(api, "/v2/models/boston/infer", nested).json()["outputs"][0]["data"]
    b = infer_json(api, "/v2/models/boston/infer", flat).json()["outputs"][0]["data"]
    assert a == b and len(a) == 2


def test_the_batch_limit_applies_to_v2_as_to_our_endpoints(api):
    texts = ["x"] * 1_001
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1_001], "data": texts}]}
    response = infer_json(api, "/v2/models/imdb/infer", body)
    assert response.status_code == 400
    assert "at most 1000 items allowed, got 1001" in response.json()["error"]


def test_binary_data_that_runs_past_the_body_is_400(api):
    header = b'{"inputs":[{"name":"features","datatype":"FP32","shape":[1,13],"parameters":{"binary_data_size":52}}]}'
    response = api.post(
        "/v2/models/boston/infer", content=header + b"\0" * 20,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )  # fmt: skip
    assert response.status_code == 400
    assert "runs past the body's end" in response.json()["error"]
