"""The table regressor: named numeric features → network (normalization inside) → one number.

The card lists the features in input order, each with its training range and mean: a value
outside the range is flagged in ``out_of_range`` (extrapolation), and an explanation moves one
feature at a time to its mean. The card's ``target`` names the answer's field (``value``, or
Boston's ``price``) and any field derived from it by scaling (Boston's ``price_usd``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, create_model

from service.contract.artifacts import ArtifactError
from service.engine.runtime import Runtime
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
    exactly_one_of,
    raise_problems,
    with_examples,
)
from service.observe.drift import Series, Signals, target_buckets

MAX_FEATURE = 1e9
FiniteNumber = Annotated[StrictFloat, Field(allow_inf_nan=False, ge=-MAX_FEATURE, le=MAX_FEATURE)]
"""A numeric feature: a finite JSON number (no NaN, no Infinity, nor 1e400 which parses to it,
no strings) within ±1e9, far past any real value yet safely inside float32's range."""

OUT_OF_RANGE = Series(
    "model_input_out_of_range", "Input rows with this feature outside its training range.",
    by="feature",
)  # fmt: skip
"""Drift: rows with each feature outside ``[train_min, train_max]`` of the card."""

FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
"""What a target field may be called: it becomes a JSON key of every answer."""


class TableRequest(InputForms):
    """One row of raw features, a batch of rows, or a batch of named records."""

    input_forms = ("features", "instances", "records")
    batch_forms = ("instances", "records")

    version: Version = VERSION_FIELD  # type: ignore[assignment]
    explain: StrictBool = Field(
        False, description="Add each feature's effect: the prediction minus the prediction with "
        "that feature at its training mean."
    )

    def rows(self) -> list[list[float]]:
        """The inputs as a batch of rows, in the card's feature order."""
        if self.features is not None:  # type: ignore[attr-defined]
            return [self.features]  # type: ignore[attr-defined]
        if self.instances is not None:  # type: ignore[attr-defined]
            return self.instances  # type: ignore[attr-defined]
        return [record.row() for record in self.records or []]  # type: ignore[attr-defined]


class FeatureEffect(BaseModel):
    feature: str
    value: float
    effect: float = Field(
        description="The prediction minus the prediction with this feature at its training mean "
        "(in the target's unit)."
    )


class Record(BaseModel):
    """A row by feature name; subclasses built from a card list the names."""

    model_config = ConfigDict(extra="forbid")
    order: ClassVar[tuple[str, ...]] = ()

    def row(self) -> list[float]:
        return [getattr(self, field) for field in self.order]


def record_model(name: str, features: Sequence[dict[str, Any]]) -> type[Record]:
    """The named-row model of one table: every feature required, no other key. Feature names
    need not be Python names (``"bill length (mm)"``): each is a field's alias."""
    fields: dict[str, Any] = {
        f"f{i}": (FiniteNumber, Field(alias=f["name"], description=_described(f)))
        for i, f in enumerate(features)
    }
    model = create_model(f"{camel(name)}Record", __base__=Record, **fields)
    model.order = tuple(fields)
    return model


def request_model(name: str, features: Sequence[dict[str, Any]]) -> type[InputForms]:
    width = len(features)
    names = [f["name"] for f in features]
    row = Annotated[list[FiniteNumber], Field(min_length=width, max_length=width)]
    record = record_model(name, features)
    example = [round(float(f["train_mean"]), 4) for f in features]
    fields: dict[str, Any] = {
        "features": (row, Field(None, description=f"{width} raw numbers in the order {', '.join(names)}.")),
        "instances": (list[row], Field(None, min_length=1, description=f"Rows of {width} raw numbers.")),
        "records": (list[record], Field(None, min_length=1, description="Named rows.")),
    }  # fmt: skip
    model = create_model(f"{camel(name)}Request", __base__=TableRequest, **fields)
    examples = [{"features": example}, {"records": [dict(zip(names, example))]},
                {"features": example, "explain": True}]  # fmt: skip
    return with_examples(model, exactly_one_of(TableRequest.input_forms, examples))


