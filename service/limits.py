"""Request limits that come from settings, checked with the same 422 shape as schema errors.

The pydantic models in ``service.schemas`` are fixed when the module is imported, before the
settings are read; so the configurable limits (batch size, text length) are
checked here, right after the schema, and reported as ``RequestValidationError`` with the
field's location, exactly like a schema error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError

from service.schemas import BostonRequest, TextInput


@dataclass(frozen=True)
class Limits:
    max_batch_size: int
    max_text_chars: int


def _issue(loc: tuple[str | int, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ("body", *loc), "msg": msg, "type": kind}


def check_text_input(body: TextInput, limits: Limits) -> None:
    """Batch size, text length and sequence length of a text request; 422 naming each problem."""
    issues: list[dict[str, Any]] = []
    for form in ("texts", "sequences"):
        batch = getattr(body, form)
        if batch is not None and len(batch) > limits.max_batch_size:
            issues.append(
                _issue((form,), f"at most {limits.max_batch_size} items allowed, got {len(batch)}",
                       "too_long")
            )
    if issues:
        raise RequestValidationError(issues)
    if body.text is not None:
        texts: list[tuple[tuple[str | int, ...], str]] = [(("text",), body.text)]
    else:
        texts = [(("texts", i), text) for i, text in enumerate(body.texts or [])]
    for loc, text in texts:
        if len(text) > limits.max_text_chars:
            issues.append(
                _issue(loc, f"at most {limits.max_text_chars} characters allowed, got {len(text)}",
                       "string_too_long")
            )
    for i, sequence in enumerate(body.sequences or []):
        if len(sequence) > limits.max_text_chars:
            issues.append(
                _issue(("sequences", i),
                       f"at most {limits.max_text_chars} word ids allowed, got {len(sequence)}",
                       "too_long")
            )
        if len(issues) >= 10:
            break
    if issues:
        raise RequestValidationError(issues)


def check_boston_input(body: BostonRequest, limits: Limits) -> None:
    for form in ("instances", "records"):
        batch = getattr(body, form)
        if batch is not None and len(batch) > limits.max_batch_size:
            raise RequestValidationError(
                [_issue((form,), f"at most {limits.max_batch_size} items allowed, got {len(batch)}",
                        "too_long")]
            )
