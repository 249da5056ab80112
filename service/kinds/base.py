"""What every model kind shares: the request envelope, input problems, limits, V2 tensors, and
the ``Kind`` contract.

A *kind* is what a model is (a text classifier, a table regressor), in the spirit of KServe's
``Model``: built once from a version's model card and its runtime (``load``), it turns a request
into model input (preprocess), runs it (the engine) and turns the output into answers
(postprocess, with ``explain`` on demand). The protocol adapters (``service.api``) decode a
request into what the kind reads, the data plane (``service.serving.dataplane``) runs it, and no
module outside a kind knows what a model's inputs, labels, outputs, limits, costs or drift
signals are: each kind declares them in its own module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from service.engine.runtime import Runtime
from service.observe.drift import Series, Signals

# --- The request envelope every kind uses --------------------------------------------------


def integral_float_to_int(value: object) -> object:
    """JSON Schema counts 14.0 as an integer; so do we. 14.5, "14" and true stay errors."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _version_to_text(value: object) -> object:
    """A version may be given as 2 or "2" (or 2.0); the API names versions as strings."""
    value = integral_float_to_int(value)
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Version = Annotated[
    str, Field(pattern=r"^([1-9][0-9]{0,17}|stable|canary)$"), BeforeValidator(_version_to_text)
]
"""A model version: a positive integer, as a JSON number or string (``2`` or ``"2"``), or the
rollout's label ``"stable"`` or ``"canary"`` (``service.serving.rollout``)."""

VERSION_FIELD = Field(
    None, description="Model version to use: a positive integer, or 'stable' or 'canary' (the "
    "rollout's); default: the rollout's choice (without a rollout, the highest served)."
)


