"""training/datasets.py: Keras' split semantics on the real files, and clear errors otherwise."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from training.datasets import DataError, DataSource, load_boston, load_imdb, load_reuters


@pytest.fixture
def source(keras_data) -> DataSource:
    return DataSource(keras_data)


def test_imdb_split_matches_the_published_keras_rows(source):
    split = load_imdb(source)
    assert (len(split.x_train), len(split.x_test)) == (25_000, 25_000)
    assert split.x_train[0][:8] == [1, 14, 22, 16, 43, 530, 973, 1622]
    assert len(split.x_train[0]) == 218
    assert len(split.x_train[1]) == 189
    assert split.x_test[0][:10] == [1, 591, 202, 14, 31, 6, 717, 10, 10, 2]  # 18142 past the cut
    assert split.y_train.sum() == 12_500


def test_imdb_ids_stay_below_num_words(source):
    split = load_imdb(source, num_words=10_000)
    assert max(max(row) for row in split.x_train) == 9_999


def test_reuters_split_matches_the_published_keras_rows(source):
    split = load_reuters(source, num_words=100_000)  # no cut: the published raw ids
    assert (len(split.x_train), len(split.x_test)) == (8_982, 2_246)
    assert split.y_train[0] == 3 and split.y_train[10] == 3
    assert split.x_train[0][:7] == [1, 27595, 28842, 8, 43, 10, 447]
    assert split.x_train[10][:8] == [1, 245, 273, 207, 156, 53, 74, 160]


def test_boston_split_matches_the_published_keras_rows(source):
    split = load_boston(source)
    assert (len(split.x_train), len(split.x_test)) == (404, 102)
    assert split.x_train[0][:3].tolist() == [1.23247, 0.0, 8.14]
    assert split.y_train[0] == 15.2 and split.y_test[0] == 7.2


def test_the_sha256_of_each_file_used_is_recorded(source):
    load_boston(source)
    assert source.used == {
        "boston_housing.npz": "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"
    }


def test_a_missing_file_names_it_where_we_looked_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr("keras.utils.get_file", _no_network)
    with pytest.raises(DataError) as error:
        DataSource(tmp_path / "data").path("imdb.npz")
    message = str(error.value)
    assert "imdb.npz was not found" in message
    assert str(tmp_path / "data" / "imdb.npz") in message
    assert str(tmp_path / "keras-home" / "datasets" / "imdb.npz") in message
    assert "--data-dir" in message and "no network here" in message


def test_a_corrupt_file_is_refused_by_its_checksum(tmp_path, keras_data):
    shutil.copy(keras_data / "boston_housing.npz", tmp_path / "boston_housing.npz")
    with (tmp_path / "boston_housing.npz").open("r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    with pytest.raises(DataError, match="is not a known copy of boston_housing.npz"):
        load_boston(DataSource(tmp_path))


def test_the_cli_reports_a_data_error_in_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys):
    from training.cli import main

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr("keras.utils.get_file", _no_network)
    assert main(["evaluate", "boston", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: boston_housing.npz was not found")
    assert "Traceback" not in err


def _no_network(*args, **kwargs):
    raise OSError("no network here")


def test_labels_are_float_for_imdb_and_class_ids_for_reuters(source):
    assert load_imdb(source).y_test.dtype == np.float32
    assert set(np.unique(load_reuters(source).y_test)) <= set(range(46))


@pytest.mark.parametrize(
    ("name", "keras_hash"),
    [
        ("imdb.npz", "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
        ("reuters_word_index.json", "4d44cc38712099c9e383dc6e5f11a921"),
    ],
)
def test_a_download_is_checked_against_keras_own_hash(tmp_path, monkeypatch, name, keras_hash):
    asked = {}

    def fake_get_file(fname, origin, file_hash):
        asked.update(fname=fname, origin=origin, file_hash=file_hash)
        raise OSError("no network here")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr("keras.utils.get_file", fake_get_file)
    with pytest.raises(DataError, match=f"copy it into {tmp_path / 'keras-home' / 'datasets'}"):
        DataSource(tmp_path / "data").path(name)
    assert asked == {
        "fname": name,
        "origin": f"https://storage.googleapis.com/tensorflow/tf-keras-datasets/{name}",
        "file_hash": keras_hash,
    }
