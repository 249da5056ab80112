"""Screening for Boston's version 2 (seed 1 only): long K-fold curves of candidate specs.

For each spec: the K-fold (k=4, or K with ``NAME@kK``) mean validation MAE per epoch over its
epochs, the epoch where its smoothed curve is lowest (``training.ensembles.best_epoch``; for a
cosine schedule, its end), and, for the record only, the test MAE per epoch of the same spec
trained on all 404 rows. The epoch counts of the candidates
in ``v2.md`` were read from the validation columns here, never from the test ones.

    TRAINING_DATA_DIR=/work/shared/data/keras PYTHONPATH=. \
        python experiments/boston/v2_screening.py [SPEC ...] >> experiments/boston/v2-screening.jsonl
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from training.datasets import DataSource, load_boston
from training.ensembles import RegressorSpec, best_epoch, fit, kfold, smoothed
from v2_variants import describe  # beside this script, on sys.path as its folder

SPECS = {
    "book1": RegressorSpec(epochs=300),
    "book5": RegressorSpec(members=5, epochs=300),
    "huber5": RegressorSpec(members=5, epochs=300, loss="huber", huber_delta=2.0),
    "huber5_d1": RegressorSpec(members=5, epochs=400, loss="huber", huber_delta=1.0),
    "huber5_drop": RegressorSpec(members=5, epochs=400, loss="huber", huber_delta=2.0, dropout=0.1),
    "huber5_l2": RegressorSpec(members=5, epochs=400, loss="huber", huber_delta=2.0, l2=1e-3),
    "huber5_wide_drop": RegressorSpec(
        hidden=(128, 128), members=5, epochs=400, loss="huber", huber_delta=2.0, dropout=0.2
    ),
    "huber5_bag": RegressorSpec(
        members=5, epochs=400, loss="huber", huber_delta=2.0, bootstrap=True
    ),
    "log5": RegressorSpec(members=5, epochs=400, target="log"),
    "huber5_ema": RegressorSpec(members=5, epochs=400, loss="huber", huber_delta=2.0, ema=0.999),
    "huber5_drop_ema": RegressorSpec(
        members=5, epochs=400, loss="huber", huber_delta=2.0, dropout=0.1, ema=0.999
    ),
    # A cosine schedule depends on the run's length: each length is its own run, read at its end.
    "huber5_cos200": RegressorSpec(
        members=5, epochs=200, loss="huber", huber_delta=2.0, schedule="cosine"
    ),
    "huber5_cos300": RegressorSpec(
        members=5, epochs=300, loss="huber", huber_delta=2.0, schedule="cosine"
    ),
    "huber5_cos400": RegressorSpec(
        members=5, epochs=400, loss="huber", huber_delta=2.0, schedule="cosine"
    ),
    "huber5_drop_cos400": RegressorSpec(
        members=5, epochs=400, loss="huber", huber_delta=2.0, dropout=0.1, schedule="cosine"
    ),
}
EPOCHS = (80, 100, 125, 150, 200, 250, 300, 350, 400)


def screen(name: str, spec: RegressorSpec, seed: int = 1, k: int = 4) -> dict:
    split = load_boston(DataSource.from_environment(None))
    x, y = np.asarray(split.x_train, "float32"), np.asarray(split.y_train, "float32")
    x_test, y_test = np.asarray(split.x_test, "float32"), np.asarray(split.y_test)
    started = time.time()
    run = kfold(x, y, spec, seed, k=k)
    curve = run.mean_curve()
    # a cosine schedule is a recipe only at its end: the points before it are not runs of that length
    chosen = spec.epochs if spec.schedule == "cosine" else best_epoch(run)
    _, history = fit(x, y, spec, seed, watch=(x_test, y_test))
    test = history["watch_mae"]
    return {"spec": name, "describe": describe(spec), "k": k, "best_epoch": chosen, "val_at_best": float(curve[chosen - 1]),
            "smoothed_min": float(smoothed(curve).min()),
            "val_at": {e: float(curve[e - 1]) for e in EPOCHS if e <= spec.epochs},
            "test_at_best": test[chosen - 1], "test_at": {e: test[e - 1] for e in EPOCHS if e <= spec.epochs},
            "secs": time.time() - started}  # fmt: skip


if __name__ == "__main__":
    for arg in sys.argv[1:] or list(SPECS):  # NAME, or NAME@kK for K folds instead of 4
        name, _, folds = arg.partition("@k")
        print(json.dumps(screen(arg, SPECS[name], k=int(folds or 4))), flush=True)
