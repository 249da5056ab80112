"""A corpus of hostile requests against the real server: each gets a documented 4xx or a
correct 200, and the process neither crashes nor grows without bound."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import httpx
import pytest

from service.api.book import SAMPLE_FEATURES, SAMPLE_REVIEW

DOCUMENTED = {200, 400, 404, 413, 415, 422}


def raw_post(api: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return api.post(path, content=body, headers={"content-type": "application/json"})


def resident_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_100_mb_body_is_refused_from_its_length_without_being_read(server):
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /imdb/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n" + b'{"text": "' + b"a" * 65_536
        )
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413 ")


def test_a_10_mb_body_without_a_length_is_cut_off_at_the_limit(api):
    def chunks():
        yield b'{"text": "'
        for _ in range(110):
            yield b"a" * 100_000
        yield b'"}'

    response = api.post("/imdb/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_deeply_nested_json_is_a_4xx(api):
    response = raw_post(api, "/imdb/predict", b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code in (400, 422)


def test_deeply_nested_values_inside_a_field_are_422(api):
    response = raw_post(api, "/imdb/predict", b'{"sequences": ' + b"[" * 5_000 + b"]" * 5_000 + b"}")
    assert response.status_code in (400, 422)


def test_duplicate_keys_take_the_last_value_as_json_parsers_do(api):
    duplicated = raw_post(api, "/imdb/predict", b'{"text": "awful, boring", "text": "' + SAMPLE_REVIEW.encode() + b'"}')
    last_only = api.post("/imdb/predict", json={"text": SAMPLE_REVIEW})
    assert duplicated.status_code == 200
    assert duplicated.json() == last_only.json()


def test_a_text_of_a_million_and_one_characters_is_422(api):
    response = api.post("/imdb/predict", json={"text": "a" * 1_000_001})
    assert response.status_code == 422
    assert len(response.content) < 1_000


@pytest.mark.parametrize("text", ["?!.,;:()[]{}", "zzqxv qqqzx xxyzzy", "<br /><br /><br />"])
def test_texts_with_nothing_or_little_the_model_knows_get_a_prediction(api, text):
    response = api.post("/imdb/predict", json={"text": text})
    assert response.status_code == 200
    assert 0.0 <= response.json()["predictions"][0]["probability"] <= 1.0


def test_only_unknown_words_predict_like_an_empty_review(api):
    unknown = api.post("/imdb/predict", json={"text": "zzqxv qqqzx xxyzzy"}).json()
    empty = api.post("/imdb/predict", json={"sequences": [[1]]}).json()
    assert unknown["predictions"] == empty["predictions"]


@pytest.mark.parametrize("value", [b'"NaN"', b"true", b"1e400", b"-1e400", b'"12"', b"null", b"{}"])
def test_non_numbers_among_features_are_422(api, value):
    row = b",".join(str(v).encode() for v in SAMPLE_FEATURES[:12])
    response = raw_post(api, "/boston/predict", b'{"features": [' + row + b"," + value + b"]}")
    assert response.status_code == 422


def test_every_odd_body_gets_a_documented_status(api):
    bodies = [
        b"", b"null", b"0", b'"text"', b"[]", b"{}", b'{"text": null}', b'{"texts": [null]}',
        b'{"sequences": [[1, 2], "x"]}', b'{"sequences": [[1e30]]}', b"\xef\xbb\xbf{}",
        b'{"text": "\\ud800"}', b'{"text": "a"}' * 3, b"{" * 3,
    ]  # fmt: skip
    for path in ("/imdb/predict", "/reuters/predict", "/boston/predict"):
        for body in bodies:
            response = raw_post(api, path, body)
            assert response.status_code in DOCUMENTED, (path, body, response.text)
    assert api.get("/healthz").status_code == 200


@pytest.mark.slow
def test_the_same_request_10000_times_gives_the_same_answer_in_bounded_memory(api, server):
    first = api.post("/imdb/predict", json={"texts": [SAMPLE_REVIEW] * 3}).json()
    for _ in range(500):  # settle allocator pools before the baseline
        api.post("/imdb/predict", json={"texts": [SAMPLE_REVIEW] * 3})
    before = resident_kb(server.process.pid)
    answers = [api.post("/imdb/predict", json={"texts": [SAMPLE_REVIEW] * 3}) for _ in range(10_000)]
    after = resident_kb(server.process.pid)
    print(f"server resident memory: {before / 1024:.1f} MB before, {after / 1024:.1f} MB after")
    assert all(a.status_code == 200 and a.json() == first for a in answers)
    assert after - before < 10 * 1024  # kB: no per-request growth (10,000 requests)


def test_extreme_but_allowed_features_give_a_finite_price_flagged_out_of_range(api):
    response = api.post("/boston/predict", json={"features": [1e9] * 13})
    assert response.status_code == 200
    prediction = response.json()["predictions"][0]
    assert abs(prediction["price"]) < 1e30
    assert len(prediction["out_of_range"]) == 13


def test_features_past_the_documented_bound_are_422(api):
    response = api.post("/boston/predict", json={"features": [1e10] + [0.0] * 12})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "features", 0]
