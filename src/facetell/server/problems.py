"""Errors as RFC 9457 problem details: one clear `detail` line, never a stack trace."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from facetell.errors import FacetellError

logger = logging.getLogger("facetell.server")
PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def problem_response(status: int, detail: str, headers: dict[str, str] | None = None):
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(_: Request, error: Problem):
        return problem_response(error.status, error.detail, error.headers)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, error: HTTPException):
        detail = str(error.detail)
        allowed = (error.headers or {}).get("Allow")
        if error.status_code == 405 and allowed:  # "Method Not Allowed" says not what is
            detail = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
        elif error.status_code == 404 and detail == "Not Found":  # a mistyped route: say where
            docs = f"{request.scope.get('root_path', '')}/docs"
            detail = f"nothing at {request.url.path}; the API's routes are listed at {docs}"
        return problem_response(error.status_code, detail, error.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return problem_response(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(FacetellError)
    async def on_facetell(_: Request, error: FacetellError):
        return problem_response(422, str(error))

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, error: Exception):
        logger.exception("unexpected error")
        return problem_response(500, "internal error; the server log has the details")
