"""``python -m training``: train the three models, evaluate saved ones, re-run the book's variants."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from service.artifacts import MODEL_NAMES, ArtifactError
from training.datasets import DATA_DIR_VARIABLE, DataError

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
    train.add_argument("name", choices=[*MODEL_NAMES, "all"])
    train.add_argument("--data-dir", help=data_help)
    train.add_argument("--out", type=Path, default=REPO_MODELS, help="artifacts folder (default: models/)")
    train.add_argument("--seed", type=int, default=None, help="random seed (default: per model)")
    train.add_argument("--version", default=None,
                       help="version folder to write, models/<name>/<version>/ (default: one past "
                            "the highest there; an existing version is replaced)")
    train.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs under DIR")

    evaluate = commands.add_parser("evaluate", help="recompute a saved model's test metrics")
    evaluate.add_argument("name", choices=MODEL_NAMES)
    evaluate.add_argument("--models", type=Path, default=REPO_MODELS, help="artifacts folder")
    evaluate.add_argument("--version", default=None, help="version to evaluate (default: highest)")
    evaluate.add_argument("--data-dir", help=data_help)

    experiments = commands.add_parser("experiments", help="re-run the book's variants, with plots")
    experiments.add_argument("name", choices=MODEL_NAMES)
    experiments.add_argument("--data-dir", help=data_help)
    experiments.add_argument("--out", type=Path, default=Path("experiments"), help="output folder")
    experiments.add_argument("--epochs-scale", type=float, default=1.0,
                             help="multiply every epoch count (e.g. 0.1 for a quick look)")
    experiments.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs under DIR")
    return root


DEFAULT_SEEDS = {"imdb": 1, "reuters": 1, "boston": 1}


def run_train(args: argparse.Namespace) -> None:
    from training.datasets import load_boston, load_imdb, load_reuters, load_word_index
    from training.datasets import reuters_label_names
    from training.export import write_artifact
    from training.recipes import train_boston, train_imdb, train_reuters

    names = MODEL_NAMES if args.name == "all" else (args.name,)
    for name in names:
        source = _source(args.data_dir)
        seed = args.seed if args.seed is not None else DEFAULT_SEEDS[name]
        started = time.perf_counter()
        print(f"== {name}: training (seed {seed})", flush=True)
        if name == "imdb":
            split = load_imdb(source)
            trained = train_imdb(split, seed, args.tensorboard)
            extra = {"word_index": load_word_index(source, "imdb"), "labels": ["negative", "positive"]}
        elif name == "reuters":
            split = load_reuters(source)
            trained = train_reuters(split, seed, args.tensorboard)
            extra = {"word_index": load_word_index(source, "reuters"), "labels": reuters_label_names()}
        else:
            split = load_boston(source)
            trained = train_boston(split, seed, args.tensorboard)
            extra = {}
        folder = write_artifact(args.out, name, trained, split, source, args.version, **extra)
        figures = ", ".join(f"{k} {v:.4f}" for k, v in trained.metrics.items())
        print(f"== {name}: {figures} ({time.perf_counter() - started:.0f} s) -> {folder}", flush=True)


def run_evaluate(args: argparse.Namespace) -> None:
    import json

    from service.artifacts import version_folder
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


def _source(data_dir: str | None):
    from training.datasets import DataSource

    return DataSource.from_environment(data_dir)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        {"train": run_train, "evaluate": run_evaluate, "experiments": run_experiments}[args.command](args)
    except (DataError, ArtifactError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
