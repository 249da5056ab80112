"""Every setting of the service, in one pydantic-settings object.

Each field is read from the environment variable of the same name in upper case (``PORT``,
``MODELS_DIR``, ...) and can be overridden on the command line of ``python -m service``
(``--port``, ``--models-dir``, ...). ``python -m service --help`` lists them with their defaults.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.observe.payloads import PayloadInputs

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class RequireModels(str, Enum):
    """How many models must load for the process to keep running."""

    all = "all"
    any = "any"
    none = "none"


class EventLoop(str, Enum):
    """The asyncio event loop implementation the server runs on."""

    asyncio = "asyncio"
    uvloop = "uvloop"


class Settings(BaseSettings):
    """Serve the models of MODELS_DIR (the book's IMDB, Reuters and Boston, and your own) over HTTP.

    Every option is also read from the environment variable of its name in upper case
    (HOST, PORT, WORKERS, MODELS_DIR, EXPECTED_MODELS, REQUIRE_MODELS, MAX_BODY_BYTES, MAX_BATCH_SIZE,
    MAX_TEXT_CHARS, GRACEFUL_TIMEOUT, SHUTDOWN_DELAY, MODEL_POLL_SECONDS, EVENT_LOOP, LOG_LEVEL,
    ACCESS_LOG, SHADOW_MAX_IN_FLIGHT, PAYLOAD_LOG, PAYLOAD_LOG_SAMPLE, PAYLOAD_LOG_INPUTS,
    KIND_MODULES, ADMIN_TOKEN); a flag wins over its variable.
    """

    model_config = SettingsConfigDict(
        case_sensitive=False,
        cli_kebab_case=True,
        cli_prog_name="python -m service",
        cli_implicit_flags=False,
        env_ignore_empty=True,  # ADMIN_TOKEN="" (compose passing an unset variable) means unset
    )

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in the container).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes (uvicorn).")
    models_dir: Path = Field(
        DEFAULT_MODELS_DIR,
        description="Folder of model folders (imdb/, reuters/, boston/, your own), each with "
        "version folders 1/, 2/...; every folder named like a model is served.",
    )
    expected_models: Annotated[list[str], NoDecode] = Field(
        ["imdb", "reuters", "boston"],
        description="Comma-separated models that must be in MODELS_DIR: the service is not ready "
        "while one is missing. Empty: just the folders found.",
    )
    require_models: RequireModels = Field(
        RequireModels.any,
        description="Exit at start-up unless 'all' models load, or 'any' one; 'none' never exits.",
    )
    max_body_bytes: int = Field(
        10_000_000, ge=1_000, description="Largest request body accepted; larger gets 413."
    )
    max_batch_size: int = Field(
        1_000, ge=1, description="Most texts, sequences, instances or records in one request."
    )
    max_text_chars: int = Field(
        100_000, ge=1, description="Longest text (characters) and longest word-id sequence."
    )
    graceful_timeout: float = Field(
        25.0, ge=0, description="Seconds a shutdown waits for in-flight requests to finish."
    )
    shutdown_delay: float = Field(
        0.0, ge=0, description="Lame duck: seconds after SIGTERM during which /readyz answers "
        "503 while requests are still served, so a load balancer stops sending first.",
    )
    model_poll_seconds: float = Field(
        0.0, ge=0, description="Rescan MODELS_DIR this often and serve new versions, unload "
        "removed ones (0: off; SIGHUP and POST /admin/reload still work).",
    )
    event_loop: EventLoop = Field(
        EventLoop.asyncio,
        description="asyncio (default) or uvloop. Measured here (bench/RESULTS.md): with uvloop "
        "some connections starve once a load run has dropped its connections (p99 200-600 ms "
        "at 64 connections against 35-41 ms with asyncio), for no throughput gain.",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    access_log: bool = Field(True, description="Log one structured line per request.")
    payload_log: str = Field(
        "",
        description="Log one JSON line per predict request (REST and V2, errors included) with "
        "its inputs and outputs: 'stdout' or a file path (appended to; several workers may "
        "share it). Empty: off.",
    )
    payload_log_sample: float = Field(
        1.0, ge=0, le=1, description="Share of predict requests the payload log keeps (0 to 1)."
    )
    payload_log_inputs: PayloadInputs = Field(
        PayloadInputs.hash,
        description="How the payload log writes inputs: 'hash' (sha256 and length of each "
        "text or row), 'truncate' (its first 64 characters) or 'full' (as sent; personal data "
        "may end up in the log).",
    )
    shadow_max_in_flight: int = Field(
        8, ge=0, description="Most shadow predictions (models/NAME/rollout.json 'shadow') running "
        "at once per process; more are dropped and counted, so shadows never queue up behind "
        "the requests that need answers (0: never run them).",
    )
    kind_modules: Annotated[list[str], NoDecode] = Field(
        [],
        description="Comma-separated Python modules imported at start-up, each registering "
        "model kinds of your own (service.kinds.register) for the cards that name them.",
    )
    admin_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Bearer token for POST /admin/reload (at least 16 characters); "
        "unset, the admin endpoints answer 403. SIGHUP reloads either way.",
    )

    @field_validator("expected_models", "kind_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """``EXPECTED_MODELS=imdb,spam`` from the environment or the command line."""
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value
