"""The on-disk model artifact: one folder per model version, written by ``training``, read by ``service``.

Versions follow TF Serving's and Triton's model repositories: ``models/<name>/<version>/`` with
``<version>`` a positive integer, the highest one served by default. A model folder that is itself
an artifact (``models/imdb/metadata.json``, the layout before versions) is version 1. Any other
entry (a ``.2.partial`` staging folder of a training run, a ``README``) is ignored.

A version folder such as ``models/imdb/1/`` holds:

* ``model.keras``: the Keras 3 native file; loads with ``safe_mode=True`` (no Lambda layers);
* ``word_index.json`` (text models): the dataset's whole word index, word → frequency rank.
  It cannot be trimmed to the 9,997 words with their own id: a word of the index past the
  ``num_words`` cut still sets the OOV position of the multi-hot, while a word missing from the
  index is dropped, and the served vector must tell the two apart;
* ``metadata.json``: the model card (name, version, task, metrics, recipe, dataset hashes,
  history, labels or features, preprocessing) and, under ``"files"``, the sha256 of every other
  file in the folder, so a loader refuses a tampered or truncated artifact before reading it.

This module knows the format and nothing of Keras, so both sides import it cheaply.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

MODEL_FILE = "model.keras"
WORD_INDEX_FILE = "word_index.json"
METADATA_FILE = "metadata.json"

MODEL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
"""A model folder's name, which is also its URL path segment (``/NAME/predict``)."""

RESERVED_NAMES = frozenset({"admin", "docs", "healthz", "metrics", "models", "readyz", "redoc", "v2"})
"""Names a model cannot take: its ``/NAME/...`` paths would collide with the service's own."""


class ArtifactError(Exception):
    """An artifact folder that must not be served, with the reason in words."""


def is_version(entry: str) -> bool:
    """A version folder's name: a positive integer without leading zeros (``1``, ``12``)."""
    return entry.isascii() and entry.isdigit() and entry[0] != "0"


def model_folders(models_dir: Path) -> list[str]:
    """The model folders in ``models_dir`` by name, sorted: every folder named like a model.
    Anything else (``.cache``, ``README.md``, ``My Models``) is not a model and is skipped."""
    return sorted(
        entry.name for entry in models_dir.iterdir()
        if MODEL_NAME.fullmatch(entry.name) and entry.is_dir()
    )  # fmt: skip


def version_folders(model_folder: Path) -> dict[int, Path]:
    """Every version folder of one model, lowest version first; ``ArtifactError`` if ambiguous."""
    versions = {
        int(entry.name): entry
        for entry in model_folder.iterdir()
        if is_version(entry.name) and entry.is_dir()
    }
    if (model_folder / METADATA_FILE).is_file():
        if 1 in versions:
            raise ArtifactError(
                f"{model_folder} holds an artifact both in itself and in {versions[1]}: "
                f"both would be version 1; move the files of {model_folder} into a version folder"
            )
        versions[1] = model_folder
    return dict(sorted(versions.items()))


def version_folder(model_folder: Path, version: str | None = None) -> Path:
    """The folder of one version of a model (default: the highest); ``ArtifactError`` if none."""
    try:
        folders = version_folders(model_folder)
    except OSError as error:
        raise ArtifactError(f"{model_folder} cannot be read: {error}") from None
    if version is None and folders:
        return folders[max(folders)]
    if version is not None and is_version(version) and int(version) in folders:
        return folders[int(version)]
    found = ", ".join(map(str, folders)) or "none"
    raise ArtifactError(f"{model_folder} has no version {version or ''} folder (versions: {found})")


def artifact_fingerprint(folder: Path) -> str:
    """sha256 of ``metadata.json``, which lists the sha256 of every other file: equal fingerprints,
    equal artifacts. A reload reuses a loaded version whose fingerprint has not changed."""
    return sha256_file(folder / METADATA_FILE)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks so large files do not sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_metadata(folder: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Record the sha256 of every file in ``folder`` and write ``metadata.json`` beside them."""
    files = {
        path.name: sha256_file(path)
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != METADATA_FILE
    }
    metadata = {**metadata, "files": files}
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    return metadata


def read_verified_metadata(folder: Path) -> dict[str, Any]:
    """Read ``metadata.json`` and check every listed file's sha256; raise ``ArtifactError`` if not."""
    metadata_path = folder / METADATA_FILE
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{metadata_path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{metadata_path} cannot be read: {error}") from None
    files = metadata.get("files") if isinstance(metadata, dict) else None
    if not isinstance(files, dict) or MODEL_FILE not in files:
        raise ArtifactError(f"{metadata_path} lists no file hashes (key 'files' with {MODEL_FILE})")
    for name, expected in files.items():
        path = folder / name
        if Path(name).name != name:
            raise ArtifactError(f"{metadata_path} names a file outside its folder: {name!r}")
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            raise ArtifactError(f"{path} is missing") from None
        except OSError as error:
            raise ArtifactError(f"{path} cannot be read: {error}") from None
        if actual != expected:
            raise ArtifactError(
                f"{path} does not match its sha256 in {METADATA_FILE} "
                f"(expected {expected[:12]}…, found {actual[:12]}…): refusing a changed artifact"
            )
    return metadata


def read_word_index(folder: Path) -> dict[str, int]:
    """The text models' word index (word → rank), as Keras' ``get_word_index()`` returns it."""
    return json.loads((folder / WORD_INDEX_FILE).read_text(encoding="utf-8"))
