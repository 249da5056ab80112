"""``python experiments/boston/v2_variants.py``: the experiments behind Boston's version 2.

Each variant is a :class:`~training.ensembles.RegressorSpec`, scored over several seeds the same
way: K-fold (k=4) validation MAE on the 404 training rows (what chooses), and test MAE of the
model trained on all 404 rows (what is reported, never used to choose). ``--select`` first runs
long K-fold curves and reads the epoch count where the smoothed mean validation MAE is lowest.

Results are kept per variant and seed in ``v2.json`` beside the table, so a run can be resumed
or extended (``--only``) without recomputing the rest; ``v2.md`` is rewritten from all of them.

A research script, not part of the installed ``training`` package: it lives beside its write-up
and imports ``training`` (installed, or ``PYTHONPATH=.`` from the repository root). Its default
outputs are beside this file, wherever it is run from.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.datasets import DataSource, load_boston
from training.ensembles import RegressorSpec, best_epoch, fit, kfold
from training.recipes import BOSTON_ENSEMBLE

SEEDS = (1, 2, 3)
OUT = Path(__file__).resolve().parent / "v2.md"
SCREENING = "v2-screening.jsonl"


@dataclass(frozen=True)
class Run:
    """One trained spec, and the table rows it gives: the averaged ensemble and, from the same
    run, its first member alone (the very network a one-member spec with that seed trains)."""

    spec: RegressorSpec
    ensemble: str
    single: str | None = None


RUNS = [
    Run(RegressorSpec(members=5), "ensemble of 5, 80 epochs",
        "version 1: the book's recipe (one network, 80 epochs)"),
    Run(RegressorSpec(members=5, epochs=195, loss="huber", huber_delta=2.0),
        "Huber (δ 2), ensemble of 5, 195 epochs", "Huber (δ 2), one network, 195 epochs"),
    Run(RegressorSpec(members=10, epochs=195, loss="huber", huber_delta=2.0),
        "Huber (δ 2), ensemble of 10, 195 epochs"),
    Run(BOSTON_ENSEMBLE, "version 2: Huber (δ 2), weight EMA 0.999, ensemble of 5, 270 epochs"),
    Run(RegressorSpec(members=5, epochs=375, loss="huber", huber_delta=2.0, dropout=0.1),
        "Huber (δ 2), dropout 0.1, ensemble of 5, 375 epochs"),
    Run(RegressorSpec(members=5, epochs=300, loss="huber", huber_delta=2.0, schedule="cosine"),
        "Huber (δ 2), cosine decay, ensemble of 5, 300 epochs"),
    Run(RegressorSpec(members=5, epochs=400, loss="huber", huber_delta=2.0, schedule="cosine"),
        "Huber (δ 2), cosine decay, ensemble of 5, 400 epochs"),
]  # fmt: skip


def score(spec: RegressorSpec, seed: int, x: np.ndarray, y: np.ndarray,
          x_test: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """One seed of one run: K-fold validation MAE, then the test MAE of the model trained on
    all rows; for the ensemble and for its first member."""
    started = time.perf_counter()
    validation = kfold(x, y, spec, seed)
    _, history = fit(x, y, spec, seed, watch=(x_test, y_test))
    seconds = round(time.perf_counter() - started, 1)
    return {
        "ensemble": _figures(validation, history["watch_mae"][-1], spec.epochs, seconds),
        "single": _figures(validation.first_member(), history["watch_mae_first"][-1], spec.epochs, seconds),
    }  # fmt: skip


def _figures(validation: Any, test_mae: float, epochs: int, seconds: float) -> dict[str, Any]:
    return {"kfold_val_mae": validation.mean, "test_mae": test_mae, "seconds": seconds,
            "kfold_best_epoch": best_epoch(validation) if epochs > 20 else None}  # fmt: skip


def select_epochs(spec: RegressorSpec, seeds: tuple[int, ...], x: np.ndarray, y: np.ndarray,
                  epochs: int) -> dict[str, Any]:  # fmt: skip
    """Long K-fold curves of ``spec`` (one per seed): the epoch each selects, and their mean."""
    long = RegressorSpec(**{**asdict(spec), "hidden": spec.hidden, "epochs": epochs})
    runs = [kfold(x, y, long, seed) for seed in seeds]
    picks = [best_epoch(run) for run in runs]
    first = [best_epoch(run.first_member()) for run in runs]
    return {"epochs": epochs, "picks": picks, "mean": float(np.mean(picks)),
            "first_member_picks": first}  # fmt: skip


def rows(results: dict[str, Any], seeds: tuple[int, ...]) -> list[tuple[str, RegressorSpec, list[dict]]]:
    """Each table row with its per-seed figures, for the runs every seed has scored."""
    found = []
    for run in RUNS:
        scored = [results.get(run.ensemble, {}).get("seeds", {}).get(str(seed)) for seed in seeds]
        if any(entry is None for entry in scored):
            continue
        if run.single:
            single = RegressorSpec(**{**asdict(run.spec), "hidden": run.spec.hidden, "members": 1})
            found.append((run.single, single, [entry["single"] for entry in scored]))
        found.append((run.ensemble, run.spec, [entry["ensemble"] for entry in scored]))
    return found


def table(results: dict[str, Any], seeds: tuple[int, ...]) -> str:
    """The markdown table: mean ± sd over the seeds of each row."""
    lines = [
        "| variant | spec | K-fold validation MAE | test MAE | K-fold best epoch | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for name, spec, runs in rows(results, seeds):
        val = [run["kfold_val_mae"] for run in runs]
        test = [run["test_mae"] for run in runs]
        picks = [run["kfold_best_epoch"] for run in runs if run.get("kfold_best_epoch")]
        if spec.schedule == "cosine":  # its curve before the end is not a run of that length
            picks = []
        pick = f"{np.mean(picks):.0f}" if picks else "–"
        lines.append(f"| {name} | {describe(spec)} | {_mean_sd(val)} | {_mean_sd(test)} "
                     f"| {pick} | {len(runs)} |")  # fmt: skip
    return "\n".join(lines)


def describe(spec: RegressorSpec) -> str:
    parts = [f"{'-'.join(map(str, spec.hidden))}", f"{spec.epochs} ep", f"batch {spec.batch_size}"]
    if spec.members > 1:
        parts.insert(0, f"{spec.members} × avg")
    if spec.loss != "mse":
        parts.append(f"{spec.loss} δ={spec.huber_delta:g}")
    if spec.l2:
        parts.append(f"L2 {spec.l2:g}")
    if spec.dropout:
        parts.append(f"dropout {spec.dropout:g}")
    if spec.schedule != "constant":
        parts.append(f"{spec.schedule} decay")
    if spec.ema:
        parts.append(f"weight EMA {spec.ema:g}")
    if spec.bootstrap:
        parts.append("bagged")
    if spec.target != "raw":
        parts.append(f"{spec.target} target")
    return ", ".join(parts)


def _mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python experiments/boston/v2_variants.py",
                                     description=__doc__)  # fmt: skip
    parser.add_argument("--data-dir", help="folder holding boston_housing.npz")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="the markdown table (default: v2.md beside this script)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--only", nargs="+", metavar="WORD", help="score only the runs whose "
                        "name contains one of these words (the others are kept from the JSON)")
    parser.add_argument("--select", type=int, metavar="EPOCHS",
                        help="first run K-fold curves of this many epochs of version 2's spec, "
                             "and record the epochs they select (ensemble and first member)")
    args = parser.parse_args(argv)
    seeds = tuple(args.seeds)
    split = load_boston(DataSource.from_environment(args.data_dir))
    x, y = np.asarray(split.x_train, "float32"), np.asarray(split.y_train, "float32")
    x_test, y_test = np.asarray(split.x_test, "float32"), np.asarray(split.y_test, "float64")
    store = args.out.with_suffix(".json")
    results: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}
    if args.select:
        results["_selection"] = select_epochs(BOSTON_ENSEMBLE, seeds, x, y, args.select)
        print(json.dumps(results["_selection"]), flush=True)
    for run in RUNS:
        if args.only and not any(word in run.ensemble for word in args.only):
            continue
        entry = results.setdefault(run.ensemble, {})
        if entry.get("spec") != run.spec.describe():
            entry.clear()
        entry["spec"] = run.spec.describe()
        scored = entry.setdefault("seeds", {})
        for seed in seeds:
            if str(seed) not in scored:
                scored[str(seed)] = score(run.spec, seed, x, y, x_test, y_test)
                store.write_text(json.dumps(results, indent=1))
            print(f"{run.ensemble} seed {seed}: {scored[str(seed)]}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(results, seeds, args.out))
    print(f"wrote {args.out}")
    return 0


def report(results: dict[str, Any], seeds: tuple[int, ...], out: Path) -> str:
    return "\n".join([
        "# Boston housing: version 2 (issue 16)",
        "",
        (f"Mean ± sample sd over seeds {', '.join(map(str, seeds))}. K-fold: k = 4, consecutive "
         "folds of the 404 training rows, Normalization adapted on each fold's training rows, "
         "validation MAE of the whole (averaged) model after its last epoch, averaged over the "
         "folds. Test MAE: the model trained on all 404 rows, on the 102 test rows. Variants were "
         "chosen on the K-fold column only. Ensembles are trained jointly (one step updates every "
         "member on the same batch) and served as one Keras model ending in `Average`."),
        "",
        table(results, seeds),
        "",
        *served_lines(results),
        *selection_lines(results.get("_selection")),
        *screening_lines(out.parent / SCREENING),
        *CHOICE,
        "Produced by `python experiments/boston/v2_variants.py` (resumable: raw figures in "
        "`v2.json`).",
        "",
    ])  # fmt: skip


def served_lines(results: dict[str, Any], target: float = 2.45) -> list[str]:
    """What the served version 2 is: the recipe with the training command's seed (1), whose
    figures are that seed's row above; and whether it meets issue 16's target."""
    name = next(run.ensemble for run in RUNS if run.spec == BOSTON_ENSEMBLE)
    served = results.get(name, {}).get("seeds", {}).get("1", {}).get("ensemble")
    if served is None:
        return []
    met = "meets" if served["test_mae"] <= target else "does not meet"
    return [
        ("The served version 2 (`python -m training train boston --recipe improved`, seed 1) is "
         f"that recipe's seed-1 model: K-fold validation MAE {served['kfold_val_mae']:.3f}, test "
         f"MAE {served['test_mae']:.3f} (the same figure through the HTTP API, "
         f"`tests/test_version2_boston.py`). It {met} issue 16's target of {target} on the test "
         "set; no seed or epoch count was picked by its test figure."),
        "",
        *tie_lines(results, name),
    ]


def tie_lines(results: dict[str, Any], chosen: str) -> list[str]:
    """Rows whose mean K-fold MAE is below version 2's, with how that gap compares to the
    seed-to-seed sd: a gap inside it is a tie, and the cheaper model was kept."""
    def kfold_mean_sd(name: str) -> tuple[float, float]:
        values = [seed["ensemble"]["kfold_val_mae"] for seed in results[name]["seeds"].values()]
        return float(np.mean(values)), float(np.std(values, ddof=1))

    mine, spread = kfold_mean_sd(chosen)
    lines = []
    for run in RUNS:
        if run.ensemble == chosen or len(results.get(run.ensemble, {}).get("seeds", {})) < 2:
            continue
        mean, sd = kfold_mean_sd(run.ensemble)
        if mean < mine:
            lines.append(f"{run.ensemble} has a lower mean K-fold MAE ({mean:.3f} against "
                         f"{mine:.3f}), by {mine - mean:.3f}, inside the seed-to-seed sd "
                         f"({sd:.3f}, {spread:.3f}): a tie, and version 2 keeps the smaller "
                         "model." if mine - mean < min(sd, spread) else
                         f"{run.ensemble} has a lower mean K-fold MAE ({mean:.3f} against "
                         f"{mine:.3f}): version 2 should be retrained with it.")  # fmt: skip
        elif mean - mine < min(sd, spread):
            lines.append(f"{run.ensemble} is {mean - mine:.3f} above version 2's mean K-fold MAE "
                         f"({mean:.3f} against {mine:.3f}), inside the seed-to-seed sd ({sd:.3f}, "
                         f"{spread:.3f}): K-fold does not tell the two apart; version 2 is the "
                         "one with the lowest mean.")  # fmt: skip
    return [*lines, ""] if lines else []


CHOICE = [
    ("How the screening led to the table: the specs with the lowest validation MAE in the "
     "screening went on to three seeds, at the epoch count their curve selected (rounded to 5): "
     "weight EMA (272 → 270), dropout 0.1 (376 → 375), and cosine decay at 300 and, to see the "
     "length, 400 epochs. Left out: dropout with weight EMA, whose curve was still falling at its "
     "400th and last epoch, so it selected no epoch count; and the 128-128 networks with dropout "
     "0.2 (2.150), a larger and slower form of dropout 0.1 (2.129). An EMA curve starts far "
     "above the others because Keras' average starts at the initial weights (no bias "
     "correction)."),
    "",
]


def screening_lines(path: Path) -> list[str]:
    """The seed-1 screening of ``experiments/boston/v2_screening.py``, if it was run: where each
    spec's K-fold curve is lowest, with the test MAE there (recorded, not used)."""
    if not path.is_file():
        return []
    lines = [
        ("Screening (seed 1 only; `experiments/boston/v2_screening.py`, raw lines in "
         f"`{path.name}`): K-fold curves as long as each spec; the epoch count is where the "
         "smoothed mean validation curve is lowest, or the end of a cosine schedule (its points "
         "before the end are not runs of that length). The test columns were printed too, and "
         "are shown here: they were not used to choose."),
        "",
        ("| name | spec | K-fold selects epoch | validation MAE there | test MAE there | "
         "validation MAE at 80 / 150 / 300 / 400 | test MAE at 80 / 150 / 300 / 400 |"),
        "|---|---|---|---|---|---|---|",
    ]
    for line in path.read_text().splitlines():
        run = json.loads(line)
        folds = f" (k = {run['k']})" if run.get("k", 4) != 4 else ""
        lines.append(
            f"| {run['spec']} | {run['describe']} | {run['best_epoch']}{folds} | "
            f"{run['val_at_best']:.3f} | {run['test_at_best']:.3f} | {_at(run['val_at'])} | "
            f"{_at(run['test_at'])} |"
        )
    return [*lines, ""]


def _at(figures: dict[str, float], epochs: tuple[int, ...] = (80, 150, 300, 400)) -> str:
    return " / ".join(f"{figures[str(e)]:.3f}" if str(e) in figures else "–" for e in epochs)


def selection_lines(selection: dict[str, Any] | None) -> list[str]:
    if not selection:
        return []
    picks, first = selection["picks"], selection["first_member_picks"]
    return [
        (f"Epoch selection: K-fold curves of {selection['epochs']} epochs of version 2's spec, one "
         "per seed, first 10 epochs dropped, EMA 0.9, lowest point: the ensemble selects "
         f"{', '.join(map(str, picks))} (mean {np.mean(picks):.0f}), its first member alone "
         f"{', '.join(map(str, first))} (mean {np.mean(first):.0f})."),
        "",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