def prediction_model(name: str, target: dict[str, Any]) -> type[BaseModel]:
    """One answer: the target's field (and its derived fields), ``out_of_range``, ``explanation``."""
    unit = f", {target['unit']}" if target.get("unit") else ""
    fields: dict[str, Any] = {
        target["field"]: (float, Field(description=f"Predicted {target.get('description') or target.get('name', 'value')}{unit}.")),
    }  # fmt: skip
    for derived in target.get("derived", []):
        fields[derived["field"]] = (float, Field(description=f"{target['field']} × {derived['scale']:g}."))
    fields["out_of_range"] = (list[str], Field(description="Features outside the range seen in "
                              "training: extrapolation, trust less."))  # fmt: skip
    fields["explanation"] = (list[FeatureEffect] | None, Field(
        None, description="With explain: each feature's effect, largest |effect| first."))  # fmt: skip
    return create_model(f"{camel(name)}Prediction", **fields)


def _described(feature: dict[str, Any]) -> str | None:
    text = feature.get("description") or None
    return f"{text} ({feature['unit']})" if text and feature.get("unit") else text


class TableRegressor(Kind):
    """A ``table-regressor``: named numeric features (normalized inside the network) → a number."""

    kind: ClassVar[str] = "table-regressor"
    headline_metric: ClassVar[str] = "test_mae"
    request_base: ClassVar[type[InputForms]] = TableRequest
    signals: ClassVar[tuple[Series, ...]] = (OUT_OF_RANGE,)

    def __init__(self, name: str, card: dict[str, Any], runtime: Runtime) -> None:
        self.name = name
        self.card = card
        self.runtime = runtime
        features = card["features"]
        self.feature_names = [f["name"] for f in features]
        self.lows = np.array([f["train_min"] for f in features], dtype=np.float64)
        self.highs = np.array([f["train_max"] for f in features], dtype=np.float64)
        self.means = np.array([f["train_mean"] for f in features], dtype=np.float32)
        self.target = {"field": "value", **card.get("target", {})}
        self.derived = [(d["field"], float(d["scale"]), int(d.get("decimals", 2)))
                        for d in self.target.get("derived", [])]  # fmt: skip
        self.request_model = request_model(name, features)
        self.prediction_model = prediction_model(name, self.target)
        self.value_buckets = target_buckets(self.target)

    @classmethod
    def load(cls, name: str, card: dict[str, Any], folder: Path, runtime: Runtime) -> Self:
        features = card.get("features")
        keys = ("name", "train_min", "train_max", "train_mean")
        if not (
            isinstance(features, list) and features
            and all(isinstance(f, dict) and all(k in f for k in keys) for f in features)
            and len({f["name"] for f in features}) == len(features)
        ):  # fmt: skip
            raise ArtifactError(
                f"{folder} metadata.json needs 'features': each with a distinct name, "
                f"train_min, train_max and train_mean, in input order"
            )
        target = {"field": "value", **card.get("target", {})}
        fields = [target["field"], *(d.get("field") for d in target.get("derived", []))]
        if not all(isinstance(f, str) for f in fields) or len(set(fields)) != len(fields) or \
                set(fields) & {"out_of_range", "explanation"}:  # fmt: skip
            raise ArtifactError(f"{folder} metadata.json target fields are not usable: {fields}")
        return cls(name, card, runtime)

    @property
    def input_forms(self) -> tuple[str, ...]:
        return TableRequest.input_forms

    @property
    def output_width(self) -> int:
        return 1

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.runtime(rows)[:, 0]

    def postprocess(self, values: list[float], rows: np.ndarray) -> list[dict[str, Any]]:
        outside = ((rows < self.lows) | (rows > self.highs)).tolist()
        field, names = self.target["field"], self.feature_names
        return [
            {
                field: value,
                **{name: round(value * scale, decimals) for name, scale, decimals in self.derived},
                "out_of_range": [name for name, out in zip(names, flags) if out],
            }
            for value, flags in zip(values, outside)
        ]

    def check(self, body: TableRequest, limits: Limits) -> tuple[int, int]:
        raise_problems(limits.batches(body, TableRequest.batch_forms))
        size = 1 if body.features is not None else len(body.instances or body.records)  # type: ignore[attr-defined]
        return size, size * (len(self.feature_names) + 1 if body.explain else 1)

    def answer(self, body: TableRequest, seen: Signals | None = None) -> list[BaseModel]:
        rows = body.rows()
        features = np.asarray(rows, dtype=np.float64)
        values = self.predict(features.astype(np.float32)).tolist()
        answers = self.postprocess(values, features)
        if seen is not None:
            self.note(seen, values, (name for answer in answers for name in answer["out_of_range"]))
        if body.explain:
            for answer, row in zip(answers, rows):
                answer["explanation"] = self.explain(row)
        return [self.prediction_model(**answer) for answer in answers]

    def note(
        self, seen: Signals, values: list[float], outside: Iterable[str] | Mapping[str, int]
    ) -> None:
        """The predicted values, and each out-of-range feature once per row it is out in (the
        names, or a count per name)."""
        seen.values.extend(values)
        seen.value_buckets = self.value_buckets
        seen.count(OUT_OF_RANGE, outside)

    def explain(self, row: Sequence[float]) -> list[FeatureEffect]:
        """Each feature's effect: the row, then the row with each feature at its mean, one call."""
        base = np.asarray(row, dtype=np.float32)
        rows = np.repeat(base[None, :], len(base) + 1, axis=0)
        rows[1:][np.diag_indices(len(base))] = self.means
        values = self.predict(rows)
        effects = values[0] - values[1:]
        return [
            FeatureEffect(feature=self.feature_names[i], value=float(row[i]), effect=float(effects[i]))
            for i in np.argsort(-np.abs(effects), kind="stable")
        ]

    def probe(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows at the training minimum, maximum, mean and random points between."""
        rng = np.random.default_rng(0)
        lows, highs = self.lows.astype(np.float32), self.highs.astype(np.float32)
        between = lows + (highs - lows) * rng.random((5, len(lows)), dtype=np.float32)
        rows = np.vstack([lows, highs, self.means, between]).astype(np.float32)
        return self.runtime.reference(rows), self.runtime(rows)

    def v2_inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("features", "FP32", (-1, len(self.feature_names)), accepts=("FP64",)),)

    def v2_outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(self.target["field"], "FP32", (-1, 1)),)

    def v2_bounds(self, spec: TensorSpec, limits: Limits) -> TensorBounds:
        """Finite features within ±1e9, as the JSON endpoint takes them."""
        return TensorBounds({"minimum": -MAX_FEATURE, "maximum": MAX_FEATURE})

    def v2_batch(self, tensor: Tensor, limits: Limits) -> list[Any]:
        raise_problems([limits.batch((tensor.name,), tensor.shape[0])])
        values = np.asarray(tensor.data).reshape(tensor.shape).astype(np.float64)
        if not np.isfinite(values).all() or np.abs(values).max() > MAX_FEATURE:
            raise_problems([Problem((tensor.name,), f"every feature must be a finite number "
                                                    f"within ±{MAX_FEATURE:g}")])  # fmt: skip
        return list(values)

    def v2_answer(
        self, input_name: str, batch: list[Any], seen: Signals | None = None
    ) -> dict[str, Tensor]:
        values = np.asarray(self.runtime(np.asarray(batch, dtype=np.float32)), dtype=np.float32)
        field = self.target["field"]
        if seen is not None:
            rows = np.asarray(batch, dtype=np.float64)
            counts = ((rows < self.lows) | (rows > self.highs)).sum(axis=0).tolist()
            outside = {f: n for f, n in zip(self.feature_names, counts) if n}
            self.note(seen, values[:, 0].tolist(), outside)
        return {field: Tensor(field, "FP32", (len(batch), 1), values)}
