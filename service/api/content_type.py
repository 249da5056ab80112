"""Predict bodies are JSON: a request that says otherwise gets 415 and the reason.

It guards our ``/<model>/predict`` routes only: the V2 endpoints also take binary tensor data,
and ``POST /admin/reload`` has no body.

Without this, ``curl -d`` (which sends ``application/x-www-form-urlencoded``) would get a
puzzling 422 about the body not being an object. Plain ASGI: a few microseconds per request.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send


class RequireJson:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/predict"):
            content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
            media_type = content_type.split(b";", 1)[0].strip().lower()
            if media_type != b"application/json" and not media_type.endswith(b"+json"):
                shown = content_type[:80].decode("latin-1") or "none"
                body = json.dumps(
                    {"detail": f"Content-Type must be application/json, got {shown!r}"}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 415,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
