"""The on-disk model artifact: one folder per model, written by ``training`` and read by ``service``.

A folder such as ``models/imdb/`` holds:

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
from pathlib import Path
from typing import Any

MODEL_FILE = "model.keras"
WORD_INDEX_FILE = "word_index.json"
METADATA_FILE = "metadata.json"

MODEL_NAMES = ("imdb", "reuters", "boston")


class ArtifactError(Exception):
    """An artifact folder that must not be served, with the reason in words."""


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
