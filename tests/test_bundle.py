"""The image carries the versions the rollouts serve (service/bundle.py), every file of each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from service.bundle import bundle


def _two_versions(models: Path) -> None:
    """Version 2 of imdb: a copy of version 1 (the bundle copies folders, it loads nothing)."""
    shutil.copytree(models / "imdb" / "1", models / "imdb" / "2")


def test_a_model_with_a_stable_rollout_is_bundled_with_that_version_only(models, tmp_path):
    _two_versions(models)
    (models / "imdb" / "rollout.json").write_text('{"stable": "1"}')
    copied = bundle(models, tmp_path / "bundle")
    assert "imdb/1" in copied and "imdb/2" not in copied
    assert json.loads((tmp_path / "bundle" / "imdb" / "rollout.json").read_text()) == {"stable": "1"}
    assert sorted(p.name for p in (tmp_path / "bundle" / "imdb" / "1").iterdir()) == sorted(
        p.name for p in (models / "imdb" / "1").iterdir()
    )


def test_canary_and_shadow_versions_are_bundled_beside_stable(models, tmp_path):
    _two_versions(models)
    (models / "imdb" / "rollout.json").write_text('{"stable": "1", "shadow": "2"}')
    assert {"imdb/1", "imdb/2"} <= set(bundle(models, tmp_path / "bundle"))


def test_a_model_without_a_rollout_is_bundled_with_every_version(models, tmp_path):
    _two_versions(models)
    copied = bundle(models, tmp_path / "bundle")
    assert {"imdb/1", "imdb/2", "reuters/1", "boston/1"} == set(copied)


def test_a_rollout_naming_a_missing_version_stops_the_build_with_the_reason(models, tmp_path):
    (models / "imdb" / "rollout.json").write_text('{"stable": "1", "canary": "3", "canary_percent": 5}')
    with pytest.raises(SystemExit, match=r"names versions \[3\]"):
        bundle(models, tmp_path / "bundle")
