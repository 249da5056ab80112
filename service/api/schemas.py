"""The JSON bodies of the operational endpoints: errors, probes, model lists, reload reports.

The predict bodies belong to the kinds (``service.kinds``), and the book endpoints' typed ones
to ``service.api.book``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SerializeAsAny

from service.kinds.base import ModelRef


class Answer(BaseModel):
    """What every predict endpoint answers: which version, then one prediction per input."""

    model: ModelRef
    predictions: list[SerializeAsAny[BaseModel]]


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong, in words.")


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: 'body' then the field path.")
    msg: str = Field(description="What is wrong with it.")
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationIssue]


class ModelSummary(BaseModel):
    name: str
    version: str = Field(
        description="The default version: the rollout's stable one, without models/NAME/rollout.json "
        "the highest served ('' if none)."
    )
    versions: list[str] = Field(description="Every served version, lowest first.")
    task: str
    ready: bool
    inputs: list[str] = Field(description="Accepted input forms.")
    metric: dict[str, float] = Field(description="The default version's headline test metric.")
    error: str | None = Field(None, description="Why a model or version is not served, if any.")


class VersionSummary(BaseModel):
    version: str
    created: str = Field(description="When training wrote it (UTC, ISO 8601).")
    metrics: dict[str, float] = Field(description="Its test metrics, from its model card.")


class ModelList(BaseModel):
    models: list[ModelSummary]


class Readiness(BaseModel):
    ready: bool = Field(description="Every model serves, and the process is not stopping.")
    models: dict[str, str] = Field(description="Each model's state: 'ready' or the reason it is not.")
    serving: dict[str, str] = Field(description="Each model's default version.")
    failures: dict[str, str] = Field(
        description="Model folders or versions ('imdb/3') that failed to load, and why. A failed "
        "version does not make the service unready while another version of its model serves."
    )


class ReloadReport(BaseModel):
    """What one reload changed. Versions are named ``model/version``."""

    loaded: list[str] = Field(default_factory=list, description="Versions loaded, verified and now served.")
    unloaded: list[str] = Field(default_factory=list, description="Versions whose folder is gone.")
    unchanged: list[str] = Field(default_factory=list, description="Versions reused as they were.")
    failed: dict[str, str] = Field(
        default_factory=dict,
        description="What failed to load and why; a version loaded before keeps serving.",
    )
    serving: dict[str, str] = Field(
        default_factory=dict, description="Each model's default version after the reload."
    )
    seconds: float = Field(0.0, description="Time the reload took.")
    workers: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Every worker process (by pid) that applied this reload, with each model's "
        "default version it serves now. With WORKERS > 1 the answer waits until every live worker "
        "has rescanned MODELS_DIR; one entry with one process.",
    )
