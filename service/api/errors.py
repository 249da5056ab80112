"""How the HTTP API answers what went wrong: the data plane's ``NOT_SERVED`` errors as 404/503
with ``detail``, a schema error as a 422 listing each bad field, V2's errors as its
``{"error": ...}`` (``service.api.v2``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.api.v2 import V2Error, v2_error
from service.serving.errors import ModelUnavailable, UnknownModel, VersionNotServed


async def unknown_model(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=404)


async def model_unavailable(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=503)


async def version_not_served(request: Request, error: Exception) -> JSONResponse:
    """404 for a version that does not exist, 503 for one on disk that failed to load."""
    assert isinstance(error, VersionNotServed)
    return JSONResponse({"detail": str(error)}, status_code=503 if error.failed else 404)


async def invalid_request(request: Request, error: Exception) -> JSONResponse:
    """422 naming each bad field and what is wrong, never echoing the (possibly huge) input."""
    assert isinstance(error, RequestValidationError)
    return JSONResponse({"detail": [_issue(e) for e in error.errors()[:20]]}, status_code=422)


def _issue(error: dict[str, Any]) -> dict[str, Any]:
    message = str(error.get("msg", "invalid"))
    context = error.get("ctx") or {}
    if error.get("type") == "json_invalid" and "error" in context:
        message = f"{message}: {context['error']}"
    return {
        "loc": [part if isinstance(part, int) else str(part)[:64] for part in error.get("loc", ())],
        "msg": message[:300],
        "type": str(error.get("type", "value_error")),
    }


HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[JSONResponse]]] = {
    UnknownModel: unknown_model,
    ModelUnavailable: model_unavailable,
    VersionNotServed: version_not_served,
    V2Error: v2_error,
    RequestValidationError: invalid_request,
}
"""Each error the app answers itself, and its handler (``service.app`` installs them)."""
