"""``python -m training fit``: models fitted on the user's own CSV or JSON Lines file.

Bad data is refused with one ``error: ...`` line and exit code 2, before any training, leaving no
folder behind. Good data gives a version folder in the book models' format whose card says what
the service needs (kind, labels or features and target) and whose test figure the saved model
reproduces exactly from the same rows.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.contract.artifacts import MODEL_FILE, read_verified_metadata, read_word_index, sha256_file
from service.contract.vectorize import WordIndex, multi_hot
from training.cli import main
from training.fit import vocabulary

REPO = Path(__file__).resolve().parent.parent


# --- Data written by the tests -------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


POSITIVE = ["great", "wonderful", "superb", "loved"]
NEGATIVE = ["awful", "terrible", "boring", "hated"]
FILLER = ["the", "film", "was", "a", "story", "with", "actors", "and", "plot", "that", "went",
          "on", "for", "two", "hours"]  # fmt: skip


def reviews(count: int, seed: int) -> list[list[str]]:
    """Reviews whose sentiment one word gives away: an easy, unambiguous signal."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["negative", "positive"])
        words = rng.sample(FILLER, 6) + [rng.choice(POSITIVE if label == "positive" else NEGATIVE)]
        rng.shuffle(words)
        rows.append([" ".join(words).capitalize() + ".", label])
    return rows


