"""The version folder of a model that ours serves by default, for the peers to load the same one:
the stable version of the model's ``rollout.json``, else the highest (``service.serving.rollout``).
The benchmark's models folder holds IMDB's version 2 beside its stable version 1."""

from __future__ import annotations

import json
from pathlib import Path

from service.contract.artifacts import version_folder


def served_folder(model_folder: Path) -> Path:
    rollout = model_folder / "rollout.json"
    stable = json.loads(rollout.read_text())["stable"] if rollout.is_file() else None
    return version_folder(model_folder, stable)
