"""The cluster manifests in deploy/ are valid, and say what the service needs.

No cluster is needed: the plain manifests are checked with kubernetes-validate (the
Kubernetes OpenAPI schemas it ships, strict: an unknown field fails), the InferenceService
with jsonschema against the KServe CRD schema vendored in deploy/schemas/. The other tests
hold the manifests to the application and the measurements: the probes ask for paths the app
serves on the port it listens on, memory fits the peak RSS of bench/RESULTS.md, the grace
period covers the lame duck and the drain, the Service and the HPA find the Deployment.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
KSERVE_SCHEMA = DEPLOY / "schemas" / "inferenceservice-v1beta1.json"

# The newest Kubernetes release kubernetes-validate 1.37 ships schemas for (also its default).
KUBERNETES_VERSION = "1.37.0"
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"

PLAIN_MANIFESTS = ("deployment.yaml", "service.yaml", "hpa.yaml")
# The two pod specs we ship: the Deployment's template and the KServe predictor.
WORKLOADS = ("deployment.yaml", "inferenceservice.yaml")

IMAGE_UID = 10001  # the Dockerfile's `app` user and group
# terminationGracePeriodSeconds = SHUTDOWN_DELAY + GRACEFUL_TIMEOUT + this, for the exit itself.
EXIT_MARGIN_S = 5
# During a hot reload the old and the new model versions are both in memory for a moment.
VERSIONS_IN_MEMORY_DURING_RELOAD = 2

BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
DECIMAL_SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


# ---- reading the manifests ----


def load(name: str) -> dict[str, Any]:
    """One manifest of deploy/ (each file holds one document)."""
    return yaml.safe_load((DEPLOY / name).read_text())


def pod_spec(name: str) -> dict[str, Any]:
    """The pod spec of a workload: a Deployment's template, or a KServe predictor (a PodSpec)."""
    manifest = load(name)
    if manifest["kind"] == "Deployment":
        return manifest["spec"]["template"]["spec"]
    return manifest["spec"]["predictor"]


def container(name: str) -> dict[str, Any]:
    """The serving container (each workload has exactly one)."""
    (only,) = pod_spec(name)["containers"]
    return only


def env(name: str) -> dict[str, dict[str, Any]]:
    """The container's environment, by variable name."""
    return {variable["name"]: variable for variable in container(name)["env"]}


def probes(name: str) -> dict[str, dict[str, Any]]:
    return {
        kind: container(name)[kind]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if kind in container(name)
    }


def port_number(name: str, port: int | str) -> int:
    """A port as a number; a name is looked up among the container's ports."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container(name)["ports"] if "name" in p}
    assert port in named, f"{name}: no container port named {port!r} (ports: {named})"
    return named[port]


def image_command() -> list[str]:
    """The runtime image's CMD (the last CMD of the Dockerfile), used when a manifest sets none."""
    commands = re.findall(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    return json.loads(commands[-1])


def listening_port(name: str) -> int:
    """The port the process listens on: its --port flag, which wins over the PORT variable."""
    spec = container(name)
    argv = spec.get("command", []) + spec.get("args", []) if "command" in spec else image_command()
    assert "--port" in argv, f"{name}: no --port in {argv}"
    return int(argv[argv.index("--port") + 1])


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ("384Mi", "500m", "1") as a number of bytes or cores."""
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", str(value))
    assert match, f"not a quantity this test understands: {value!r}"
    number, suffix = float(match[1]), match[2] or ""
    if suffix == "m":
        return number / 1000
    return number * BINARY_SUFFIXES.get(suffix, DECIMAL_SUFFIXES.get(suffix, 1))


def peak_rss_bytes() -> float:
    """Our server's peak RSS after the load, from the memory table of bench/RESULTS.md."""
    lines = (REPO / "bench" / "RESULTS.md").read_text().splitlines()
    header = next(line for line in lines if "peak RSS after the load" in line)
    column = [cell.strip() for cell in header.split("|")].index("peak RSS after the load")
    ours = next(
        line
        for line in lines[lines.index(header) :]
        if line.startswith("| ours (`python -m service`)")
    )
    cell = ours.split("|")[column].strip()
    match = re.fullmatch(r"([0-9,.]+) MB", cell)  # MB = 10**6 bytes in RESULTS.md
    assert match, f"bench/RESULTS.md: unexpected peak RSS cell {cell!r}"
    return float(match[1].replace(",", "")) * 10**6


@pytest.fixture(scope="module")
def app() -> TestClient:
    """The application with no model loaded: create_app builds the routes, lifespan loads.

    Used without `with`, the client never runs the lifespan, so this is the app as a probe
    sees it while a pod starts. (Asking the app rather than listing ``app.routes``: FastAPI
    0.165 keeps included routers as private ``_IncludedRouter`` entries there.)
    """
    return TestClient(create_app())


# ---- the KServe CRD schema ----


def strict(schema: Any) -> Any:
    """The schema with additionalProperties: false wherever the CRD lists properties.

    That is what `kubectl apply` (server-side field validation Strict) does with a structural
    CRD: an unknown field is an error, not silently pruned.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def kserve_errors(manifest: dict[str, Any]) -> list[str]:
    """Every way the manifest breaks the vendored (strict) InferenceService schema."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    validator = jsonschema.Draft7Validator(strict(json.loads(KSERVE_SCHEMA.read_text())))
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]


