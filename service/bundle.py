"""``python -m service.bundle SOURCE TARGET``: copy the model versions a models folder serves by
its rollouts, and nothing else, into TARGET (the image's ``/app/models``).

Why: the repository keeps every version (version 1, the book's, and the larger version 2 that
is rolled out beside it), but an image should carry what it serves. A model with a
``rollout.json`` is bundled with the versions the file names (stable, canary, shadow) and the
file itself; a model without one, with all its versions (the highest serves). Every file of a
bundled version is copied, so the registry checks it exactly as in the repository. A deployment
that rolls out another version mounts a models folder (compose does: ``./models``), as it would
to publish any new version.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pydantic import ValidationError

from service.contract.artifacts import model_folders, version_folders
from service.serving.rollout import ROLLOUT_FILE, RolloutFile


def bundled_versions(model_folder: Path) -> dict[int, Path]:
    """The version folders of one model that its rollout serves (all of them without one)."""
    folders = version_folders(model_folder)
    rollout = model_folder / ROLLOUT_FILE
    if not rollout.is_file():
        return folders
    try:
        file = RolloutFile.model_validate_json(rollout.read_bytes())
    except ValidationError as error:
        raise SystemExit(f"{rollout} is not a valid rollout: {error}") from None
    named = {int(v) for v in (file.stable, file.canary, file.shadow) if v is not None}
    missing = sorted(named - set(folders))
    if missing:
        raise SystemExit(f"{rollout} names versions {missing} that {model_folder} does not hold")
    return {version: folder for version, folder in folders.items() if version in named}


def bundle(source: Path, target: Path) -> list[str]:
    """Copy each model's served versions (and its rollout file) from ``source`` to ``target``;
    the ``name/version`` keys copied."""
    copied: list[str] = []
    for name in model_folders(source):
        for version, folder in bundled_versions(source / name).items():
            shutil.copytree(folder, target / name / str(version))
            copied.append(f"{name}/{version}")
        if (source / name / ROLLOUT_FILE).is_file():
            shutil.copy2(source / name / ROLLOUT_FILE, target / name / ROLLOUT_FILE)
    return copied


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m service.bundle SOURCE_MODELS_DIR TARGET_DIR")
    copied = bundle(Path(args[0]), Path(args[1]))
    print(f"bundled {', '.join(copied) or 'nothing'} into {args[1]}")


if __name__ == "__main__":
    main()
