"""How the API answers errors: always ``{"detail": "<what went wrong and what to do>"}``.

Clients are retailers' apps, admin scripts and browsers; none of them can act on a traceback,
and a traceback tells an attacker about the server. So request validation errors become one
readable sentence (plus a machine-readable list that never echoes the input), lookups of
missing records become 404 with the service's message, and anything unexpected becomes a
generic 500 whose details go to the log under a reference the operator can search for.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coordinator.db.database import NotFoundError

log = logging.getLogger("coordinator.api")

MAX_REPORTED_ERRORS = 10
_MAX_MESSAGE = 300


class Problem(BaseModel):
    """Every error answer: what went wrong and what to do about it."""

    detail: str


class ValidationIssue(BaseModel):
    """One invalid field: where (``["body", "rounds"]``), what is wrong, and its kind."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """A 422: one readable sentence, and the issues one by one for programs."""

    detail: str
    errors: list[ValidationIssue]


def problem(description: str) -> dict[str, Any]:
    """An OpenAPI response entry for an error answered as ``Problem``."""
    return {"model": Problem, "description": description}


NOT_FOUND = problem("No such record")
PUBLIC_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationProblem, "description": "Invalid request (names each bad field)"},
    500: problem("Unexpected error; logged on the server under the reference given"),
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **PUBLIC_RESPONSES,
    401: problem("Missing, invalid, expired or revoked access token (get a new one)"),
    403: problem("This credential may not do this (wrong role, or another retailer's data)"),
}


def http_error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> HTTPException:
    """An ``HTTPException`` whose detail is shown to the client as is (so it must be safe)."""
    return HTTPException(status_code=status, detail=detail, headers=dict(headers or {}))


def _where(loc: Sequence[Any]) -> str:
    """A readable name for where a validation error is: ``rounds``, ``query parameter limit``."""
    parts = [str(part) for part in loc]
    if not parts:
        return "the request"
    source, rest = parts[0], parts[1:]
    if source == "body":
        return "the request body" if not rest else ".".join(rest)
    if source in ("query", "path", "header", "cookie"):
        name = ".".join(rest) or "?"
        return f"{source} parameter {name}"
    return ".".join(parts)


def describe_validation_errors(errors: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    """One sentence naming every invalid field, and a list of ``{loc, msg, type}`` for programs.

    Pydantic's own entries carry the rejected input and exception objects; neither is passed on
    (inputs may be secrets such as tokens, and objects are not JSON).
    """
    sentences: list[str] = []
    items: list[dict[str, Any]] = []
    for error in list(errors)[:MAX_REPORTED_ERRORS]:
        if not isinstance(error, Mapping):
            continue
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        kind = str(error.get("type", "value_error"))
        message = str(error.get("msg", "invalid value"))[:_MAX_MESSAGE]
        if kind == "json_invalid":
            ctx = error.get("ctx")
            reason = str(ctx.get("error", "")) if isinstance(ctx, Mapping) else ""
            position = f" at character {loc[1]}" if len(loc) > 1 else ""
            sentence = f"the request body is not valid JSON ({reason or 'parse error'}{position})"
        elif kind == "missing" and loc == ["body"]:
            sentence = "the request body is missing: send a JSON object"
        else:
            sentence = f"{_where(loc)}: {message}"
        sentences.append(sentence)
        items.append({"loc": loc, "msg": message, "type": kind})
    if len(errors) > MAX_REPORTED_ERRORS:
        sentences.append(f"and {len(errors) - MAX_REPORTED_ERRORS} more problems")
    detail = "invalid request: " + "; ".join(sentences or ["the request could not be read"])
    return detail + " (the expected fields are listed at /docs)", items


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail, items = describe_validation_errors(errors)
    return JSONResponse({"detail": detail, "errors": items}, status_code=422)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # pragma: no cover - registered for it only
        raise exc
    detail: Any = exc.detail
    unmatched = request.scope.get("route") is None
    if exc.status_code == 404 and unmatched:
        detail = f"there is no endpoint {request.url.path}; the API is listed at /docs"
    elif exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = "the request body could not be read: send a JSON object encoded as UTF-8"
    elif exc.status_code == 405 and detail == "Method Not Allowed":  # Starlette's own answer
        allowed = (exc.headers or {}).get("Allow", "")
        also = f" (allowed: {allowed})" if allowed else ""
        detail = f"{request.method} is not allowed on {request.url.path}{also}; see /docs"
    headers = dict(exc.headers) if exc.headers else None
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)


async def _on_not_found(request: Request, exc: Exception) -> JSONResponse:
    # NotFoundError messages name only the kind of record and the id asked for.
    return JSONResponse({"detail": str(exc)}, status_code=404)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error answers on ``app``."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(NotFoundError, _on_not_found)


def internal_error_detail(reference: str) -> str:
    """What a client is told when something unexpected failed (nothing about the server)."""
    return (
        "internal error: the coordinator could not complete this request; it was logged "
        f"with reference {reference}. Try again later or give the reference to the "
        "coordinator's admin."
    )


def new_reference() -> str:
    """A short random id tying a client's 500 to the log line with the traceback."""
    return secrets.token_hex(6)


class CatchAllMiddleware:
    """Turns any exception that escaped the routes into a logged, generic 500 JSON answer.

    Starlette's own last-resort handler re-raises after answering (so the server logs the
    traceback a second time, and test clients raise); this one logs once and stops there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            reference = new_reference()
            log.exception(
                "unexpected error answering %s %s (reference %s)",
                scope.get("method", "?"),
                scope.get("path", "?"),
                reference,
            )
            if started:  # too late to answer; the server closes the connection
                return
            response = JSONResponse({"detail": internal_error_detail(reference)}, status_code=500)
            await response(scope, receive, send)
