"""``python -m training experiments NAME``: the book's model-selection runs and variants, re-run.

Writes ``<out>/<name>/results.md`` (our figures beside the book's) and PNG plots of training
vs validation loss and accuracy per epoch (and, for Boston, the smoothed mean K-fold
validation MAE). ``--epochs-scale`` shortens every run for a quick look; the table then says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from service.contract.vectorize import multi_hot  # noqa: E402
from training.datasets import DataSource, load_boston, load_imdb, load_reuters  # noqa: E402
from training.networks import seed_everything  # noqa: E402
from training.recipes import (  # noqa: E402
    build_imdb_model,
    build_reuters_model,
    kfold_validation,
    train_boston,
)

SEED = 1


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[[], keras.Model]
    book: float


IMDB_VARIANTS = [
    Variant("baseline: 16 relu, 16 relu", build_imdb_model, 0.8836),
    Variant("one layer: Dense(1, sigmoid) only", lambda: build_imdb_model(hidden=()), 0.8732),
    Variant("four hidden layers of 16", lambda: build_imdb_model(hidden=(16, 16, 16, 16)), 0.8806),
    Variant("hidden 16 then 1024", lambda: build_imdb_model(hidden=(16, 1024)), 0.8812),
    Variant("mse loss", lambda: build_imdb_model(loss="mse"), 0.8828),
    Variant("tanh activations", lambda: build_imdb_model(activation="tanh"), 0.8772),
]
REUTERS_VARIANTS = [
    Variant("baseline: 64, 64", build_reuters_model, 0.804),
    Variant("bottleneck 64 -> 4", lambda: build_reuters_model(hidden=(64, 4)), 0.680),
    Variant("64 -> 4096", lambda: build_reuters_model(hidden=(64, 4096)), 0.785),
    Variant("512 -> 512", lambda: build_reuters_model(hidden=(512, 512)), 0.803),
    Variant("single Dense(46, softmax)", lambda: build_reuters_model(hidden=()), 0.796),
    Variant("four hidden layers of 64", lambda: build_reuters_model(hidden=(64,) * 4), 0.790),
]


def epochs(count: int, scale: float) -> int:
    return max(1, round(count * scale))


def plot_history(history: dict[str, list[float]], title: str, path: Path) -> None:
    """Training vs validation loss and accuracy per epoch, as in the book's figures."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        epochs_axis = range(1, len(history[metric]) + 1)
        axis.plot(epochs_axis, history[metric], "bo", label=f"training {metric}")
        axis.plot(epochs_axis, history[f"val_{metric}"], "b", label=f"validation {metric}")
        axis.set(title=f"{title}: {metric}", xlabel="epoch", ylabel=metric)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def run(name: str, source: DataSource, out: Path, scale: float = 1.0,
        tensorboard: str | None = None) -> Path:  # fmt: skip
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# {name}: our figures beside the book's", ""]
    if scale != 1.0:
        lines += [f"Every epoch count was multiplied by {scale}: a quick look, not the recipe.", ""]
    lines += {"imdb": imdb, "reuters": reuters, "boston": boston}[name](source, folder, scale, tensorboard)
    report = folder / "results.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _callbacks(tensorboard: str | None, run_name: str) -> list[keras.callbacks.Callback]:
    return [keras.callbacks.TensorBoard(str(Path(tensorboard) / run_name))] if tensorboard else []


def imdb(source: DataSource, folder: Path, scale: float, tensorboard: str | None) -> list[str]:
    split = load_imdb(source)
    x_train, x_test = multi_hot(split.x_train), multi_hot(split.x_test)
    seed_everything(SEED)
    fit = build_imdb_model().fit(
        x_train[10_000:], split.y_train[10_000:], epochs=epochs(20, scale), batch_size=512,
        validation_data=(x_train[:10_000], split.y_train[:10_000]), verbose=2,
        callbacks=_callbacks(tensorboard, "imdb-selection"),
    )  # fmt: skip
    plot_history(fit.history, "IMDB, 10,000 held out", folder / "imdb_validation.png")
    best = int(np.argmin(fit.history["val_loss"])) + 1
    lines = [
        "## Model selection (first 10,000 training reviews held out, 20 epochs, batch 512)", "",
        "| figure | ours | book |", "|---|---|---|",
        f"| final validation loss | {fit.history['val_loss'][-1]:.3f} | 0.703 |",
        f"| final validation accuracy | {fit.history['val_accuracy'][-1]:.4f} | 0.8675 |",
        f"| epoch of lowest validation loss | {best} | about 4 |", "",
        "![loss and accuracy](imdb_validation.png)", "",
        "## Variants (all 25,000 training reviews, 4 epochs, batch 512): test accuracy", "",
        "| variant | ours | book |", "|---|---|---|",
    ]  # fmt: skip
    for variant in IMDB_VARIANTS:
        seed_everything(SEED)
        model = variant.build()
        model.fit(x_train, split.y_train, epochs=epochs(4, scale), batch_size=512, verbose=0)
        accuracy = model.evaluate(x_test, split.y_test, batch_size=2048, verbose=0)[1]
        lines.append(f"| {variant.name} | {accuracy:.4f} | {variant.book:.4f} |")
        print(f"{variant.name}: {accuracy:.4f} (book {variant.book})", flush=True)
    return lines


