"""The JSON bodies of the operational endpoints: errors, probes, model lists (a reload's report
is the control plane's: ``service.lifecycle.reload.ReloadReport``).

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
