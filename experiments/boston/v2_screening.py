"""Screening for Boston's version 2 (seed 1 only): long K-fold curves of candidate specs.

For each spec: the K-fold (k=4) mean validation MAE per epoch over 300 epochs, the epoch where
its smoothed curve is lowest (``training.ensembles.best_epoch``), and, for the record only, the
test MAE per epoch of the same spec trained on all 404 rows. The epoch counts of the candidates
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

SPECS = {
    "book1": RegressorSpec(epochs=300),
    "book5": RegressorSpec(members=5, epochs=300),
    "huber5": RegressorSpec(members=5, epochs=300, loss="huber", huber_delta=2.0),
    "wide5_l2": RegressorSpec(hidden=(128, 128), members=5, epochs=300, l2=1e-3),
    "drop5": RegressorSpec(members=5, epochs=300, dropout=0.1),
}
EPOCHS = (80, 100, 125, 150, 200, 250, 300)


def screen(name: str, spec: RegressorSpec, seed: int = 1) -> dict:
    split = load_boston(DataSource.from_environment(None))
    x, y = np.asarray(split.x_train, "float32"), np.asarray(split.y_train, "float32")
    x_test, y_test = np.asarray(split.x_test, "float32"), np.asarray(split.y_test)
    started = time.time()
    run = kfold(x, y, spec, seed)
    chosen, curve = best_epoch(run), run.mean_curve()
    _, history = fit(x, y, spec, seed, watch=(x_test, y_test))
    test = history["watch_mae"]
    return {"spec": name, "best_epoch": chosen, "val_at_best": float(curve[chosen - 1]),
            "smoothed_min": float(smoothed(curve).min()),
            "val_at": {e: float(curve[e - 1]) for e in EPOCHS},
            "test_at_best": test[chosen - 1], "test_at": {e: test[e - 1] for e in EPOCHS},
            "secs": time.time() - started}  # fmt: skip


if __name__ == "__main__":
    for name in sys.argv[1:] or list(SPECS):
        print(json.dumps(screen(name, SPECS[name])), flush=True)