def houses(count: int, seed: int) -> list[dict[str, float]]:
    """Rows where y = 3 x1 - 2 x2 plus a little noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        x1, x2 = rng.uniform(0, 10), rng.uniform(-5, 5)
        rows.append({"x1": x1, "x2": x2, "y": 3 * x1 - 2 * x2 + rng.gauss(0, 0.3)})
    return rows


def run(*argv: object) -> tuple[int, str, str]:
    """``python -m training`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in argv])
    return code, out.getvalue(), err.getvalue()


# --- Bad data: one line, exit code 2, no folder --------------------------------------------


@pytest.fixture
def good_reviews(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "reviews.csv", ["review", "sentiment"], reviews(40, seed=0))


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "models"


def refused(out: Path, *argv: object) -> str:
    """Run ``fit``, check it failed as bad data should, and return the message."""
    code, stdout, stderr = run("fit", *argv, "--out", out)
    assert code == 2
    assert stdout == ""
    assert stderr.startswith("error: ") and stderr.endswith("\n") and stderr.count("\n") == 1
    assert not out.exists(), f"bad data left {sorted(out.rglob('*'))}"
    return stderr.removeprefix("error: ").rstrip("\n")


def fit_text_args(data: Path, name: str = "reviews") -> list[object]:
    return ["text", "--data", data, "--text-column", "review", "--label-column", "sentiment",
            "--name", name]  # fmt: skip


def test_a_missing_column_is_named_with_the_columns_there_are(good_reviews, out):
    message = refused(out, "text", "--data", good_reviews, "--text-column", "body",
                      "--label-column", "sentiment", "--name", "reviews")  # fmt: skip
    assert message == f"{good_reviews} has no column 'body' (its columns: 'review', 'sentiment')"


def test_a_missing_target_is_named_with_the_columns_there_are(tmp_path, out):
    data = write_jsonl(tmp_path / "houses.jsonl", houses(20, seed=0))
    message = refused(out, "table", "--data", data, "--target", "price", "--name", "houses")
    assert message == f"{data} has no column 'price' (its columns: 'x1', 'x2', 'y')"


def test_a_single_label_is_not_enough_to_classify(tmp_path, out):
    data = write_csv(tmp_path / "reviews.csv", ["review", "sentiment"],
                     [[text, "positive"] for text, _ in reviews(20, seed=0)])  # fmt: skip
    message = refused(out, *fit_text_args(data))
    assert "every row has the label 'positive' in 'sentiment'" in message
    assert "at least two labels" in message


def test_a_non_numeric_feature_is_named_with_its_line_and_value(tmp_path, out):
    rows = [[row["x1"], row["x2"], row["y"]] for row in houses(20, seed=0)]
    rows[2][1] = "twelve"
    data = write_csv(tmp_path / "houses.csv", ["x1", "x2", "y"], rows)
    message = refused(out, "table", "--data", data, "--target", "y", "--name", "houses")
    assert message == f"{data} line 4: 'x2' is not a finite number: 'twelve'"


@pytest.mark.parametrize("value", ["", "nan", "inf", True, None, [1]])
def test_a_feature_must_be_a_finite_number(tmp_path, out, value):
    records = houses(20, seed=0)
    records[5]["x1"] = value
    data = write_jsonl(tmp_path / "houses.jsonl", records)
    message = refused(out, "table", "--data", data, "--target", "y", "--name", "houses")
    assert message.startswith(f"{data} line 6: 'x1' is not a finite number: ")


def test_a_non_numeric_target_is_refused_too(tmp_path, out):
    records = houses(20, seed=0)
    records[0]["y"] = "expensive"
    data = write_jsonl(tmp_path / "houses.jsonl", records)
    message = refused(out, "table", "--data", data, "--target", "y", "--name", "houses")
    assert message == f"{data} line 1: 'y' is not a finite number: 'expensive'"


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_text_is_named_by_its_line(tmp_path, out, text):
    rows = reviews(20, seed=0)
    rows[6][0] = text
    data = write_csv(tmp_path / "reviews.csv", ["review", "sentiment"], rows)
    assert refused(out, *fit_text_args(data)) == f"{data} line 8: the text in 'review' is empty"


def test_an_empty_label_is_named_by_its_line(tmp_path, out):
    records = [{"review": text, "sentiment": label} for text, label in reviews(20, seed=0)]
    records[3]["sentiment"] = None
    data = write_jsonl(tmp_path / "reviews.jsonl", records)
    assert refused(out, *fit_text_args(data)) == f"{data} line 4: the label in 'sentiment' is empty"


def test_a_duplicated_csv_header_is_refused(tmp_path, out):
    data = write_csv(tmp_path / "reviews.csv", ["review", "sentiment", "review"],
                     [[text, label, text] for text, label in reviews(20, seed=0)])  # fmt: skip
    assert refused(out, *fit_text_args(data)) == f"{data}: the header names 'review' twice"


def test_an_empty_csv_header_is_refused(tmp_path, out):
    data = write_csv(tmp_path / "reviews.csv", ["review", "", "sentiment"],
                     [[text, "x", label] for text, label in reviews(20, seed=0)])  # fmt: skip
    assert refused(out, *fit_text_args(data)) == f"{data}: column 2 of the header has no name"


def test_a_csv_row_with_too_few_fields_is_refused(tmp_path, out):
    data = tmp_path / "reviews.csv"
    data.write_text("review,sentiment\nGreat film,positive\nAwful film\n", encoding="utf-8")
    assert refused(out, *fit_text_args(data)) == f"{data} line 3: 1 fields where the header has 2"


@pytest.mark.parametrize("suffix", [".txt", ".json", ".tsv", ""])
def test_only_csv_and_json_lines_files_are_read(tmp_path, out, suffix):
    data = write_csv(tmp_path / f"reviews{suffix}", ["review", "sentiment"], reviews(20, seed=0))
    message = refused(out, *fit_text_args(data))
    assert message.startswith(f"{data}: unsupported file type ")
    assert ".csv" in message and ".jsonl" in message


def test_a_file_that_is_not_utf8_is_refused(tmp_path, out):
    data = tmp_path / "reviews.csv"
    data.write_bytes("review,sentiment\nTrès bon,positive\n".encode("latin-1"))
    message = refused(out, *fit_text_args(data))
    assert message == f"{data} line 2 is not UTF-8 text (byte 0xe8): save the file as UTF-8"


def test_a_json_lines_line_that_is_not_json_is_named(tmp_path, out):
    data = tmp_path / "reviews.jsonl"
    data.write_text('{"review": "Great", "sentiment": "positive"}\n\n{"review": "Awful",\n')
    message = refused(out, *fit_text_args(data))
    assert message.startswith(f"{data} line 3 is not valid JSON: ")


def test_a_json_lines_line_that_is_not_an_object_is_named(tmp_path, out):
    data = tmp_path / "reviews.jsonl"
    data.write_text('{"review": "Great", "sentiment": "positive"}\n["Awful", "negative"]\n')
    message = refused(out, *fit_text_args(data))
    assert message == f"{data} line 2 is an array, not a JSON object"


def test_a_json_object_naming_a_key_twice_is_refused(tmp_path, out):
    data = tmp_path / "reviews.jsonl"
    data.write_text('{"review": "Great", "sentiment": "positive", "sentiment": "negative"}\n')
    message = refused(out, *fit_text_args(data))
    assert message == f"{data} line 1: the object names 'sentiment' twice"


@pytest.mark.parametrize(("name", "content"), [
    ("reviews.csv", ""), ("reviews.csv", "\n\n"), ("reviews.jsonl", ""), ("reviews.jsonl", " \n"),
])  # fmt: skip
def test_an_empty_file_is_refused(tmp_path, out, name, content):
    data = tmp_path / name
    data.write_text(content)
    assert refused(out, *fit_text_args(data)) == f"{data} is empty"


def test_a_csv_file_with_a_header_only_is_refused(tmp_path, out):
    data = write_csv(tmp_path / "reviews.csv", ["review", "sentiment"], [])
    assert refused(out, *fit_text_args(data)) == f"{data} has a header but no rows"


def test_a_missing_file_is_refused(tmp_path, out):
    data = tmp_path / "nowhere.csv"
    assert refused(out, *fit_text_args(data)) == f"{data} does not exist"


@pytest.mark.parametrize("name", ["Reviews", "my model", "../reviews", "1st", "_x", "a" * 65, ""])
def test_a_name_that_is_not_a_safe_folder_name_is_refused(good_reviews, out, name):
    message = refused(out, *fit_text_args(good_reviews, name=name))
    assert message.startswith(f"--name {name!r} is not a safe model name: ")


@pytest.mark.parametrize(
    "name", ["models", "v2", "admin", "metrics", "healthz", "readyz", "docs", "openapi.json", "redoc"]
)
def test_a_name_the_service_uses_for_its_own_paths_is_refused(good_reviews, out, name):
    message = refused(out, *fit_text_args(good_reviews, name=name))
    assert message.startswith(f"--name {name!r} is ")


def test_a_test_label_never_seen_in_training_is_refused(good_reviews, tmp_path, out):
    test = write_csv(tmp_path / "test.csv", ["review", "sentiment"],
                     [["Great film", "positive"], ["Meh", "neutral"]])  # fmt: skip
    message = refused(out, *fit_text_args(good_reviews), "--test", test)
    assert message == (f"{test} line 3: the label 'neutral' is not among the labels of "
                       f"{good_reviews} ('negative', 'positive')")  # fmt: skip


def test_a_label_found_only_in_the_held_out_rows_is_refused(tmp_path, out):
    rows = reviews(40, seed=0)
    from training.fit import TEST_FRACTION, split_rows

    _, held = split_rows(len(rows), TEST_FRACTION, seed=1)
    rows[held[0]][1] = "neutral"
    data = write_csv(tmp_path / "reviews.csv", ["review", "sentiment"], rows)
    message = refused(out, *fit_text_args(data))
    assert message == (f"{data} line {held[0] + 2}: the label 'neutral' occurs only in rows held "
                       f"out for testing: add rows with it, or give a --test file")  # fmt: skip


def test_a_test_file_must_have_the_training_columns(tmp_path, out):
    data = write_jsonl(tmp_path / "houses.jsonl", houses(20, seed=0))
    test = write_csv(tmp_path / "test.csv", ["x1", "y"], [[1.0, 3.0]])
    message = refused(out, "table", "--data", data, "--target", "y", "--name", "houses",
                      "--test", test)  # fmt: skip
    assert message == f"{test} has no column 'x2' (its columns: 'x1', 'y')"


def test_a_json_lines_row_with_an_extra_column_is_refused(tmp_path, out):
    records = houses(20, seed=0)
    records[9]["x3"] = 1.0
    data = write_jsonl(tmp_path / "houses.jsonl", records)
    message = refused(out, "table", "--data", data, "--target", "y", "--name", "houses")
    assert message == f"{data} line 10: unexpected column 'x3' (the columns are 'x1', 'x2', 'y')"


def test_too_few_rows_to_train_on_are_refused(tmp_path, out):
    data = write_csv(tmp_path / "reviews.csv", ["review", "sentiment"],
                     [["Great", "positive"], ["Awful", "negative"]] * 3)  # fmt: skip
    message = refused(out, *fit_text_args(data))
    assert message == (f"{data}: 5 rows to train on; fitting needs at least 10 "
                       f"(besides the test rows)")  # fmt: skip


def test_bad_data_is_refused_before_tensorflow_is_imported(tmp_path):
    """The whole file is checked first: a typo costs a fraction of a second, not a training run."""
    rows = reviews(40, seed=0)
    rows[-1][0] = ""
    data = write_csv(tmp_path / "reviews.csv", ["review", "sentiment"], rows)
    argv = ["fit", *map(str, fit_text_args(data)), "--out", str(tmp_path / "models")]
    script = (
        "import sys\nfrom training.cli import main\ncode = main(sys.argv[1:])\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\nsys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ, "KERAS_BACKEND": "tensorflow"},
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: {data} line 41: the text in 'review' is empty\n"
    assert not (tmp_path / "models").exists()


def test_a_write_that_fails_halfway_leaves_no_folder(tmp_path):
    from training.export import write_version

    class DiskFull:
        def save(self, path: Path) -> None:
            path.write_bytes(b"half a model")
            raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_version(tmp_path / "models", "reviews", DiskFull(), {"kind": "text-classifier"},
                      rows=np.zeros((1, 10_000), np.float32))  # fmt: skip
    assert list((tmp_path / "models").iterdir()) == []


# --- The vocabulary ------------------------------------------------------------------------


def test_the_vocabulary_ranks_words_by_frequency_then_alphabetically():
    texts = ["The cat, the DOG!", "a dog", "zebra"]
    assert vocabulary(texts) == {"dog": 1, "the": 2, "a": 3, "cat": 4, "zebra": 5}


# --- Fitting a text classifier -------------------------------------------------------------


@pytest.fixture(scope="module")
def text_models(tmp_path_factory) -> dict[str, object]:
    """Two fits of the same 300 reviews into one models folder: first with 20 % held out for the
    test figure, then with a separate test file."""
    folder = tmp_path_factory.mktemp("text")
    data = write_csv(folder / "reviews.csv", ["review", "sentiment"], reviews(300, seed=1))
    test = write_jsonl(folder / "test.jsonl",
                       [{"review": r, "sentiment": s} for r, s in reviews(100, seed=2)])  # fmt: skip
    out = folder / "models"
    held_out = run("fit", *fit_text_args(data), "--out", out)
    with_test = run("fit", *fit_text_args(data), "--out", out, "--test", test, "--seed", "3")
    return {"data": data, "test": test, "out": out, "runs": [held_out, with_test]}


def test_fit_text_writes_version_1_then_version_2(text_models):
    (code1, out1, _), (code2, out2, _) = text_models["runs"]
    out = text_models["out"]
    assert (code1, code2) == (0, 0)
    assert sorted(p.name for p in (out / "reviews").iterdir()) == ["1", "2"]
    assert out1.splitlines()[-1].endswith(f"-> {out / 'reviews' / '1'}")
    assert out2.splitlines()[-1].endswith(f"-> {out / 'reviews' / '2'}")
    assert [read_verified_metadata(out / "reviews" / v)["version"] for v in "12"] == ["1", "2"]


def test_a_text_card_says_kind_task_and_labels(text_models):
    card = read_verified_metadata(text_models["out"] / "reviews" / "1")
    assert card["name"] == "reviews"
    assert card["kind"] == "text-classifier"
    assert card["task"] == "binary-classification"
    assert card["labels"] == ["negative", "positive"]
    assert set(card["files"]) == {"model.keras", "model.onnx", "word_index.json"}


def test_a_text_card_describes_the_vocabulary_the_service_will_use(text_models):
    folder = text_models["out"] / "reviews" / "1"
    card = read_verified_metadata(folder)
    word_index = read_word_index(folder)
    words = len(set(FILLER + POSITIVE + NEGATIVE))
    assert sorted(word_index.values()) == list(range(1, words + 1))
    assert card["preprocessing"] == {
        "kind": "multi-hot", "num_words": words + 4, "index_from": 3, "start_id": 1, "oov_id": 2,
        "word_index_size": words, "tokenizer": "service.vectorize.tokenize",
    }  # fmt: skip


def test_a_held_out_evaluation_is_recorded_with_the_rows_and_the_data_hash(text_models):
    card = read_verified_metadata(text_models["out"] / "reviews" / "1")
    data = text_models["data"]
    assert card["evaluation"] == {"on": "held-out split of the data", "fraction": 0.2, "seed": 1,
                                  "rows": 60}  # fmt: skip
    assert card["dataset"] == {"files": {"reviews.csv": sha256_file(data)},
                               "rows": {"train": 240, "test": 60}}  # fmt: skip
    assert card["recipe"]["seed"] == 1
    assert 1 <= card["recipe"]["epochs"] <= 100
    assert card["recipe"]["epochs"] == card["recipe"]["validation"]["best_epoch"]
    assert len(card["history"]["loss"]) == card["recipe"]["epochs"]


def test_a_test_file_evaluation_names_the_file_and_hashes_it(text_models):
    card = read_verified_metadata(text_models["out"] / "reviews" / "2")
    data, test = text_models["data"], text_models["test"]
    assert card["evaluation"] == {"on": "test file", "file": "test.jsonl", "rows": 100}
    assert card["dataset"] == {
        "files": {"reviews.csv": sha256_file(data), "test.jsonl": sha256_file(test)},
        "rows": {"train": 300, "test": 100},
    }
    assert card["recipe"]["seed"] == 3


def test_the_saved_text_model_reproduces_its_test_accuracy_exactly(text_models):
    import keras

    folder = text_models["out"] / "reviews" / "2"
    card = read_verified_metadata(folder)
    model = keras.saving.load_model(folder / MODEL_FILE, safe_mode=True)
    assert model.inputs[0].name == "multi_hot"
    rows = [json.loads(line) for line in text_models["test"].read_text().splitlines()]
    words = WordIndex(read_word_index(folder), card["preprocessing"]["num_words"])
    x = multi_hot([words.encode(row["review"]) for row in rows], words.num_words)
    p_positive = np.asarray(model(x), dtype="float64")[:, 0]
    predicted = np.where(p_positive >= 0.5, "positive", "negative")
    truth = np.array([row["sentiment"] for row in rows])
    accuracy = round(float(np.mean(predicted == truth)), 6)
    assert card["metrics"] == {"test_accuracy": accuracy}
    assert accuracy >= 0.95  # one word gives the answer away


def test_three_labels_give_a_softmax_over_them_in_sorted_order(tmp_path):
    import keras

    rng = random.Random(4)
    topics = {"sport": ["goal", "match", "team"], "money": ["bank", "shares", "profit"],
              "food": ["bread", "cheese", "soup"]}  # fmt: skip
    rows = []
    for _ in range(50):
        for topic, words in topics.items():
            rows.append([f"{rng.choice(FILLER)} {rng.choice(words)} {rng.choice(FILLER)}", topic])
    data = write_csv(tmp_path / "news.csv", ["story", "topic"], rows)
    argv = ["text", "--data", data, "--text-column", "story", "--label-column", "topic"]
    code, _, err = run("fit", *argv, "--name", "news", "--out", tmp_path / "models")
    assert code == 0, err
    folder = tmp_path / "models" / "news" / "1"
    card = read_verified_metadata(folder)
    assert (card["task"], card["labels"]) == ("multiclass-classification", ["food", "money", "sport"])
    model = keras.saving.load_model(folder / MODEL_FILE, safe_mode=True)
    assert model.layers[-1].units == 3 and model.layers[-1].activation.__name__ == "softmax"
    words = WordIndex(read_word_index(folder), card["preprocessing"]["num_words"])
    x = multi_hot([words.encode("the team scored a goal")], words.num_words)
    assert card["labels"][int(np.asarray(model(x)).argmax())] == "sport"


# --- Fitting a table regressor -------------------------------------------------------------


@pytest.fixture(scope="module")
def table_model(tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("table")
    data = write_jsonl(folder / "houses.ndjson", houses(300, seed=1))
    test_rows = houses(100, seed=2)
    test = write_csv(folder / "test.csv", ["y", "x2", "x1"],
                     [[row["y"], row["x2"], row["x1"]] for row in test_rows])  # fmt: skip
    out = folder / "models"
    result = run("fit", "table", "--data", data, "--target", "y", "--name", "houses",
                 "--out", out, "--test", test)  # fmt: skip
    return {"data": data, "test": test, "test_rows": test_rows, "out": out, "run": result}


def test_a_table_card_says_kind_features_and_target(table_model):
    assert table_model["run"][0] == 0, table_model["run"][2]
    card = read_verified_metadata(table_model["out"] / "houses" / "1")
    rows = houses(300, seed=1)
    assert card["kind"] == "table-regressor"
    assert card["task"] == "regression"
    assert [f["name"] for f in card["features"]] == ["x1", "x2"]
    x1 = card["features"][0]
    assert (x1["train_min"], x1["train_max"]) == (min(r["x1"] for r in rows), max(r["x1"] for r in rows))
    assert x1["train_std"] == pytest.approx(float(np.std([r["x1"] for r in rows])), rel=1e-12)
    assert card["target"]["name"] == "y"
    assert card["target"]["field"] == "value"
    assert "derived" not in card["target"]
    assert card["evaluation"] == {"on": "test file", "file": "test.csv", "rows": 100}
    assert card["dataset"]["files"] == {"houses.ndjson": sha256_file(table_model["data"]),
                                        "test.csv": sha256_file(table_model["test"])}  # fmt: skip
    assert set(card["files"]) == {"model.keras", "model.onnx"}


def test_the_saved_table_model_normalizes_inside_and_reproduces_its_test_figures(table_model):
    import keras

    folder = table_model["out"] / "houses" / "1"
    card = read_verified_metadata(folder)
    model = keras.saving.load_model(folder / MODEL_FILE, safe_mode=True)
    assert model.inputs[0].name == "features"
    assert isinstance(model.layers[0], keras.layers.Normalization)
    rows = table_model["test_rows"]
    x = np.array([[row["x1"], row["x2"]] for row in rows], dtype="float32")
    error = np.asarray(model(x), dtype="float64")[:, 0] - np.array([row["y"] for row in rows])
    assert card["metrics"] == {
        "test_mae": round(float(np.mean(np.abs(error))), 6),
        "test_mse": round(float(np.mean(error**2)), 6),
    }
    assert card["metrics"]["test_mae"] < 1.0  # y spans about -10 to 40
