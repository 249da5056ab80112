"""ONNX export in training and ONNX Runtime on the serving path (``training.onnx``,
``service.engine.runtime``, ``service.engine.open_runtime``).

* every written version folder gets ``model.onnx``, checked against the Keras model on real rows,
  and a card that lists it and records reference rows;
* ONNX Runtime gives the Keras model's outputs on real rows, for each committed model;
* the service refuses an ONNX file that disagrees with its card, or that its card does not list;
* a folder without ``model.onnx`` is served by the Keras fallback when Keras is installed, and
  refused, naming both fixes, when it is not;
* networks with several named inputs export and run by name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from service.contract.artifacts import METADATA_FILE, MODEL_FILE, ArtifactError, sha256_file, write_metadata
from service.serving.registry import load_model
from service.engine.runtime import ONNX_FILE, OnnxRuntime, parity_gap, reference_feeds
from service.contract.vectorize import multi_hot
from tests.conftest import REPO
from training.datasets import DataSource, load_boston, load_imdb, load_reuters

BOOK_V1 = ("imdb", "reuters", "boston")


def keras_model(folder: Path):
    import keras

    return keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)


def card_of(folder: Path) -> dict:
    return json.loads((folder / METADATA_FILE).read_text())


@pytest.fixture(scope="module")
def real_rows(keras_data) -> dict[str, np.ndarray]:
    """The first 200 test rows of each book dataset, as the networks read them."""
    source = DataSource(keras_data)
    return {
        "imdb": multi_hot(load_imdb(source).x_test[:200]),
        "reuters": multi_hot(load_reuters(source).x_test[:200]),
        "boston": np.asarray(load_boston(source).x_test, dtype=np.float32),
    }


@pytest.fixture
def imdb_v1(tmp_path: Path, models_dir: Path) -> Path:
    """A writable copy of the committed IMDB version 1, as ``models/imdb/1``."""
    folder = tmp_path / "models" / "imdb" / "1"
    shutil.copytree(models_dir / "imdb" / "1", folder)
    return folder


# --- Export ----------------------------------------------------------------------------------


def test_writing_a_version_exports_model_onnx_with_its_card_section(
    tmp_path, models_dir, real_rows
):
    from training.export import write_version

    model = keras_model(models_dir / "imdb" / "1")
    folder = write_version(tmp_path, "reviews", model, {"kind": "text-classifier"},
                           rows=real_rows["imdb"])  # fmt: skip
    card = card_of(folder)
    section = card["onnx"]
    assert card["files"][ONNX_FILE] == sha256_file(folder / ONNX_FILE)
    assert section["inputs"] == [{"name": "multi_hot", "shape": [None, 10_000], "dtype": "float32"}]
    assert section["opset"] == 17 and section["exporter"] == "keras model.export(format='onnx')"
    assert section["check"]["rows"] == 200 and section["check"]["max_abs_difference"] < 1e-5
    # The reference rows are the first real rows, as their 1-positions, with Keras' outputs.
    feeds, outputs = reference_feeds(section)
    np.testing.assert_array_equal(feeds["multi_hot"], real_rows["imdb"][:4])
    assert (
        section["reference"]["inputs"]["multi_hot"]["positions"][0]
        == np.flatnonzero(real_rows["imdb"][0]).tolist()
    )
    # (Keras' outputs on the 200-row batch: a 4-row batch may round its sums in another order.)
    assert parity_gap(np.asarray(model(real_rows["imdb"][:4])), outputs) is None


def test_a_network_whose_constants_become_inputs_takes_the_saved_model_route(models_dir):
    # Boston's Normalization mean and variance become graph inputs on Keras' direct ONNX route;
    # the export must still read exactly the one input the table kind feeds.
    section = card_of(models_dir / "boston" / "1")["onnx"]
    assert section["exporter"].endswith("+ tf2onnx.convert")
    assert [spec["name"] for spec in section["inputs"]] == ["features"]
    assert OnnxRuntime(models_dir / "boston" / "1" / ONNX_FILE).inputs == ("features",)


def test_a_network_with_two_named_inputs_exports_and_runs_by_name(tmp_path):
    import keras

    ids = keras.Input((6,), dtype="int32", name="term_ids")
    weights = keras.Input((6,), name="term_weights")
    vectors = keras.layers.Embedding(50, 4)(ids)
    bag = keras.ops.sum(vectors * keras.ops.expand_dims(weights, -1), axis=1)
    model = keras.Model([ids, weights], keras.layers.Dense(1, activation="sigmoid")(bag))
    rng = np.random.default_rng(3)
    rows = {"term_ids": rng.integers(0, 50, (20, 6)).astype(np.int32),
            "term_weights": rng.random((20, 6), dtype=np.float32)}  # fmt: skip
    from training.onnx import write_onnx

    section = write_onnx(tmp_path, model, rows)
    assert [(s["name"], s["dtype"]) for s in section["inputs"]] == [("term_ids", "int32"),
                                                                    ("term_weights", "float32")]  # fmt: skip
    feeds, outputs = reference_feeds(section)
    assert set(feeds) == {"term_ids", "term_weights"}
    runtime = OnnxRuntime(tmp_path / ONNX_FILE)
    assert (
        parity_gap(np.asarray(model([rows["term_ids"], rows["term_weights"]])), runtime.run(rows))
        is None
    )
    assert parity_gap(outputs, runtime.run(feeds)) is None


def test_export_onnx_rewrites_only_the_onnx_section_and_the_files_map(imdb_v1):
    from training.cli import main

    before = card_of(imdb_v1)
    keras_bytes = (imdb_v1 / MODEL_FILE).read_bytes()
    (imdb_v1 / ONNX_FILE).unlink()
    assert main(["export-onnx", str(imdb_v1)]) == 0
    after = card_of(imdb_v1)
    assert {k for k in before if before[k] != after.get(k)} <= {"onnx", "files"}
    assert list(after) == list(before)
    assert (imdb_v1 / MODEL_FILE).read_bytes() == keras_bytes
    assert after["files"] == {**before["files"], ONNX_FILE: sha256_file(imdb_v1 / ONNX_FILE)}
    # Re-exported from the card's own reference rows: the same rows, the same Keras outputs (to
    # float32 rounding: Keras sums a 4-row batch in another order than the 256-row one).
    assert after["onnx"]["reference"]["inputs"] == before["onnx"]["reference"]["inputs"]
    assert parity_gap(np.asarray(before["onnx"]["reference"]["outputs"]),
                      np.asarray(after["onnx"]["reference"]["outputs"])) is None  # fmt: skip
    load_model(imdb_v1, "imdb")


# --- The committed models --------------------------------------------------------------------


@pytest.mark.parametrize("name", BOOK_V1)
def test_onnx_runtime_gives_the_keras_models_outputs_on_real_rows(name, models_dir, real_rows):
    folder = models_dir / name / "1"
    expected = np.asarray(keras_model(folder)(real_rows[name]))
    served = OnnxRuntime(folder / ONNX_FILE)(real_rows[name])
    assert served.shape == expected.shape
    assert parity_gap(expected, served) is None


@pytest.mark.parametrize("name", BOOK_V1)
def test_the_committed_cards_list_their_onnx_files_and_reference_rows(name, models_dir):
    folder = models_dir / name / "1"
    card = card_of(folder)
    assert card["files"][ONNX_FILE] == sha256_file(folder / ONNX_FILE)
    feeds, outputs = reference_feeds(card["onnx"])
    assert len(outputs) == 4
    assert parity_gap(outputs, OnnxRuntime(folder / ONNX_FILE).run(feeds)) is None
    served = load_model(folder, name)
    assert served.kind.runtime.description.startswith("ONNX Runtime")
    # the multi-hot networks' first layer as kernel-row sums, checked at load (issue 25)
    assert (served.kind.runtime.network is not None) == (name in ("imdb", "reuters"))


# --- Refusals --------------------------------------------------------------------------------


def test_an_onnx_file_that_disagrees_with_its_reference_rows_is_refused(imdb_v1, tmp_path):
    from training.onnx import write_onnx

    # A real export of a different network (the sentiment flipped), in place of the right one.
    model = keras_model(imdb_v1)
    last = model.layers[-1]
    last.set_weights([-w for w in last.get_weights()])
    feeds, _ = reference_feeds(card_of(imdb_v1)["onnx"])
    write_onnx(tmp_path, model, feeds)
    shutil.copy(tmp_path / ONNX_FILE, imdb_v1 / ONNX_FILE)
    card = card_of(imdb_v1)
    write_metadata(imdb_v1, {k: v for k, v in card.items() if k != "files"})  # hashes match
    with pytest.raises(ArtifactError) as refused:
        load_model(imdb_v1, "imdb")
    message = str(refused.value)
    assert "model.onnx differs from the reference rows in its card" in message
    assert f"python -m training export-onnx {imdb_v1}" in message


def test_an_onnx_file_its_card_does_not_list_is_refused(imdb_v1):
    card = card_of(imdb_v1)
    (imdb_v1 / METADATA_FILE).write_text(json.dumps(
        {**card, "files": {k: v for k, v in card["files"].items() if k != ONNX_FILE}}))  # fmt: skip
    with pytest.raises(ArtifactError, match="is not recorded in its metadata.json"):
        load_model(imdb_v1, "imdb")


def without_onnx(folder: Path) -> None:
    """A folder as written before ONNX export: no model.onnx, no onnx section."""
    (folder / ONNX_FILE).unlink()
    card = card_of(folder)
    write_metadata(folder, {k: v for k, v in card.items() if k not in ("files", "onnx")})


def test_a_folder_without_onnx_is_served_by_the_keras_fallback_when_keras_is_installed(
    imdb_v1, models_dir, real_rows
):
    without_onnx(imdb_v1)
    served = load_model(imdb_v1, "imdb")
    assert "Keras fallback" in served.kind.runtime.description
    onnx = OnnxRuntime(models_dir / "imdb" / "1" / ONNX_FILE)
    assert parity_gap(onnx(real_rows["imdb"]), served.kind.runtime(real_rows["imdb"])) is None


NO_KERAS = """
import sys
sys.modules["keras"] = None  # as if Keras were not installed: `import keras` raises ImportError
from pathlib import Path
from service.contract.artifacts import ArtifactError
from service.serving.registry import load_model
try:
    load_model(Path(sys.argv[1]), "imdb")
