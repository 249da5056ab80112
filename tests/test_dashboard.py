"""The Grafana dashboard (``deploy/grafana-dashboard.json``) asks only for metrics the service
really exports: every panel's PromQL is parsed for metric names, and each one must be a series
in the ``/metrics`` of a real two-worker service that has answered predictions (REST and V2,
errors too), reloaded, and shadowed a version through a rollout. Every signal the service
exports is on the dashboard, too."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serverproc import REPO, running_server

DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"
TOKEN = "0123456789abcdef0123"
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset",
}  # fmt: skip
SIGNAL_PREFIXES = ("model_input_", "model_predictions_by_label", "model_predicted_value", "shadow_")


def panels(dashboard: dict) -> list[dict]:
    """Every panel, rows' nested ones included, rows themselves left out."""
    found = []
    for panel in dashboard["panels"]:
        found += panel.get("panels", [])
        if panel.get("type") != "row":
            found.append(panel)
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers,
    ranges, grouping clauses, numbers and function calls are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\b\d+(?:\.\d+)?\b", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if re.match(r"\s*\(", expr[match.end() :]) or match.group() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        names.add(match.group())
    return names


def test_metric_names_are_read_out_of_promql():
    expr = (
        'sum by (model, le) (rate(model_predicted_value_bucket{model=~"$model", le="0.5"}[5m])) '
        "/ on (model) group_left sum by (model) (rate(predictions_total[$__rate_interval])) "
        "+ histogram_quantile(0.9, x_bucket) - 1 - max(model_load_failures)"
    )
    assert metric_names(expr) == {"model_predicted_value_bucket", "predictions_total", "x_bucket",
                                  "model_load_failures"}  # fmt: skip


def test_the_dashboard_is_a_grafana_dashboard_on_a_prometheus_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]


def add_version_2(models: Path, name: str) -> None:
    """Version 2: a copy of version 1 with its card saying so."""
    shutil.copytree(models / name / "1", models / name / "2")
    card_path = models / name / "2" / "metadata.json"
    card = json.loads(card_path.read_text())
    card["version"] = "2"
    card_path.write_text(json.dumps(card))
    (models / name / "rollout.json").write_text(json.dumps({"stable": "1", "shadow": "2"}))


def exported_series(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_dashboard_query_names_a_metric_the_service_exports(tmp_path, models):
    pytest.importorskip("service.serving.rollout", reason="the rollout (shadow) part is not there yet")
    for name in ("imdb", "boston"):
        add_version_2(models, name)
    env = {"WORKERS": "2", "MODELS_DIR": str(models), "ACCESS_LOG": "false", "ADMIN_TOKEN": TOKEN}
    boston_row = [0.1, 10.0, 5.0, 0.0, 0.5, 6.0, 60.0, 4.0, 5.0, 300.0, 18.0, 390.0, 12.0]
    with (
        running_server(tmp_path / "server.log", env=env) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        assert (
            client.post("/imdb/predict", json={"texts": ["a fine film", "dull"]}).status_code == 200
        )
        assert (
            client.post("/boston/predict", json={"features": [999.0, *boston_row[1:]]}).status_code
            == 200
        )
        assert client.post("/reuters/predict", json={"text": "oil prices rose"}).status_code == 200
        assert client.post("/imdb/predict", json={"texts": [1]}).status_code == 422
        tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["good"]}
        assert client.post("/v2/models/imdb/infer", json={"inputs": [tensor]}).status_code == 200
        reload = client.post(
            "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )
        assert reload.status_code == 200, reload.text
        deadline = time.monotonic() + 10  # the shadow runs after the response
        while True:
            exported = exported_series(client.get("/metrics").text)
            if {"shadow_predictions_total", "shadow_absolute_difference_bucket"} <= exported:
                break
            assert time.monotonic() < deadline, "no shadow metrics after a shadowed request"
            time.sleep(0.1)
    dashboard = json.loads(DASHBOARD.read_text())
    queried: set[str] = set()
    for panel in panels(dashboard):
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: no metric in {target['expr']!r}"
            assert names <= exported, f"{panel['title']}: not exported: {sorted(names - exported)}"
            queried |= names
    signals = {
        re.sub(r"_(bucket|sum|count)$", "", n) for n in exported if n.startswith(SIGNAL_PREFIXES)
    }
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for n in queried}
    assert signals <= shown, f"signals missing from the dashboard: {sorted(signals - shown)}"
    assert {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "predictions_total",
    } <= queried
