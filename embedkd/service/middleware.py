"""Pure-ASGI middleware: bearer-token auth, request-size limits and per-route Prometheus metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so that a request body larger than the limit is refused while it is
being read, without buffering it, and so that streaming stays cheap.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from embedkd.service.metrics import Metrics

__all__ = ["AuthMiddleware", "BodyLimitMiddleware", "MetricsMiddleware", "StartupErrorMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/health"})


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": payload})


_OPENAI_CODES = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    403: "invalid_api_key",
    404: "model_not_found",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "overloaded",
}


TEI_PATHS = frozenset({"/embed", "/info"})
# text-embeddings-inference's error types, by the status it answers them with
_TEI_TYPES = {400: "Empty", 413: "Validation", 422: "Tokenizer", 429: "Overloaded", 503: "Unhealthy"}


def error_body(path: str, status: int, message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI-shaped errors under /v1 (a string ``code``), TEI's ``{"error", "error_type"}`` on TEI's routes,
    FastAPI's ``{"detail": ...}`` elsewhere."""
    if path in TEI_PATHS:
        return {"error": message, "error_type": _TEI_TYPES.get(status, "Backend" if status >= 500 else "Validation")}
    if path.startswith("/v1/"):
        code = _OPENAI_CODES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return {"detail": message}


class AuthMiddleware:
    """Every route but /health needs ``Authorization: Bearer <key>``: missing -> 401, wrong -> 403."""

    def __init__(self, app: ASGIApp, *, api_keys: list[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in api_keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if not header or scheme.lower() != b"bearer" or not token:
            body = error_body(
                scope["path"], 401, "missing bearer token (Authorization: Bearer <key>)", "authentication_error"
            )
            await send_json(send, 401, body, [(b"www-authenticate", b"Bearer")])
            return
        if not any(hmac.compare_digest(token.strip(), key) for key in self.keys):
            # OpenAI answers a wrong key with 401 (its clients raise AuthenticationError); elsewhere 403.
            status = 401 if scope["path"].startswith("/v1/") else 403
            kind = "authentication_error" if status == 401 else "permission_error"
            await send_json(send, status, error_body(scope["path"], status, "invalid API key", kind))
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body larger than {self.max_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await send_json(send, 413, error_body(scope["path"], 413, message, "invalid_request_error"))
            return
        if length is not None:  # declared and within the limit: a body longer than declared is a protocol error
            await self.app(scope, receive, send)
            return
        # A chunked body of unknown length: read it here, up to the limit, so that an oversize one gets 413
        # (raising from inside the app's own body reading would surface as a 400 parse error).
        chunks: list[bytes] = []
        received = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            chunks.append(msg.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_bytes:
                await send_json(send, 413, error_body(scope["path"], 413, message, "invalid_request_error"))
                return
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class StartupErrorMiddleware:
    """A start-up that fails on an embedkd error (a damaged export, a model that will not load) is reported
    to the server as that error's one line, not as Starlette's traceback: ``failure()`` gives the line, or
    None for any other failure, whose traceback is kept."""

    def __init__(self, app: ASGIApp, *, failure: Callable[[], str | None]) -> None:
        self.app = app
        self.failure = failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_plain(message: Message) -> None:
            line = self.failure() if message["type"] == "lifespan.startup.failed" else None
            await send({**message, "message": line} if line else message)

        await self.app(scope, receive, send_plain)


class MetricsMiddleware:
    """Count requests and time them per route template (``/documents/{doc_id}``, not each id).

    It sits outside auth and size limits, so refused requests are counted too; the template is found by
    matching the app's routes, which also works for requests that never reach a route.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: list[Any]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")  # set by the router on the way in: no second matching for served requests
        path = getattr(route, "path", None)
        if isinstance(path, str) and path:
            return path
        return _find_template(self.routes, scope) or "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def capture(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, capture)
        finally:
            template = self._template(scope)
            method = scope.get("method", "GET")
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - started)


def _find_template(routes: list[Any], scope: Scope) -> str | None:
    """The path template of the route that serves ``scope``, looking inside included routers."""
    from starlette.routing import Match

    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.120 wraps included routers
        if inner is not None:
            found = _find_template(list(inner.routes), scope)
            if found:
                return found
            continue
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "")) or None
    return None
