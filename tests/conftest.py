"""Shared fixtures: where the real data and the committed models are.

Tests that need the real datasets look in ``$KERAS_SERVING_DATA`` or ``../shared/data`` (the
project's offline copies) and skip, saying so, where neither exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("MODELS_DIR", REPO / "models"))


def _shared_data() -> Path:
    configured = os.environ.get("KERAS_SERVING_DATA")
    return Path(configured) if configured else REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data()
KERAS_DATA = SHARED_DATA / "keras"

requires_data = pytest.mark.skipif(
    not (KERAS_DATA / "imdb.npz").is_file(),
    reason=f"the real datasets are not at {KERAS_DATA} (set KERAS_SERVING_DATA to their folder)",
)


@pytest.fixture(scope="session")
def keras_data() -> Path:
    """The folder of Keras dataset files (imdb.npz, reuters.npz, boston_housing.npz, ...)."""
    if not (KERAS_DATA / "imdb.npz").is_file():
        pytest.skip(f"the real datasets are not at {KERAS_DATA} (set KERAS_SERVING_DATA)")
    return KERAS_DATA


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS_DIR


@pytest.fixture(scope="session")
def artifacts(models_dir: Path) -> dict[str, Path]:
    """Each model's folder of the version the service serves by default: its rollout's stable
    version (``models/<name>/rollout.json``), else the highest one."""
    import json

    from service.api.book import BOOK_MODELS
    from service.contract.artifacts import version_folders

    def default(name: str) -> Path:
        folders = version_folders(models_dir / name)
        rollout = models_dir / name / "rollout.json"
        if rollout.is_file():
            return folders[int(json.loads(rollout.read_text())["stable"])]
        return max(folders.items())[1]

    return {name: default(name) for name in BOOK_MODELS}


@pytest.fixture
def models(tmp_path: Path, artifacts: dict[str, Path]) -> Path:
    """A writable copy of the models folder: each book model's default version, as version 1
    (tests add versions), with no rollout file."""
    import shutil

    folder = tmp_path / "models"
    for name, artifact in artifacts.items():
        shutil.copytree(artifact, folder / name / "1")
    return folder


def _pin_keras_backend() -> None:
    """One Keras backend for the whole test process, whatever order the tests run in.

    Training tests need TensorFlow; the served path is tested in its own server processes,
    which always pick the numpy backend (``service.engine.fallback``). Importing Keras here, first,
    keeps an in-process app from switching the backend under a later training test.
    """
    import importlib.util

    os.environ.setdefault(
        "KERAS_BACKEND", "tensorflow" if importlib.util.find_spec("tensorflow") else "numpy"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # noqa: F401


_pin_keras_backend()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The real service on a free loopback port, serving the committed models."""
    from tests.serverproc import running_server

    with running_server(tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running


@pytest.fixture(scope="session")
def api(server):
    """An HTTP client for the real server."""
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
