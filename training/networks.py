"""The toolbox every training path shares: the layer stacks, the seed, the ``Trained`` result and
the card's words for a model (its layers, its per-epoch history).

The book's recipes (``training.recipes``), the version-2 text networks
(``training.tfidf_networks``) and the models fitted on a user's own file (``training.fit``) all
build on these. They live apart from the catalogue of recipes so that each of those modules
imports the tools and none imports the catalogue that lists it: the package's imports form no
circle.

Keras is imported inside the functions that need it, not here: the command line and ``fit``'s
checks of a user's file import this module without paying TensorFlow's seconds of start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras


@dataclass
class Trained:
    """A trained model and the figures its model card records."""

    model: keras.Model
    recipe: dict[str, Any]
    history: dict[str, list[float]]
    metrics: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Same seed, same weights and batches: reruns give the same model on the same machine."""
    import keras

    keras.utils.set_random_seed(seed)


def dense_stack(
    inputs: int, hidden: list[int], outputs: int, activation: str, final: str | None, name: str
) -> keras.Model:
    """The text networks: the multi-hot row, hidden Dense layers, one output layer."""
    import keras

    layers: list[keras.layers.Layer] = [keras.Input((inputs,), name="multi_hot")]
    layers += [
        keras.layers.Dense(units, activation=activation, name=f"hidden_{i}")
        for i, units in enumerate(hidden, start=1)
    ]
    layers.append(keras.layers.Dense(outputs, activation=final, name="output"))
    return keras.Sequential(layers, name=name)


def normalized_regressor(x_train: np.ndarray, output: str, name: str) -> keras.Model:
    """The table network: Normalization adapted on the training rows is the first layer, so the
    model reads raw features; then Dense 64 relu twice and one linear output."""
    import keras

    normalization = keras.layers.Normalization(name="normalization")
    normalization.adapt(np.asarray(x_train, dtype="float32"))
    return keras.Sequential(
        [
            keras.Input((np.shape(x_train)[1],), name="features"),
            normalization,
            keras.layers.Dense(64, activation="relu", name="hidden_1"),
            keras.layers.Dense(64, activation="relu", name="hidden_2"),
            keras.layers.Dense(1, name=output),
        ],
        name=name,
    )


def compile_regressor(model: keras.Model) -> None:
    """The table networks' training settings: rmsprop, mean squared error, MAE reported."""
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])


def describe(model: keras.Model) -> list[str]:
    """The layers in words, for the model card."""
    import keras

    described = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            described.append(f"Dense({layer.units}, {layer.activation.__name__})")
        else:
            described.append(type(layer).__name__)
    return described


def history_of(fit: keras.callbacks.History) -> dict[str, list[float]]:
    """A fit's per-epoch figures as plain floats, for the model card."""
    return {key: [float(v) for v in values] for key, values in fit.history.items()}
