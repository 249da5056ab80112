"""The training package's artifacts: they round-trip, refuse tampering, carry Boston's
normalization, and the committed ones reproduce their recorded test metrics."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from service.contract.artifacts import MODEL_FILE, ArtifactError, read_verified_metadata
from training.datasets import DataSource, Split, load_boston

TOLERANCE = {"imdb": 0.002, "reuters": 0.002, "boston": 0.05}
HEADLINE = {"imdb": "test_accuracy", "reuters": "test_accuracy", "boston": "test_mae"}


@pytest.fixture(scope="module")
def small_boston_artifact(tmp_path_factory, keras_data):
    """A Boston model trained briefly and written by the real exporter."""
    from training.export import write_artifact
    from training.networks import Trained, seed_everything
    from training.recipes import build_boston_model

    source = DataSource(keras_data)
    split = load_boston(source)
    seed_everything(0)
    model = build_boston_model(split.x_train.astype("float32"))
    fit = model.fit(split.x_train, split.y_train, epochs=2, batch_size=64, verbose=0)
    trained = Trained(model, {"epochs": 2}, fit.history, {"test_mae": 0.0, "test_mse": 0.0, "kfold_val_mae": 0.0})
    out = tmp_path_factory.mktemp("artifacts")
    return write_artifact(out, "boston", trained, split, source), model, split


def test_an_artifact_loads_in_safe_mode_and_predicts_as_the_trained_model(small_boston_artifact):
    import keras

    folder, model, split = small_boston_artifact
    loaded = keras.saving.load_model(folder / MODEL_FILE, safe_mode=True)
    x = split.x_test.astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_the_model_card_lists_the_hash_of_every_other_file(small_boston_artifact):
    folder, _, _ = small_boston_artifact
    metadata = read_verified_metadata(folder)
    assert set(metadata["files"]) == {p.name for p in folder.iterdir()} - {"metadata.json"}
    assert metadata["dataset"]["files"]["boston_housing.npz"].startswith("f553886a")


def test_the_boston_model_card_gives_each_feature_its_unit_and_training_range(small_boston_artifact):
    folder, _, split = small_boston_artifact
    features = read_verified_metadata(folder)["features"]
    assert [f["name"] for f in features][:3] == ["CRIM", "ZN", "INDUS"]
    assert all(f["unit"] for f in features)
    assert features[5]["unit"] == "rooms"
    assert features[5]["train_min"] == float(split.x_train[:, 5].min())


def test_the_boston_model_card_says_its_kind_and_the_fields_the_service_answers_with(
    small_boston_artifact,
):
    folder, _, split = small_boston_artifact
    card = read_verified_metadata(folder)
    assert (card["kind"], card["task"]) == ("table-regressor", "regression")
    assert card["target"]["field"] == "price"
    assert card["target"]["derived"] == [{"field": "price_usd", "scale": 1000, "decimals": 2}]
    assert card["target"]["train_mean"] == float(split.y_train.astype("float64").mean())


@pytest.mark.parametrize("name", ["imdb", "reuters", "boston"])
def test_the_recipe_table_gives_each_book_model_the_kind_and_task_of_its_card(
    artifacts, keras_data, name
):
    from training.recipes import BOOK

    output = BOOK[name].output(DataSource(keras_data))
    card = json.loads((artifacts[name] / "metadata.json").read_text())
    assert (output.kind, output.task) == (card["kind"], card["task"])
    assert list(getattr(output, "labels", [])) == card.get("labels", [])


def test_a_tampered_artifact_is_refused(small_boston_artifact, tmp_path):
    folder, _, _ = small_boston_artifact
    copy = shutil.copytree(folder, tmp_path / "boston")
    data = bytearray((copy / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        read_verified_metadata(copy)


def test_an_artifact_with_a_file_missing_is_refused(small_boston_artifact, tmp_path):
    folder, _, _ = small_boston_artifact
    copy = shutil.copytree(folder, tmp_path / "boston")
    (copy / MODEL_FILE).unlink()
    with pytest.raises(ArtifactError, match="model.keras is missing"):
        read_verified_metadata(copy)


def test_boston_reads_raw_features_and_normalizes_with_the_training_statistics(artifacts, keras_data):
    import keras

    model = keras.saving.load_model(artifacts["boston"] / MODEL_FILE, safe_mode=True)
    split: Split = load_boston(DataSource(keras_data))
    x_train = split.x_train.astype("float64")
    by_hand = (split.x_test - x_train.mean(axis=0)) / x_train.std(axis=0)
    dense_only = keras.Sequential([keras.Input((13,)), *model.layers[1:]])
    np.testing.assert_allclose(
        np.asarray(model(split.x_test.astype("float32"))),
        np.asarray(dense_only(by_hand.astype("float32"))),
        rtol=1e-5, atol=1e-4,
    )


@pytest.mark.parametrize("name", ["imdb", "reuters", "boston"])
def test_committed_models_reach_the_required_figures(artifacts, name):
    metrics = json.loads((artifacts[name] / "metadata.json").read_text())["metrics"]
    required = {"imdb": lambda m: m["test_accuracy"] >= 0.875,
                "reuters": lambda m: m["test_accuracy"] >= 0.78,
                "boston": lambda m: m["test_mae"] <= 2.9}  # fmt: skip
    assert required[name](metrics), metrics


@pytest.mark.slow
@pytest.mark.parametrize("name", ["imdb", "reuters", "boston"])
def test_committed_models_reproduce_their_recorded_test_metric(artifacts, keras_data, name):
    from training.evaluate import evaluate

    recomputed = evaluate(artifacts[name], DataSource(keras_data))
    recorded = json.loads((artifacts[name] / "metadata.json").read_text())["metrics"]
    metric = HEADLINE[name]
    assert abs(recomputed[metric] - recorded[metric]) <= TOLERANCE[name]
