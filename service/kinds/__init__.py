"""Model kinds: what a served model *is*, chosen by its card's ``"kind"``.

Adding a kind is one module here and one line in ``KINDS``; adding a model is a folder.
"""

from __future__ import annotations

from typing import Any

from service.kinds.base import Kind
from service.kinds.table import TableRegressor
from service.kinds.text import TextClassifier

KINDS: dict[str, type[Kind]] = {kind.kind: kind for kind in (TextClassifier, TableRegressor)}


def kind_of(card: dict[str, Any]) -> str | None:
    """The card's kind; cards written before kinds existed are read by what they hold."""
    if "kind" in card:
        return card["kind"] if isinstance(card["kind"], str) else None
    if "num_words" in card.get("preprocessing", {}):
        return TextClassifier.kind
    if "features" in card:
        return TableRegressor.kind
    return None


__all__ = ["KINDS", "Kind", "kind_of"]
