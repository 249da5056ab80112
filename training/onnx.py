"""Export a trained Keras model as ``model.onnx``, the file serving runs (``service.engine.runtime``).

``model.keras`` stays the artifact of record; the ONNX file is derived from it, here, with
Keras' own exporter, and is only written once ONNX Runtime reproduces the TensorFlow model on
real input rows within float32 rounding (the service's ``PARITY_EPSILONS``). The card then
records, under ``"onnx"``, the network's named inputs, the opset, the size of that check and a
few of its rows with TensorFlow's outputs (``reference``): the service replays them at load and
refuses a file that disagrees.

Two exporter routes, both Keras' own:

* ``model.export(path, format="onnx")``: the IMDB and Reuters networks, and any network whose
  inputs all survive the export as themselves;
* ``model.export(dir, format="tf_saved_model")`` then ``python -m tf2onnx.convert``: a network
  whose constants the direct route turns into extra graph inputs (Boston's ``Normalization``
  mean and variance come out as ``.../Sub/y:0`` and ``.../Sqrt/x:0``, which a caller feeding
  only ``features`` cannot give). The saved model keeps them as constants.

The rule is checked, not assumed: whichever route gives exactly the model's own inputs wins.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.contract.artifacts import METADATA_FILE, MODEL_FILE, ArtifactError, sha256_file, write_metadata
from service.engine.runtime import (
    ONNX_FILE,
    PARITY_EPSILONS,
    OnnxRuntime,
    encode_rows,
    parity_gap,
    reference_feeds,
)

if TYPE_CHECKING:
    import keras

OPSET = 17
"""The opset both routes target (ONNX Runtime 1.20 and later run it)."""
CHECK_ROWS = 256
"""Real rows ONNX Runtime must reproduce TensorFlow on before the file is written."""
REFERENCE_ROWS = 4
"""Of those, how many the card keeps for the service to replay at load."""

Rows = np.ndarray | Mapping[str, np.ndarray] | Sequence[np.ndarray]
"""A model's input rows: one array for a single-input network, else by input name (or in the
network's input order)."""


def input_names(model: keras.Model) -> tuple[str, ...]:
    return tuple(tensor.name for tensor in model.inputs)


def named_rows(model: keras.Model, rows: Rows) -> dict[str, np.ndarray]:
    """``rows`` keyed by the network's input names, at most ``CHECK_ROWS`` of them."""
    names = input_names(model)
    if isinstance(rows, Mapping):
        named = dict(rows)
    elif isinstance(rows, np.ndarray) or len(names) == 1:
        named = {names[0]: rows}
    else:
        named = dict(zip(names, rows))
    if set(named) != set(names):
        raise ArtifactError(
            f"rows for inputs {sorted(named)} given; the network reads {list(names)}"
        )
    return {name: np.asarray(named[name])[:CHECK_ROWS] for name in names}


def keras_outputs(model: keras.Model, rows: Mapping[str, np.ndarray]) -> np.ndarray:
    """The trained model's own call (TensorFlow backend): what the export must reproduce."""
    names = input_names(model)
    inputs: Any = rows[names[0]] if len(names) == 1 else dict(rows)
    return np.asarray(model(inputs, training=False), dtype=np.float32)


def export(model: keras.Model, path: Path, workdir: Path) -> str:
    """Write ``path`` with Keras' exporter; the route taken, in words. ``ArtifactError`` if
    neither route gives a graph whose inputs are exactly the model's."""
    expected = input_names(model)
    model.export(str(path), format="onnx", verbose=False, opset_version=OPSET)
    if OnnxRuntime(path).inputs == expected:
        return "keras model.export(format='onnx')"
    saved = workdir / "saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    done = subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved),
         "--output", str(path), "--opset", str(OPSET)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise ArtifactError(f"tf2onnx could not convert the model: {done.stderr.strip()[-500:]}")
    found = OnnxRuntime(path).inputs
    if found != expected:
        raise ArtifactError(
            f"the ONNX export reads inputs {list(found)}, the model {list(expected)}"
        )
    return "keras model.export(format='tf_saved_model') + tf2onnx.convert"


def opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(
        int(entry.version) for entry in model.opset_import if entry.domain in ("", "ai.onnx")
    )


