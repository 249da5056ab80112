"""Table regressors as averaged ensembles: K small networks behind one Normalization layer,
combined by ``keras.layers.Average`` into ONE Keras model with one input and one output.

Why one model: the table kind serves any network that reads the raw ``features`` row and
returns one number, so an ensemble built this way is served, exported to ONNX and checked for
parity exactly like the book's single network, with the same card.

Why train the members together: on 404 rows a fit is dominated by Keras' per-step overhead, not
arithmetic. A training model with K outputs and the sum of K losses updates every member on the
same batch in one step; the members share no weights, so each one's gradient is its own loss's
gradient (as if trained alone, on the same batch order), and K members cost little more than one.
The members differ by their initial weights.

Built-in layers only (``Normalization``, ``Dense``, ``Dropout``, ``Average``): the service loads
with ``safe_mode=True`` and serves through an ONNX export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class RegressorSpec:
    """One regression recipe: the member network, how many are averaged, and how they train."""

    hidden: tuple[int, ...] = (64, 64)
    members: int = 1
    epochs: int = 80
    batch_size: int = 16
    loss: str = "mse"
    """``mse``, or ``huber`` (Huber loss with ``huber_delta``, in the target's unit)."""
    huber_delta: float = 1.0
    l2: float = 0.0
    """L2 penalty on every hidden kernel (0: none)."""
    dropout: float = 0.0
    """Dropout rate after every hidden layer (0: none). Identity when serving."""
    learning_rate: float = 0.001
    """RMSprop's learning rate (Keras' default is 0.001, the book's)."""
    schedule: str = "constant"
    """``constant``, or ``cosine``: the learning rate decays to 0 over the run (one cosine
    half-wave), so the last epoch, the one served, is taken at rest instead of mid-step."""
    ema: float = 0.0
    """Polyak averaging: with a momentum here (0.999: about the last 1,000 steps), the weights
    served, and those every epoch is measured with, are the optimizer's exponential moving
    average of the trained ones (Keras' ``use_ema`` and ``SwapEMAWeights``), not the last
    noisy step's. Keras' average starts from the initial weights without a bias correction, so
    it lags for the first few thousand steps (a curve starts far above the plain one); the
    epoch count is read from the curve as for any spec. 0: off."""
    bootstrap: bool = False
    """Bagging: each member trains on its own bootstrap sample of the rows (a with-replacement
    draw of as many rows, given as per-member row weights), so the members differ by their data
    as well as by their initial weights."""
    target: str = "raw"
    """``raw``, or ``log``: the members predict log(target), are trained there, and the served
    model averages exp(member) (prices are right-skewed; errors become relative)."""

    def describe(self) -> dict[str, Any]:
        """The spec as plain values, for a model card or an experiments table."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}  # fmt: skip


def _loss(spec: RegressorSpec) -> Any:
    import keras

    if spec.loss == "huber":
        return keras.losses.Huber(delta=spec.huber_delta)
    if spec.loss == "mse":
        return "mse"
    raise ValueError(f"unknown loss {spec.loss!r}: use 'mse' or 'huber'")


def _optimizer(spec: RegressorSpec, rows: int) -> Any:
    import keras

    averaging = {"use_ema": True, "ema_momentum": spec.ema} if spec.ema else {}
    if spec.schedule == "constant":
        return keras.optimizers.RMSprop(spec.learning_rate, **averaging)
    if spec.schedule == "cosine":
        steps = spec.epochs * -(-rows // spec.batch_size)
        decay = keras.optimizers.schedules.CosineDecay(spec.learning_rate, steps)
        return keras.optimizers.RMSprop(decay, **averaging)
    raise ValueError(f"unknown schedule {spec.schedule!r}: use 'constant' or 'cosine'")


def build(x_train: np.ndarray, spec: RegressorSpec, output: str, name: str,
          ) -> tuple[keras.Model, keras.Model]:  # fmt: skip
    """The training model (K outputs, compiled, in the training space: log(target) for a log
    target) and the served model (the average of the members in the target's unit, named
    ``output``), sharing every layer. The Normalization layer is named ``normalization``: the
    model card reads its statistics from there."""
    if spec.target not in ("raw", "log"):
        raise ValueError(f"unknown target {spec.target!r}: use 'raw' or 'log'")
    import keras

    x_train = np.asarray(x_train, dtype="float32")
    features = keras.Input((x_train.shape[1],), name="features")
    normalization = keras.layers.Normalization(name="normalization")
    normalization.adapt(x_train)
    normalized = normalization(features)
    regularizer = keras.regularizers.L2(spec.l2) if spec.l2 else None
    outputs = []
    for member in range(1, spec.members + 1):
        x = normalized
        for i, units in enumerate(spec.hidden, start=1):
            x = keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer,
                                   name=f"member_{member}_hidden_{i}")(x)  # fmt: skip
            if spec.dropout:
                x = keras.layers.Dropout(spec.dropout, name=f"member_{member}_dropout_{i}")(x)
        outputs.append(keras.layers.Dense(1, name=f"member_{member}_{output}")(x))
    training = keras.Model(features, outputs, name=f"{name}_members")
    training.compile(optimizer=_optimizer(spec, len(x_train)), loss=[_loss(spec)] * spec.members)
    if spec.target == "log":
        outputs = [keras.layers.Activation("exponential", name=f"member_{member}_exp")(out)
                   for member, out in enumerate(outputs, start=1)]  # fmt: skip
    averaged = keras.layers.Average(name=output)(outputs) if spec.members > 1 else outputs[0]
    return training, keras.Model(features, averaged, name=name)


def mae(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute error of a served (one-output) model."""
    predicted = np.asarray(model(np.asarray(x, dtype="float32"), training=False))[:, 0]
    return float(np.mean(np.abs(predicted - np.asarray(y, dtype="float64"))))


def fit(x: np.ndarray, y: np.ndarray, spec: RegressorSpec, seed: int, output: str = "value",
        name: str = "regressor", watch: tuple[np.ndarray, np.ndarray] | None = None,
        callbacks: list[keras.callbacks.Callback] | None = None,
        ) -> tuple[keras.Model, dict[str, list[float]]]:  # fmt: skip
    """Train the members on ``x, y`` from ``seed``; the served model and the per-epoch history
    (the members' summed loss, and with ``watch`` the averaged model's MAE on those rows, and
    the first member's alone: with the same seed it is the network a one-member spec trains)."""
    import keras

    keras.utils.set_random_seed(seed)
    training, served = build(x, spec, output, name)
    history: dict[str, list[float]] = {"watch_mae": [], "watch_mae_first": []}
    callbacks = list(callbacks or [])
    if spec.ema:  # first, so every other callback sees the averaged weights at an epoch's end
        callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if watch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: _watch(training, watch, history, spec)
        ))  # fmt: skip
    y = np.asarray(y, dtype="float32")
    if spec.target == "log":
        y = np.log(y)
    result = training.fit(np.asarray(x, dtype="float32"), [y] * spec.members, epochs=spec.epochs,
                          batch_size=spec.batch_size, verbose=0, callbacks=callbacks,
                          sample_weight=bootstrap_weights(len(y), spec.members, seed)
                          if spec.bootstrap else None)  # fmt: skip
    history["loss"] = [float(v) for v in result.history["loss"]]
    if watch is None:
        del history["watch_mae"], history["watch_mae_first"]
    return served, history