def reuters(source: DataSource, folder: Path, scale: float, tensorboard: str | None) -> list[str]:
    split = load_reuters(source)
    x_train = multi_hot(split.x_train)
    x_val, y_val, x_fit, y_fit = x_train[:1000], split.y_train[:1000], x_train[1000:], split.y_train[1000:]
    seed_everything(SEED)
    fit = build_reuters_model().fit(
        x_fit, y_fit, epochs=epochs(20, scale), batch_size=512, validation_data=(x_val, y_val),
        verbose=2, callbacks=_callbacks(tensorboard, "reuters-selection"),
    )  # fmt: skip
    plot_history(fit.history, "Reuters, 1,000 held out", folder / "reuters_validation.png")
    lines = [
        "## Model selection (first 1,000 training newswires held out, 20 epochs, batch 512)", "",
        "| figure | ours | book |", "|---|---|---|",
        f"| final validation accuracy | {fit.history['val_accuracy'][-1]:.4f} | 0.804 |",
        f"| final validation loss | {fit.history['val_loss'][-1]:.3f} | 1.09 |",
        f"| epoch of lowest validation loss | {int(np.argmin(fit.history['val_loss'])) + 1} | about 9 |",
        "", "![loss and accuracy](reuters_validation.png)", "",
        "## Variants (20 epochs, batch 128): held-out validation accuracy at the end", "",
        "| variant | ours | book |", "|---|---|---|",
    ]  # fmt: skip
    for variant in REUTERS_VARIANTS:
        seed_everything(SEED)
        history = variant.build().fit(x_fit, y_fit, epochs=epochs(20, scale), batch_size=128,
                                      validation_data=(x_val, y_val), verbose=0).history  # fmt: skip
        lines.append(f"| {variant.name} | {history['val_accuracy'][-1]:.4f} | {variant.book:.3f} |")
        print(f"{variant.name}: {history['val_accuracy'][-1]:.4f} (book {variant.book})", flush=True)
    return lines


def smooth(points: list[float], factor: float = 0.9) -> list[float]:
    """The book's exponential moving average of a curve."""
    smoothed: list[float] = []
    for point in points:
        smoothed.append(smoothed[-1] * factor + point * (1 - factor) if smoothed else point)
    return smoothed


def boston(source: DataSource, folder: Path, scale: float, tensorboard: str | None) -> list[str]:
    split = load_boston(source)
    x, y = split.x_train.astype("float32"), split.y_train.astype("float32")
    mae_100, _ = kfold_validation(x, y, 4, epochs(100, scale), 1, SEED, verbose=1,
                                  tensorboard=tensorboard)  # fmt: skip
    long_epochs = epochs(500, scale)
    _, curves = kfold_validation(x, y, 4, long_epochs, 16, SEED, verbose=1)
    mean_curve = np.mean(curves, axis=0).tolist()
    smoothed = smooth(mean_curve[10:])
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(range(11, len(mean_curve) + 1), smoothed)
    axis.set(title="Boston: mean K-fold validation MAE (smoothed, first 10 epochs dropped)",
             xlabel="epoch", ylabel="validation MAE ($1000s)")  # fmt: skip
    figure.tight_layout()
    figure.savefig(folder / "boston_kfold_mae.png")
    plt.close(figure)
    final = train_boston(split, SEED, verbose=0, kfold_epochs=1, kfold_batch_size=64)
    best = int(np.argmin(smoothed)) + 11
    return [
        "## K-fold validation (k = 4)", "",
        "| figure | ours | book |", "|---|---|---|",
        f"| mean validation MAE, {epochs(100, scale)} epochs, batch 1 | {mae_100:.2f} | 2.40 |",
        f"| epoch where the smoothed MAE curve is lowest ({long_epochs} epochs, batch 16) | {best} | about 80 |",
        f"| final model (80 epochs, batch 16, all 404 rows): test MAE | {final.metrics['test_mae']:.2f} | 2.61 |",
        f"| final model: test MSE | {final.metrics['test_mse']:.2f} | 17.43 |",
        "", "![smoothed K-fold validation MAE](boston_kfold_mae.png)",
    ]  # fmt: skip
