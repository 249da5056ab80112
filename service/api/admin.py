"""Operator endpoints, off unless ``ADMIN_TOKEN`` is set: today, ``POST /admin/reload``.

The token travels as ``Authorization: Bearer <token>`` and is compared with
``hmac.compare_digest``, whose time does not depend on where the first differing byte is, so
response times tell an attacker nothing about a guess.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.schemas import ErrorResponse
from service.lifecycle.reload import ReloadReport
from service.lifecycle.workers import SupervisorGone, WorkersDidNotApply

bearer = HTTPBearer(auto_error=False, description="The ADMIN_TOKEN setting.")


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """403 when admin endpoints are disabled or the token is wrong, 401 when none is sent."""
    token = request.app.state.settings.admin_token
    if token is None:
        raise HTTPException(403, "admin endpoints are disabled: set ADMIN_TOKEN to enable them")
    if credentials is None:
        raise HTTPException(
            401,
            "send the admin token as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(
        credentials.credentials.encode("utf-8"), token.get_secret_value().encode("utf-8")
    ):
        raise HTTPException(403, "wrong admin token")


admin = APIRouter(
    prefix="/admin",
    tags=["operations"],
    dependencies=[Depends(require_admin)],
    responses={
        401: {"model": ErrorResponse, "description": "No bearer token was sent."},
        403: {"model": ErrorResponse, "description": "Wrong token, or ADMIN_TOKEN is not set."},
    },
)


@admin.post(
    "/reload",
    response_model=ReloadReport,
    summary="Load new model versions, then swap, in every worker",
    responses={
        503: {"model": ErrorResponse, "description": "The worker supervisor cannot be signalled."},
        504: {"model": ErrorResponse, "description": "Some workers did not apply it in time."},
    },
)
async def reload_models(request: Request) -> ReloadReport:
    """Rescan MODELS_DIR; load, verify and warm new or changed versions while the current ones
    keep serving; then swap atomically. A version that fails is listed under ``failed`` and the
    copy loaded before (if any) keeps serving. The same as ``kill -HUP <pid>``.

    With WORKERS > 1, every worker reloads, whichever one answers: the answer comes once all
    have, and ``workers`` lists each with the versions it serves (504 naming the workers that
    had not within 30 s)."""
    try:
        return await request.app.state.reloader.reload_everywhere()
    except SupervisorGone as error:
        raise HTTPException(503, str(error)) from None
    except WorkersDidNotApply as error:
        raise HTTPException(504, str(error)) from None