def write_onnx(folder: Path, model: keras.Model, rows: Rows) -> dict[str, Any]:
    """Export ``model`` to ``folder/model.onnx``, check it on ``rows`` against the model, and
    return the card's ``onnx`` section; nothing is left in ``folder`` if the check fails."""
    named = named_rows(model, rows)
    _build(model, named)
    path = folder / ONNX_FILE
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as workdir:
        staged = Path(workdir) / ONNX_FILE
        route = export(model, staged, Path(workdir))
        expected = keras_outputs(model, named)
        runtime = OnnxRuntime(staged)
        served = runtime.run(named)
        gap = parity_gap(expected, served)
        if gap is not None:
            raise ArtifactError(
                f"ONNX Runtime differs from the Keras model by {gap:.3g} on real rows, more than "
                f"float32 rounding explains ({PARITY_EPSILONS} epsilons relative): not exported"
            )
        shutil.move(staged, path)
    session_inputs = {i.name: i for i in runtime.session.get_inputs()}
    output = runtime.session.get_outputs()[0]
    return {
        "file": ONNX_FILE,
        "exporter": route,
        "opset": opset_of(path),
        "inputs": [
            {
                "name": name,
                "shape": _shape(session_inputs[name].shape),
                "dtype": np.dtype(runtime.dtypes[name]).name,
            }
            for name in runtime.inputs
        ],
        "output": {"name": output.name, "shape": _shape(output.shape)},
        "check": {
            "rows": len(expected),
            "max_abs_difference": float(np.max(np.abs(served - expected))),
            "against": "the Keras model's call on the TensorFlow backend",
        },
        "reference": {
            "inputs": {name: encode_rows(named[name][:REFERENCE_ROWS]) for name in runtime.inputs},
            "outputs": expected[:REFERENCE_ROWS].tolist(),
        },
    }


def reexport(folder: Path, rows: Rows | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Re-export a version folder's ``model.onnx`` from its ``model.keras`` and rewrite only the
    card's ``onnx`` section and ``files`` map. Rows: ``rows``, else the card's reference rows,
    else the test rows of the book dataset the card names (from ``data_dir``, or where
    ``training.datasets`` looks by default)."""
    import keras

    card = _verified_card(folder)
    try:
        model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, TypeError, OSError... for a bad file
        raise ArtifactError(f"{folder / MODEL_FILE} cannot be loaded safely: {error}") from None
    if rows is None:
        rows = _recorded_rows(card) or _book_rows(card, folder, data_dir)
    with tempfile.TemporaryDirectory(prefix="onnx-reexport-") as workdir:
        section = write_onnx(Path(workdir), model, rows)
        shutil.move(Path(workdir) / ONNX_FILE, folder / ONNX_FILE)
    # The onnx section goes where it was, else before "files"; write_metadata rehashes the files.
    write_metadata(folder, {**{k: v for k, v in card.items() if k != "files"}, "onnx": section,
                            "files": card["files"]})  # fmt: skip
    return section


def _verified_card(folder: Path) -> dict[str, Any]:
    """The card, every file it lists checked except the ``model.onnx`` about to be replaced (a
    re-export is how a missing or stale one is repaired)."""
    card = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    if MODEL_FILE not in card.get("files", {}):
        raise ArtifactError(f"{folder / METADATA_FILE} lists no sha256 for {MODEL_FILE}")
    for name, expected in card["files"].items():
        if name != ONNX_FILE and sha256_file(folder / name) != expected:
            raise ArtifactError(f"{folder / name} does not match its sha256 in {METADATA_FILE}: "
                                f"not exporting from a changed artifact")  # fmt: skip
    return card


def _recorded_rows(card: dict[str, Any]) -> dict[str, np.ndarray] | None:
    if "onnx" not in card:
        return None
    feeds, _ = reference_feeds(card["onnx"])
    return feeds


def _book_rows(card: dict[str, Any], folder: Path, data_dir: str | None) -> np.ndarray:
    from training.datasets import DataSource
    from training.recipes import BOOK

    name = card.get("dataset", {}).get("name", card.get("name"))
    if name not in BOOK:
        raise ArtifactError(
            f"{folder}: no rows to check the export on (its card has no onnx reference rows and "
            f"names no book dataset); export it from Python with training.onnx.reexport(folder, rows)"
        )
    recipe = BOOK[name]
    source = DataSource.from_environment(data_dir)
    split = recipe.load(source)
    return recipe.output(source).inputs(split.x_test[:CHECK_ROWS])


def _build(model: keras.Model, rows: Mapping[str, np.ndarray]) -> None:
    """Keras' ONNX exporter needs a model that has been called once (a loaded one has not)."""
    keras_outputs(model, {name: values[:1] for name, values in rows.items()})


def _shape(shape: Sequence[Any]) -> list[int | None]:
    return [dim if isinstance(dim, int) else None for dim in shape]
