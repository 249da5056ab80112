"""``python -m training``: train the three book models, evaluate saved ones, re-run the book's
variants, or fit a model on your own CSV or JSON Lines file. Parsing and dispatch only."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from service.contract.artifacts import ArtifactError
from training.datasets import DATA_DIR_VARIABLE, DataError
from training.recipes import BOOK, RECIPES

REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, evaluate and experiment with the chapter-3 models on the real data.",
    )
    commands = root.add_subparsers(dest="command", required=True)
    data_help = (
        f"folder holding the Keras dataset files (imdb.npz, reuters.npz, boston_housing.npz, "
        f"*_word_index.json); default ${DATA_DIR_VARIABLE}, then ~/.keras/datasets, then download"
    )

    train = commands.add_parser("train", help="train models and write their artifacts")
    train.add_argument("name", choices=[*BOOK, "all"])
    train.add_argument("--data-dir", help=data_help)
    train.add_argument("--out", type=Path, default=REPO_MODELS, help="artifacts folder (default: models/)")
    train.add_argument("--seed", type=int, default=None, help="random seed (default: per model)")
    train.add_argument("--version", default=None,
                       help="version folder to write, models/<name>/<version>/ (default: one past "
                            "the highest there; an existing version is replaced)")
    train.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs under DIR")
    train.add_argument("--recipe", choices=list(RECIPES), default="book",
                       help="book: the book's chapter-3 recipes (default); improved: the "
                            "version-2 recipes of issue 16 (for the models that have one)")

    evaluate = commands.add_parser("evaluate", help="recompute a saved model's test metrics")
    evaluate.add_argument("name", choices=list(BOOK))
    evaluate.add_argument("--models", type=Path, default=REPO_MODELS, help="artifacts folder")
    evaluate.add_argument("--version", default=None, help="version to evaluate (default: highest)")
    evaluate.add_argument("--data-dir", help=data_help)

    experiments = commands.add_parser("experiments", help="re-run the book's variants, with plots")
    experiments.add_argument("name", choices=list(BOOK))
    experiments.add_argument("--data-dir", help=data_help)
    experiments.add_argument("--out", type=Path, default=Path("experiments"), help="output folder")
    experiments.add_argument("--epochs-scale", type=float, default=1.0,
                             help="multiply every epoch count (e.g. 0.1 for a quick look)")
    experiments.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs under DIR")

    fit = commands.add_parser(
        "fit", help="fit a text classifier or a table regressor on your own CSV or JSON Lines file"
    )
    kinds = fit.add_subparsers(dest="kind", required=True)
    text = kinds.add_parser("text", help="a classifier of raw text: one text and one label column")
    text.add_argument("--text-column", required=True, metavar="COL", help="the column of raw texts")
    text.add_argument("--label-column", required=True, metavar="COL",
                      help="the column of labels (two or more distinct values)")  # fmt: skip
    table = kinds.add_parser("table", help="a regressor of one numeric column from all the others")
    table.add_argument("--target", required=True, metavar="COL", help="the column to predict")
    for kind in (text, table):
        kind.add_argument("--data", required=True, type=Path, metavar="FILE",
                          help="the training rows: .csv (with a header) or .jsonl / .ndjson")  # fmt: skip
        kind.add_argument("--name", required=True, help="the model's name: its folder and its URL")
        kind.add_argument("--out", required=True, type=Path, metavar="MODELS_DIR",
                          help="models folder; writes MODELS_DIR/NAME/<next version>/")  # fmt: skip
        kind.add_argument("--test", type=Path, metavar="FILE",
                          help="rows to compute the test figures on (default: hold out a seeded "
                               "20%% of --data, not used for training)")  # fmt: skip
        kind.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    export_onnx = commands.add_parser(
        "export-onnx", help="(re-)export version folders' model.onnx from their model.keras"
    )
    export_onnx.add_argument("folders", nargs="+", type=Path, metavar="FOLDER",
                             help="a version folder, e.g. models/imdb/1; its card's onnx section "
                                  "and files map are rewritten, nothing else")  # fmt: skip
    export_onnx.add_argument("--data-dir", help="for a card without reference rows: the book "
                             "dataset to check the export on; " + data_help)  # fmt: skip
    return root


def run_export_onnx(args: argparse.Namespace) -> None:
    from training.onnx import reexport

    for folder in args.folders:
        section = reexport(folder, data_dir=args.data_dir)
        check = section["check"]
        print(f"== {folder}: {section['file']} ({section['exporter']}, opset {section['opset']}); "
              f"ONNX Runtime vs Keras on {check['rows']} rows: max |difference| "
              f"{check['max_abs_difference']:.3g}", flush=True)  # fmt: skip


def run_train(args: argparse.Namespace) -> None:
    from training.export import write_artifact

    table = RECIPES[args.recipe]
    names = list(table) if args.name == "all" else [args.name]
    if missing := [name for name in names if name not in table]:
        raise DataError(f"no {args.recipe} recipe for {', '.join(missing)}: "
                        f"there is one for {', '.join(table)}")  # fmt: skip
    for name in names:
        recipe = table[name]
        source = _source(args.data_dir)
        seed = args.seed if args.seed is not None else recipe.seed
        started = time.perf_counter()
        print(f"== {name}: training the {args.recipe} recipe (seed {seed})", flush=True)
        split = recipe.load(source)
        trained = recipe.train(split, seed, args.tensorboard)
        folder = write_artifact(args.out, name, trained, split, source, args.version)
        figures = ", ".join(f"{k} {v:.4f}" for k, v in trained.metrics.items())
        print(f"== {name}: {figures} ({time.perf_counter() - started:.0f} s) -> {folder}", flush=True)


def run_evaluate(args: argparse.Namespace) -> None:
    import json

    from service.contract.artifacts import version_folder
    from training.evaluate import evaluate

    folder = version_folder(args.models / args.name, args.version)
    recomputed = evaluate(folder, _source(args.data_dir))
    recorded = json.loads((folder / "metadata.json").read_text())["metrics"]
    print(f"{'metric':<22}{'recorded':>12}{'recomputed':>12}")
    for key, value in recomputed.items():
        print(f"{key:<22}{recorded.get(key, float('nan')):>12.4f}{value:>12.4f}")


def run_experiments(args: argparse.Namespace) -> None:
    from training.experiments import run

    report = run(args.name, _source(args.data_dir), args.out, args.epochs_scale, args.tensorboard)
    print(f"wrote {report}")


def run_fit(args: argparse.Namespace) -> None:
    from training.fit import check_table, check_text, fit

    started = time.perf_counter()
    if args.kind == "text":
        plan = check_text(args.data, args.text_column, args.label_column, args.name, args.out,
                          args.test, args.seed)  # fmt: skip
    else:
        plan = check_table(args.data, args.target, args.name, args.out, args.test, args.seed)
    print(f"== {args.name}: {plan.describe()}", flush=True)
    fitted = fit(plan)
    print(f"== {args.name}: {fitted.summary()} ({time.perf_counter() - started:.0f} s) "
          f"-> {fitted.folder}", flush=True)  # fmt: skip


def _source(data_dir: str | None):
    from training.datasets import DataSource

    return DataSource.from_environment(data_dir)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        commands = {"train": run_train, "evaluate": run_evaluate, "experiments": run_experiments,
                    "fit": run_fit, "export-onnx": run_export_onnx}  # fmt: skip
        commands[args.command](args)
    except (DataError, ArtifactError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
