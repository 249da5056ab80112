"""``python experiments/v2_text.py NAME``: version 1's recipe, the version-2 variants tried, and
version 2, each over several seeds, as one Markdown table (issue 16; written up in ``v2-text.md``
beside this script).

Every figure is measured on the full raw test set the API answers on: version 1 on Keras'
word-id sequences, which the raw texts reproduce exactly (``tests/test_parity.py``), version 2
on raw text through ``service.contract.tfidf``. Validation accuracy is on the held-out training rows
each recipe early-stops on (version 1's IMDB recipe holds none out: "—").

Variants are named ``key=value`` changes of the version-2 recipe
(``training.tfidf_networks.BagRecipe``) so a row of the table is a command line::

    python experiments/v2_text.py imdb --seeds 1 2 3 --variant width=16 --variant hidden=64

A research script, not part of the installed ``training`` package: it lives beside its write-up
and imports ``training`` (installed, or ``PYTHONPATH=.`` from the repository root).
"""

from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path

import numpy as np

from training.datasets import DataSource, load_imdb, load_reuters
from training.recipes import train_imdb, train_reuters
from training.texts import load_imdb_texts, load_reuters_texts
from training.tfidf_networks import (
    IMDB_BAG,
    REUTERS_BAG,
    BagRecipe,
    fit_bag,
    vectorize,
    with_changes,
)


def version1(name: str, source: DataSource, seed: int) -> tuple[float | None, float]:
    """The book recipe (version 1): validation accuracy where it holds rows out, test accuracy."""
    if name == "imdb":
        trained = train_imdb(load_imdb(source), seed, verbose=0)
        return None, float(trained.metrics["test_accuracy"])
    trained = train_reuters(load_reuters(source), seed, verbose=0)
    return trained.history["val_accuracy"][-1], float(trained.metrics["test_accuracy"])


def parse_changes(text: str) -> dict[str, object]:
    """``width=16,hidden=(64,)`` → ``{"width": 16, "hidden": (64,)}``."""
    changes: dict[str, object] = {}
    for part in filter(None, text.split(";")):
        key, value = part.split("=", 1)
        parsed = ast.literal_eval(value)
        changes[key.strip()] = tuple(parsed) if isinstance(parsed, list) else parsed
    return changes


def mean_sd(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}"


def row(
    label: str, recipe: str, val: list[float], test: list[float], seconds: float, seeds: int
) -> str:
    return f"| {label} | {recipe} | {mean_sd(val)} | {mean_sd(test)} | {seeds} | {seconds:.0f} s |"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    source = DataSource.from_environment(args.data_dir)
    binary = args.name == "imdb"
    split = load_imdb_texts(source) if binary else load_reuters_texts(source)
    base = IMDB_BAG if binary else REUTERS_BAG
    lines = ["| variant | recipe | validation accuracy | test accuracy (raw texts) | seeds | time per run |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    if args.version1 or args.only_version1:
        started, results = time.perf_counter(), [version1(args.name, source, s) for s in args.seeds]
        lines.append(row("version 1 (book)", "multi-hot 10k, Dense stack (training.recipes)",
                         [v for v, _ in results if v is not None], [t for _, t in results],
                         (time.perf_counter() - started) / len(args.seeds), len(args.seeds)))  # fmt: skip
        print(lines[-1], flush=True)
    for text in [] if args.only_version1 else args.variant or [""]:
        recipe: BagRecipe = with_changes(base, **parse_changes(text))
        started, val, test = time.perf_counter(), [], []
        vectorized = vectorize(split, recipe)
        for seed in args.seeds:
            fitted = fit_bag(split, recipe, seed, binary, verbose=0, vectorized=vectorized)
            val.append(fitted.metrics["val_accuracy"])
            test.append(fitted.metrics["test_accuracy"])
            print(f"  {text or 'version 2'} seed {seed}: val {val[-1]:.4f} test {test[-1]:.4f} "
                  f"(best epoch {fitted.best_epoch})", flush=True)  # fmt: skip
        label = f"`{text}`" if text else "version 2 (improved)"
        lines.append(row(label, recipe.describe(), val, test,
                         (time.perf_counter() - started) / len(args.seeds), len(args.seeds)))  # fmt: skip
        print(lines[-1], flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a", encoding="utf-8") as report:
            report.write("\n".join(lines[2:]) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python experiments/v2_text.py",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("name", choices=["imdb", "reuters"])
    parser.add_argument(
        "--data-dir", help="folder of the Keras dataset files (raw texts beside it)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--variant", action="append",
                        help="changes to the version-2 recipe, 'key=value;key=value' (repeatable; "
                             "none: version 2 itself)")  # fmt: skip
    parser.add_argument("--version1", action="store_true", help="also run version 1's recipe")
    parser.add_argument("--only-version1", action="store_true", help="run version 1's recipe only")
    parser.add_argument("--out", type=Path, help="append the table rows to this file")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