def with_field(manifest: dict[str, Any], path: tuple[str | int, ...], key: str) -> dict[str, Any]:
    """A copy of the manifest with one more field at `path`."""
    changed = copy.deepcopy(manifest)
    node = changed
    for step in path:
        node = node[step]
    node[key] = "x"
    return changed


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    if not KUBERNETES_VALIDATE.exists():
        pytest.skip(f"kubernetes-validate is not installed next to {sys.executable}")
    return subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the tests read the return code and show the output
    )


# ---- validity ----


@pytest.mark.parametrize("name", PLAIN_MANIFESTS)
def test_manifest_is_valid_kubernetes_with_no_unknown_field(name: str) -> None:
    result = kubernetes_validate(DEPLOY / name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_rejects_a_misspelt_field(tmp_path: Path) -> None:
    """The check above can fail: a typo'd probe is an error, not an ignored extra field."""
    misspelt = tmp_path / "deployment.yaml"
    text = (DEPLOY / "deployment.yaml").read_text()
    misspelt.write_text(text.replace("readinessProbe:", "readinesProbe:"))
    result = kubernetes_validate(misspelt)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "readinesProbe" in result.stdout + result.stderr


def test_inferenceservice_matches_the_kserve_crd_schema() -> None:
    manifest = load("inferenceservice.yaml")
    assert (manifest["apiVersion"], manifest["kind"]) == (
        "serving.kserve.io/v1beta1",
        "InferenceService",
    )
    errors = kserve_errors(manifest)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (("spec", "predictor", "containers", 0), "readinesProbe"),
        # A real KServe field, but only on framework specs (predictor.model, .sklearn, ...):
        # a custom container declares its protocol with the PROTOCOL variable instead.
        (("spec", "predictor"), "protocolVersion"),
        (("spec", "predictor", "volumes", 0, "emptyDir"), "sizelimit"),
    ],
    ids=["misspelt-probe", "protocolVersion-on-a-custom-predictor", "misspelt-size-limit"],
)
def test_kserve_schema_rejects_a_field_the_crd_does_not_define(
    path: tuple[str | int, ...], key: str
) -> None:
    errors = kserve_errors(with_field(load("inferenceservice.yaml"), path, key))
    assert any(key in error for error in errors), errors


def test_inferenceservice_declares_the_v2_protocol_to_kserve() -> None:
    """KServe reads a custom predictor's protocol from PROTOCOL on its kserve-container."""
    assert container("inferenceservice.yaml")["name"] == "kserve-container"
    assert env("inferenceservice.yaml")["PROTOCOL"]["value"] == "v2"


