"""A model kind the service has never heard of, written the way a user would write their own:
one module, registered in one line at the bottom, imported by the server through
``KIND_MODULES=tests.toykind`` (``tests/test_toy_kind.py`` serves it for real).

A *banded regressor* reads rows of numbers, runs any regression network on them, and answers the
band its value falls in (the card's ``bands``: ``[{"label": "low", "below": 15}, ...,
{"label": "high"}]``) with the value itself. Everything the service needs to serve it, over
REST and V2, with limits, cost, /docs and drift signals, is here; no file of the service
changes.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, Field, create_model

from service.contract.artifacts import ArtifactError
from service.engine.runtime import Runtime
from service.kinds import register
from service.kinds.base import (
    VERSION_FIELD,
    InputForms,
    Kind,
    Limits,
    Problem,
    Tensor,
    TensorBounds,
    TensorSpec,
    Version,
    camel,
    raise_problems,
)


class BandRequest(InputForms):
    input_forms = ("rows",)
    batch_forms = ("rows",)

    rows: list[list[float]] = Field(None, min_length=1, description="Rows of raw numbers.")  # type: ignore[assignment]
    version: Version = VERSION_FIELD  # type: ignore[assignment]


class Band(BaseModel):
    band: str = Field(description="The band the value falls in.")
    value: float


class BandedRegressor(Kind):
    kind: ClassVar[str] = "banded-regressor"
    headline_metric: ClassVar[str] = "test_mae"
    request_base: ClassVar[type[InputForms]] = BandRequest

    def __init__(self, name: str, card: dict[str, Any], runtime: Runtime) -> None:
        self.name, self.card, self.runtime = name, card, runtime
        self.width = int(card["width"])
        self.bands = card["bands"]
        row = list[float]
        self.request_model = create_model(
            f"{camel(name)}Request", __base__=BandRequest,
            rows=(list[row], Field(None, min_length=1, description=f"Rows of {self.width} numbers.")),
        )  # fmt: skip
        self.prediction_model = Band

    @classmethod
    def load(cls, name: str, card: dict[str, Any], folder: Path, runtime: Runtime) -> Self:
        bands = card.get("bands")
        if not isinstance(card.get("width"), int) or not isinstance(bands, list) or not bands:
            raise ArtifactError(f"{folder} metadata.json needs 'width' and 'bands'")
        return cls(name, card, runtime)

    @property
    def input_forms(self) -> tuple[str, ...]:
        return BandRequest.input_forms

    @property
    def output_width(self) -> int:
        return 1

    def probe(self) -> tuple[np.ndarray, np.ndarray]:
        rows = np.random.default_rng(0).random((4, self.width), dtype=np.float32) * 10
        return self.runtime.reference(rows), self.runtime(rows)

    def band(self, value: float) -> str:
        return next(b["label"] for b in self.bands if "below" not in b or value < b["below"])

    def rows_problems(self, rows: Any, loc: tuple[str, ...]) -> None:
        if any(len(row) != self.width for row in rows):
            raise_problems([Problem(loc, f"every row must hold {self.width} numbers")])

    def check(self, body: BandRequest, limits: Limits) -> tuple[int, int]:
        raise_problems(limits.batches(body, BandRequest.batch_forms))
        self.rows_problems(body.rows, ("rows",))
        return len(body.rows), len(body.rows)

    def values(self, rows: Any, seen: Any) -> list[float]:
        values = self.runtime(np.asarray(rows, dtype=np.float32))[:, 0].tolist()
        if seen is not None:
            seen.labels.extend(self.band(v) for v in values)
        return values

    def answer(self, body: BandRequest, seen: Any = None) -> list[BaseModel]:
        return [Band(band=self.band(v), value=v) for v in self.values(body.rows, seen)]

    @cached_property
    def specs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("rows", "FP32", (-1, self.width)),)

    def v2_inputs(self) -> tuple[TensorSpec, ...]:
        return self.specs

    def v2_outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("band", "BYTES", (-1,)),)

    def v2_batch(self, tensor: Tensor, limits: Limits) -> list[Any]:
        raise_problems([limits.batch((tensor.name,), tensor.shape[0])])
        return list(np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape))

    def v2_bounds(self, spec: TensorSpec, limits: Limits) -> TensorBounds:
        return TensorBounds({"minimum": -1e6, "maximum": 1e6})

    def v2_answer(self, input_name: str, batch: list[Any], seen: Any = None) -> dict[str, Tensor]:
        bands = [self.band(v).encode() for v in self.values(batch, seen)]
        return {"band": Tensor("band", "BYTES", (len(batch),), bands)}


register(BandedRegressor)