def exactly_one_of(forms: tuple[str, ...], examples: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON Schema side of ``InputForms``' rule, so generated clients and fuzzers know it too."""
    return {"oneOf": [{"required": [form]} for form in forms], "examples": examples}


class InputForms(BaseModel):
    """Exactly one input form. The form fields default to absent but are never nullable:
    ``{"text": null}`` is a 422, and the documented schema says so.

    ``batch_forms`` are the forms that hold a batch: at most ``MAX_BATCH_SIZE`` items, checked
    by the kind (``Limits.batches``) and written into /docs (``document_limits``)."""

    model_config = ConfigDict(extra="forbid")

    input_forms: ClassVar[tuple[str, ...]] = ()
    batch_forms: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _exactly_one_form(self) -> Self:
        given = [form for form in self.input_forms if getattr(self, form) is not None]
        if len(given) != 1:
            forms = ", ".join(f"'{form}'" for form in self.input_forms)
            found = ", ".join(f"'{form}'" for form in given) or "none"
            raise ValueError(f"give exactly one of {forms}; found {found}")
        return self

    @classmethod
    def document_limits(cls, properties: dict[str, Any], limits: Limits) -> None:
        """Write the configured limits into this request's JSON Schema ``properties``, in place,
        so a request the OpenAPI document calls valid is one the kind accepts."""
        for form in cls.batch_forms:
            if form in properties:
                properties[form]["maxItems"] = limits.max_batch_size


class ModelRef(BaseModel):
    name: str
    version: str


# --- Input problems: one place for limits, two renderings ------------------------------------

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input the schema admitted: where (the field path), what, and a
    machine-readable type. REST renders it as a 422 item, V2 as a 400 message."""

    loc: Loc
    msg: str
    type: str = "value_error"


class InputProblems(Exception):
    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.msg for p in problems))
        self.problems = list(problems)


def raise_problems(problems: Sequence[Problem | None], most: int = 10) -> None:
    """Raise ``InputProblems`` with the first ``most`` problems found, if any."""
    found = [problem for problem in problems if problem is not None][:most]
    if found:
        raise InputProblems(found)


@dataclass(frozen=True)
class Limits:
    """The configurable request limits (``MAX_BATCH_SIZE``, ``MAX_TEXT_CHARS``): values only;
    each kind decides which apply to its inputs and checks them (``Kind.check``)."""

    max_batch_size: int
    max_text_chars: int

    def batch(self, loc: Loc, size: int) -> Problem | None:
        if size > self.max_batch_size:
            return Problem(loc, f"at most {self.max_batch_size} items allowed, got {size}", "too_long")
        return None

    def batches(self, body: Any, forms: Sequence[str]) -> list[Problem | None]:
        """``batch`` for each batch form the request uses."""
        return [self.batch((form,), len(getattr(body, form))) for form in forms
                if getattr(body, form) is not None]  # fmt: skip


# --- V2 tensors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """A V2 input or output as the model metadata describes it (``-1``: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    accepts: tuple[str, ...] = ()
    """Other datatypes read as this one (an INT32 word id is as good as an INT64 one)."""

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class TensorBounds:
    """What a kind accepts in one V2 input beyond its datatype, for the OpenAPI document."""

    element: dict[str, Any]
    """JSON Schema keywords each element meets (``{"minLength": 1, "maxLength": ...}``)."""
    length: int | None = None
    """The most a free dimension after the batch (``-1``) may be; None: no bound."""


@dataclass(frozen=True)
class Tensor:
    """A decoded V2 input or a computed output: numbers in a NumPy array, ``BYTES`` as a list
    (``service.api.tensors`` decodes and encodes both of V2's encodings)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes]


# --- The contract -----------------------------------------------------------------------------


class Kind(ABC):
    """One served model version of one kind: its preprocessing state, runtime and answers.

    Subclasses are built by ``load`` from the version's card (``metadata.json``) and folder; a
    card the kind cannot serve raises ``ArtifactError`` there, once, never at request time.
    ``service.kinds`` picks the class for a card by ``kind`` (and ``preprocessing``).
    """

    kind: ClassVar[str]
    """The card's ``"kind"``: ``text-classifier``, ``table-regressor``."""
    preprocessing: ClassVar[str | None] = None
    """The card's ``preprocessing.kind`` this class reads; None: the kind's default."""
    headline_metric: ClassVar[str]
    """The test metric ``/models`` shows (``test_accuracy``, ``test_mae``)."""
    request_base: ClassVar[type[InputForms]]
    """Every request model of the kind derives from it (the book endpoints' ones too)."""
    signals: ClassVar[tuple[Series, ...]] = ()
    """The drift series this kind records in ``Signals`` (``service.observe.drift``)."""

    name: str
    card: dict[str, Any]
    runtime: Runtime
    request_model: type[InputForms]
    """This model's request body, typed from its card (labels, feature names): /docs shows it."""
    prediction_model: type[BaseModel]
    """One answered item, typed from its card."""

    @classmethod
    @abstractmethod
    def load(cls, name: str, card: dict[str, Any], folder: Path, runtime: Runtime) -> Self:
        """Build the preprocessing state from the card and folder; ``ArtifactError`` if unfit."""

    @property
    @abstractmethod
    def input_forms(self) -> tuple[str, ...]: ...

    @abstractmethod
    def probe(self) -> tuple[np.ndarray, np.ndarray]:
        """A deterministic probe batch: (rows for the Keras reference, the served path's output).
        The registry compares the two at load time and this also warms the served path."""

    @property
    @abstractmethod
    def output_width(self) -> int:
        """How many numbers the network must return per row, by the card."""

    # --- the JSON predict endpoints ---

    @abstractmethod
    def check(self, body: Any, limits: Limits) -> tuple[int, int]:
        """The configurable limits on a parsed request (``InputProblems`` if broken). Returns
        its items, and its cost in short items (``service.serving.offload`` runs cheap ones inline)."""

    @abstractmethod
    def answer(self, body: Any, seen: Signals | None = None) -> list[BaseModel]:
        """preprocess → predict → postprocess (and explain if asked) for a parsed request;
        what the inputs and answers showed goes into ``seen`` (``service.observe.drift``)."""

    # --- V2 inference ---

    @abstractmethod
    def v2_inputs(self) -> tuple[TensorSpec, ...]: ...

    @abstractmethod
    def v2_outputs(self) -> tuple[TensorSpec, ...]: ...

    @abstractmethod
    def v2_batch(self, tensor: Tensor, limits: Limits) -> list[Any]:
        """A V2 input tensor as a batch of items within the limits; ``InputProblems`` if not."""

    def v2_cost(self, tensor: Tensor, batch: list[Any]) -> int:
        """What a V2 batch costs to answer, in short items: one each unless the kind says more."""
        return len(batch)

    def v2_bounds(self, spec: TensorSpec, limits: Limits) -> TensorBounds:
        """What one of ``v2_inputs`` accepts beyond its datatype, under ``limits`` (/docs)."""
        return TensorBounds({})

    @abstractmethod
    def v2_answer(
        self, input_name: str, batch: list[Any], seen: Signals | None = None
    ) -> dict[str, Tensor]:
        """One forward pass over a V2 batch, as every output tensor of the model (``seen``: as
        for ``answer``)."""


def camel(name: str) -> str:
    """``my-spam_model`` → ``MySpamModel``: a model's name as a schema title in /docs."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_"))


def with_examples(model: type[InputForms], schema_extra: dict[str, Any]) -> type[InputForms]:
    """A request model built at load time, given its JSON-schema examples and input-form rule."""
    model.model_config["json_schema_extra"] = schema_extra  # type: ignore[typeddict-item]
    model.model_rebuild(force=True)
    return model