def test_inferenceservice_listens_on_kserves_default_port() -> None:
    assert listening_port("inferenceservice.yaml") == 8080


def test_kustomization_lists_the_plain_manifests_but_not_the_inferenceservice() -> None:
    """`kubectl apply -k deploy/` must work on a cluster without the KServe CRDs."""
    assert tuple(load("kustomization.yaml")["resources"]) == PLAIN_MANIFESTS


# ---- consistency with the application ----


@pytest.mark.parametrize("name", WORKLOADS)
def test_probes_ask_for_paths_the_app_serves(name: str) -> None:
    paths = {kind: probe["httpGet"]["path"] for kind, probe in probes(name).items()}
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }


@pytest.mark.parametrize("name", WORKLOADS)
def test_liveness_passes_and_readiness_fails_before_the_models_load(
    name: str, app: TestClient
) -> None:
    """A pod still loading is alive (not restarted) but not ready (gets no traffic)."""
    kinds = probes(name)
    for kind in ("startupProbe", "livenessProbe"):
        assert app.get(kinds[kind]["httpGet"]["path"]).status_code == 200, kind
    assert app.get(kinds["readinessProbe"]["httpGet"]["path"]).status_code == 503


@pytest.mark.parametrize("name", WORKLOADS)
def test_probes_container_port_and_port_setting_agree_with_the_listening_port(name: str) -> None:
    listening = listening_port(name)
    (declared,) = (p["containerPort"] for p in container(name)["ports"])
    probed = {port_number(name, p["httpGet"]["port"]) for p in probes(name).values()}
    assert declared == listening, "containerPort"
    assert int(env(name)["PORT"]["value"]) == listening, "PORT"
    assert probed == {listening}, "probe ports"


@pytest.mark.parametrize("name", WORKLOADS)
def test_prometheus_scrapes_the_metrics_path_on_the_listening_port(
    name: str, app: TestClient
) -> None:
    manifest = load(name)
    annotations = (
        manifest["spec"]["template"]["metadata"]["annotations"]
        if manifest["kind"] == "Deployment"
        else manifest["spec"]["predictor"]["annotations"]
    )
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == listening_port(name)
    scrape = app.get(annotations["prometheus.io/path"])
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("name", WORKLOADS)
def test_every_setting_is_set_explicitly(name: str) -> None:
    """A setting added to the service without a line here would silently take its default."""
    settings = {field.upper() for field in Settings.model_fields}
    assert settings <= set(env(name)), f"missing: {sorted(settings - set(env(name)))}"


@pytest.mark.parametrize("name", WORKLOADS)
def test_settings_keep_their_defaults_but_for_the_cluster_ones(name: str) -> None:
    cluster_values = {
        "HOST": "0.0.0.0",  # listen beyond the pod's loopback (the image's CMD does the same)
        "PORT": str(listening_port(name)),
        "MODELS_DIR": "/app/models",  # where the image bakes the models
        "REQUIRE_MODELS": "all",  # a pod missing a model must not become ready
        "SHUTDOWN_DELAY": "5",  # the lame duck: the endpoint leaves every kube-proxy first
        "MODEL_POLL_SECONDS": "30",  # versions copied onto a mounted volume are served
    }
    defaults = Settings.model_construct()
    for variable, spec in env(name).items():
        if variable in cluster_values:
            assert spec["value"] == cluster_values[variable], variable
        elif variable.lower() in Settings.model_fields and "value" in spec:
            default = getattr(defaults, variable.lower())
            if isinstance(default, list):  # comma-separated, as EXPECTED_MODELS
                default = ",".join(default)
            expected = str(getattr(default, "value", default)).lower()
            assert spec["value"].lower() in {expected, expected.removesuffix(".0")}, variable


@pytest.mark.parametrize("name", WORKLOADS)
def test_admin_token_comes_from_an_optional_secret(name: str) -> None:
    """Without the Secret the pod still starts, with POST /admin/reload disabled."""
    assert env(name)["ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "keras-serving-admin",
        "key": "token",
        "optional": True,
    }


# ---- security ----