except ArtifactError as error:
    print("REFUSED", error)
else:
    print("LOADED")
"""


def test_without_keras_a_folder_without_onnx_is_refused_naming_both_fixes(imdb_v1):
    without_onnx(imdb_v1)
    done = subprocess.run([sys.executable, "-c", NO_KERAS, str(imdb_v1)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("REFUSED "), done.stdout
    assert f"{imdb_v1} has no model.onnx" in done.stdout
    assert f"`python -m training export-onnx {imdb_v1}`" in done.stdout
    assert '`pip install ".[keras]"`' in done.stdout


def test_the_serving_install_leaves_keras_to_the_keras_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    serving = {dep.split("[")[0].split(">")[0].split("=")[0] for dep in project["dependencies"]}
    assert "onnxruntime" in serving
    assert not serving & {"keras", "tensorflow", "tensorflow-cpu", "jax", "scipy", "h5py"}
    fallback = {dep.split(">")[0] for dep in project["optional-dependencies"]["keras"]}
    assert {"keras", "jax", "scipy", "h5py"} <= fallback
    train = {dep.split(">")[0] for dep in project["optional-dependencies"]["train"]}
    assert {"tensorflow-cpu", "keras", "tf2onnx", "onnx"} <= train


def test_a_big_batch_of_multi_hot_rows_runs_in_chunks_with_the_same_outputs(models_dir, real_rows):
    # 200 real reviews and 100 more: past DENSE_CHUNK, so from_positions runs three chunks.
    from service.engine.runtime import DENSE_CHUNK

    rows = np.vstack([real_rows["imdb"], real_rows["imdb"][:100]])
    positions = [np.flatnonzero(row) for row in rows]
    runtime = OnnxRuntime(models_dir / "imdb" / "1" / ONNX_FILE)
    assert len(positions) > 2 * DENSE_CHUNK
    chunked = runtime.from_positions(positions, 10_000)
    assert chunked.shape == (300, 1)
    assert parity_gap(runtime(rows), chunked) is None