def bootstrap_weights(rows: int, members: int, seed: int) -> list[np.ndarray]:
    """Each member's bootstrap sample as row weights: how many times a with-replacement draw of
    ``rows`` rows picked each row (mean 1, about 37 % of the rows at 0)."""
    draws = np.random.default_rng(seed).integers(0, rows, size=(members, rows))
    return [np.bincount(draw, minlength=rows).astype("float32") for draw in draws]


def _watch(training: keras.Model, watch: tuple[np.ndarray, np.ndarray],
           history: dict[str, list[float]], spec: RegressorSpec) -> None:  # fmt: skip
    """One epoch's MAE on the watched rows: of the members' average, and of the first member."""
    x, y = watch
    members = np.asarray(training(np.asarray(x, dtype="float32"), training=False))[..., 0]
    members = members.reshape(-1, len(x))  # (members, rows), also for a one-member model
    if spec.target == "log":
        members = np.exp(members)
    truth = np.asarray(y, dtype="float64")
    history["watch_mae"].append(float(np.mean(np.abs(members.mean(axis=0) - truth))))
    history["watch_mae_first"].append(float(np.mean(np.abs(members[0] - truth))))


@dataclass(frozen=True)
class KFold:
    """A K-fold run: each fold's final validation MAE and its per-epoch curve (of the averaged
    model, and of its first member alone)."""

    final: list[float]
    curves: list[list[float]]
    first_final: list[float]
    first_curves: list[list[float]]

    @property
    def mean(self) -> float:
        return float(np.mean(self.final))

    def first_member(self) -> KFold:
        """The same run seen through the first member alone."""
        return KFold(self.first_final, self.first_curves, self.first_final, self.first_curves)

    def mean_curve(self) -> np.ndarray:
        return np.mean(np.asarray(self.curves), axis=0)


def kfold(x: np.ndarray, y: np.ndarray, spec: RegressorSpec, seed: int, k: int = 4) -> KFold:
    """The book's K-fold protocol (consecutive folds, Normalization adapted on each fold's
    training rows) for any spec: the averaged model's validation MAE, per fold and per epoch."""
    fold_size = len(x) // k
    final, curves, first_final, first_curves = [], [], [], []
    for fold in range(k):
        val = slice(fold * fold_size, (fold + 1) * fold_size)
        x_fit = np.concatenate([x[: val.start], x[val.stop :]])
        y_fit = np.concatenate([y[: val.start], y[val.stop :]])
        _, history = fit(x_fit, y_fit, spec, seed + fold, watch=(x[val], y[val]))
        curves.append(history["watch_mae"])
        final.append(curves[-1][-1])
        first_curves.append(history["watch_mae_first"])
        first_final.append(first_curves[-1][-1])
    return KFold(final, curves, first_final, first_curves)


def smoothed(curve: np.ndarray, factor: float = 0.9, skip: int = 10) -> np.ndarray:
    """The book's smoothing of a validation curve: drop the first ``skip`` epochs, then an
    exponential moving average. Index ``i`` of the result is epoch ``skip + i + 1``."""
    points: list[float] = []
    for value in curve[skip:]:
        points.append(points[-1] * factor + value * (1 - factor) if points else float(value))
    return np.asarray(points)


def best_epoch(kfold_run: KFold, skip: int = 10) -> int:
    """The epoch count the K-fold run selects: where the smoothed mean validation MAE is lowest."""
    return int(np.argmin(smoothed(kfold_run.mean_curve(), skip=skip))) + skip + 1
