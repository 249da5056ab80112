"""Schema fuzzing with a fuzzer we did not write: the schemathesis command line, every phase
(examples, coverage, fuzzing, stateful) and every check, against the real server, admin paths
included, with a model beside the book's so the per-model /NAME/predict paths are fuzzed too.

Why this replaced our own Hypothesis loop over ``operation.as_strategy()`` (issue 13, item 5),
which passed while ``st run URL --checks all`` failed in 22 s on the same server:

* ``as_strategy()`` generates positive (schema-valid) data only by default, and the loop called
  ``case.call_and_validate()``, whose default checks do not include ``positive_data_acceptance``:
  a schema-valid request answered 400 or 422 (an input without ``data``; ``{}`` on the generic
  ``/{name}/predict``, whose documented body was any object) was never a failure;
* it drew path parameters from the schema, so ``/v2/models/{name}/infer`` nearly always got a
  random name and a 404: no request reached a model. The CLI's coverage and stateful phases feed
  names learned from ``GET /models`` into later calls, which is how it reached ``imdb``;
* it ran no coverage phase (boundary values: a shape dimension past int64, the 500 in
  ``np.prod``) and no negative data, and it sent no admin token, so ``/admin/reload`` only ever
  answered 403.

The run is bounded by ``--max-examples`` (per operation and phase) and a seed, so it is the same
run every time; the whole test takes about a minute on 2 cores (most of it fitting the extra
model). ``tests/fuzz_hooks.py`` teaches the generator the two V2 rules JSON Schema cannot state
(elements = product of the shape; the model in the path takes the tensor in the body).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.bundle import bundle
from tests.serverproc import REPO, running_server

ST = Path(sys.executable).with_name("st")
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
EXAMPLES = 15
SEED = 1


def tiny_table_model(models: Path, tmp_path: Path) -> bool:
    """Fit a two-feature table regressor with the real ``python -m training fit`` (~20 s)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return False
    data = tmp_path / "tiny.csv"
    rows = [f"{a},{b},{2 * a - b + 0.5}" for a in range(10) for b in range(-4, 5)]
    data.write_text("a,b,y\n" + "\n".join(rows) + "\n")
    fitted = subprocess.run(
        [sys.executable, "-m", "training", "fit", "table", "--data", str(data), "--target", "y",
         "--name", "tiny", "--out", str(models)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr[-2000:]
    return True


@pytest.mark.skipif(not ST.exists(), reason="schemathesis is in the test extra")
def test_schemathesis_finds_nothing_in_any_phase(tmp_path, models_dir):
    # The versions the image ships (each rollout's stable one): one path template serves every
    # version, and its schema describes the default one's inputs, so a version-2 text model
    # (raw text only) would rightly refuse the version-1 `word_ids` the document offers.
    models = tmp_path / "models"
    bundle(models_dir, models)
    extra = tiny_table_model(models, tmp_path)
    env = {"MODELS_DIR": str(models), "ADMIN_TOKEN": ADMIN_TOKEN, "ACCESS_LOG": "false"}
    with running_server(tmp_path / "server.log", env=env) as server:
        document = httpx.get(f"{server.url}/openapi.json").json()
        assert ("/tiny/predict" in document["paths"]) == extra  # fuzzed with its own typed body
        run = subprocess.run(
            [str(ST), "run", f"{server.url}/openapi.json", "--checks", "all",
             "--phases", "examples,coverage,fuzzing,stateful",
             "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
             "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1",
             "--generation-database", "none", "--no-color", "--request-timeout", "30"],
            cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False,
            env={**os.environ, "PYTHONPATH": str(REPO), "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
                 "FUZZ_BASE_URL": server.url},
        )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    print(report)