@pytest.mark.parametrize("name", WORKLOADS)
def test_pod_runs_as_the_image_user_without_a_service_account_token(name: str) -> None:
    spec = pod_spec(name)
    assert re.search(
        rf"^USER {IMAGE_UID}:{IMAGE_UID}$", (REPO / "Dockerfile").read_text(), re.MULTILINE
    )
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": IMAGE_UID,
        "fsGroup": IMAGE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@pytest.mark.parametrize("name", WORKLOADS)
def test_container_has_no_privileges_and_a_read_only_root(name: str) -> None:
    assert container(name)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


@pytest.mark.parametrize("name", WORKLOADS)
def test_keras_home_is_on_a_size_limited_empty_dir(name: str) -> None:
    """With a read-only root, Keras' config (KERAS_HOME, set by the image) needs a writable tmp."""
    keras_home = re.search(r"KERAS_HOME=(\S+)", (REPO / "Dockerfile").read_text())
    assert keras_home, "the Dockerfile no longer sets KERAS_HOME"
    mounts = {m["mountPath"]: m["name"] for m in container(name)["volumeMounts"]}
    (mount_path,) = (path for path in mounts if keras_home[1].startswith(path.rstrip("/") + "/"))
    volumes = {v["name"]: v for v in pod_spec(name)["volumes"]}
    assert quantity(volumes[mounts[mount_path]]["emptyDir"]["sizeLimit"]) > 0


# ---- resources ----


@pytest.mark.parametrize("name", WORKLOADS)
def test_requests_do_not_exceed_limits(name: str) -> None:
    resources = container(name)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    for resource, limit in resources["limits"].items():
        assert quantity(resources["requests"][resource]) <= quantity(limit), resource


@pytest.mark.parametrize("name", WORKLOADS)
def test_memory_fits_the_measured_peak_and_a_hot_reload(name: str) -> None:
    """Request: room for one worker's peak. Limit: room for two versions during a reload."""
    peak = peak_rss_bytes()
    resources = container(name)["resources"]
    assert quantity(resources["requests"]["memory"]) >= peak
    assert quantity(resources["limits"]["memory"]) >= VERSIONS_IN_MEMORY_DURING_RELOAD * peak


# ---- lifecycle ----


@pytest.mark.parametrize("name", WORKLOADS)
def test_grace_period_covers_the_lame_duck_and_the_drain(name: str) -> None:
    """SIGKILL comes terminationGracePeriodSeconds after the pod is marked terminating: after
    any preStop hook, the lame duck (SHUTDOWN_DELAY) and the drain (GRACEFUL_TIMEOUT)."""
    pre_stop = container(name).get("lifecycle", {}).get("preStop", {}).get("sleep", {})
    pause = pre_stop.get("seconds", 0) + float(env(name)["SHUTDOWN_DELAY"]["value"])
    drain = float(env(name)["GRACEFUL_TIMEOUT"]["value"])
    assert pause > 0, "without a pause, the socket can close before the endpoint leaves the Service"
    assert pod_spec(name)["terminationGracePeriodSeconds"] >= pause + drain + EXIT_MARGIN_S


def test_rolling_update_never_drops_below_the_replica_count() -> None:
    deployment = load("deployment.yaml")["spec"]
    assert deployment["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert deployment["replicas"] >= 2


# ---- how the objects find each other ----


def test_service_selects_the_deployments_pods_on_the_named_port() -> None:
    deployment, service = load("deployment.yaml")["spec"], load("service.yaml")["spec"]
    pod_labels = deployment["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    assert deployment["selector"]["matchLabels"].items() <= pod_labels.items()
    (port,) = service["ports"]
    assert (service["type"], port["port"]) == ("ClusterIP", 80)
    assert port_number("deployment.yaml", port["targetPort"]) == listening_port("deployment.yaml")


def test_hpa_scales_the_deployment_on_cpu_and_scales_down_slowly() -> None:
    hpa, deployment = load("hpa.yaml")["spec"], load("deployment.yaml")
    assert hpa["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": deployment["kind"],
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
