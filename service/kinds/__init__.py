"""Model kinds: what a served model *is*, chosen by its card's ``"kind"``.

Adding a kind is one module (a ``Kind`` subclass) and one line: ``register(MyKind)``, here for
the kinds that ship, or in a module named by the ``KIND_MODULES`` setting for your own. Adding a
model is a folder. Everything the service does with a model (limits, cost, /docs, V2 metadata,
drift signals) comes from its kind.
"""

from __future__ import annotations

from typing import Any

from service.kinds.base import Kind
from service.kinds.table import TableRegressor
from service.kinds.text import TextClassifier
from service.kinds.text_bag import BagTextClassifier

KINDS: dict[tuple[str, str | None], type[Kind]] = {}
"""Every kind class by its card's ``kind`` and ``preprocessing.kind`` (None: the default)."""


def register(kind: type[Kind]) -> type[Kind]:
    """Serve cards of ``kind.kind`` (with ``kind.preprocessing``, if it names one) with ``kind``."""
    KINDS[(kind.kind, kind.preprocessing)] = kind
    return kind


for _shipped in (TextClassifier, BagTextClassifier, TableRegressor):
    register(_shipped)


def kind_names() -> list[str]:
    """The card kinds this server serves, in the order they were registered."""
    return list(dict.fromkeys(kind for kind, _ in KINDS))


def kind_of(card: dict[str, Any]) -> str | None:
    """The card's kind; cards written before kinds existed are read by what they hold."""
    if "kind" in card:
        return card["kind"] if isinstance(card["kind"], str) else None
    if "num_words" in card.get("preprocessing", {}):
        return TextClassifier.kind
    if "features" in card:
        return TableRegressor.kind
    return None


def kind_class(card: dict[str, Any]) -> type[Kind] | None:
    """The class that serves a card: its kind's class for its preprocessing, else the kind's
    default class; None when no registered kind serves the card's kind."""
    preprocessing = card.get("preprocessing")
    variant = preprocessing.get("kind") if isinstance(preprocessing, dict) else None
    kind = kind_of(card)
    return KINDS.get((kind, variant)) or KINDS.get((kind, None))  # type: ignore[arg-type]


__all__ = ["KINDS", "Kind", "kind_class", "kind_names", "kind_of", "register"]
