"""The HTTP routes under ``/api/v1``: thin async handlers that parse, ask the state, and encode.

Handlers return ready ``Response`` objects with JSON encoded once, skipping FastAPI's model layer: the
emulator has to keep up with thousands of requests a second, and Toloka's shapes are plain dicts anyway.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from airflow_provider_toloka.emulator import query
from airflow_provider_toloka.emulator.errors import ApiError, error_body
from airflow_provider_toloka.emulator.gate import REQUEST_ID_KEY
from airflow_provider_toloka.emulator.model import (
    OPERATION_STATUSES,
    POOL_STATUSES,
    PROJECT_STATUSES,
    TOLOKA_OPERATION_TYPES,
)
from airflow_provider_toloka.emulator.state import EmulatorState

API_PREFIX = "/api/v1"
Handler = Callable[..., Awaitable[Response]]
_PLURAL = {"project": "projects", "pool": "pools", "training": "trainings"}


def create_app(state: EmulatorState) -> FastAPI:
    """Build the app; every route reads and changes only ``state``."""
    app = FastAPI(title="Toloka API emulator", openapi_url=None, docs_url=None, redoc_url=None)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    for kind, plural in _PLURAL.items():
        base = f"{API_PREFIX}/{plural}/{{object_id}}"
        app.add_api_route(base, _read(state, kind), methods=["GET"])
        app.add_api_route(f"{base}/archive", _act(state.archive, kind), methods=["POST"])
        if kind != "project":
            app.add_api_route(f"{base}/close", _act(state.close, kind), methods=["POST"])
            app.add_api_route(f"{API_PREFIX}/{plural}", _list(state, kind), methods=["GET"])
    # The account's projects (housekeeping pages through the ACTIVE ones): status, sort=id, limit, id_gt.
    app.add_api_route(f"{API_PREFIX}/projects", _list(state, "project", PROJECT_STATUSES), methods=["GET"])

    async def list_operations(request: Request) -> Response:
        params = request.query_params
        items, has_more = state.list_operations(
            limit=query.limit(params),
            type=query.choice(params, "type", TOLOKA_OPERATION_TYPES),
            status=query.choice(params, "status", OPERATION_STATUSES),
            sort=query.choice(params, "sort", ("submitted", "-submitted", "id")) or "submitted",
            id_gt=params.get("id_gt"),
        )
        return json_response({"items": items, "has_more": has_more})

    async def get_operation(operation_id: str) -> Response:
        return json_response(state.get_operation(query.operation_id(operation_id)))

    async def get_operation_log(operation_id: str) -> Response:
        return json_response(state.operation_log(query.operation_id(operation_id)))

    app.add_api_route(f"{API_PREFIX}/operations", list_operations, methods=["GET"])
    app.add_api_route(f"{API_PREFIX}/operations/{{operation_id}}", get_operation, methods=["GET"])
    app.add_api_route(f"{API_PREFIX}/operations/{{operation_id}}/log", get_operation_log, methods=["GET"])
    return app


def _act(action: Callable[[str, str], dict[str, Any] | None], kind: str) -> Handler:
    """POST archive/close: 202 with the operation, or Toloka's empty 204 when there is nothing to do."""

    async def handler(object_id: str) -> Response:
        operation = action(kind, query.object_id(object_id, f"{kind}_id"))
        return Response(status_code=204) if operation is None else json_response(operation, status=202)

    return handler


def _read(state: EmulatorState, kind: str) -> Handler:
    async def handler(object_id: str) -> Response:
        return json_response(state.get_object(kind, query.object_id(object_id, f"{kind}_id")))

    return handler


def _list(state: EmulatorState, kind: str, statuses: tuple[str, ...] = POOL_STATUSES) -> Handler:
    async def handler(request: Request) -> Response:
        params = request.query_params
        query.choice(params, "sort", ("id",))
        items, has_more = state.list_objects(
            kind,
            limit=query.limit(params),
            project_id=query.optional_object_id(params, "project_id"),
            status=query.choice(params, "status", statuses),
            id_gt=query.optional_object_id(params, "id_gt"),
        )
        return json_response({"items": items, "has_more": has_more})

    return handler


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON answer, for the Toloka routes here and the control routes (``control.py``) alike."""
    return Response(json.dumps(body).encode(), status_code=status, media_type="application/json")


def _error(
    request: Request, status: int, code: str, message: str, payload: dict[str, Any] | None = None
) -> Response:
    body = error_body(request.scope.get(REQUEST_ID_KEY, ""), code, message, payload)
    return Response(body, status_code=status, media_type="application/json")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error(request, exc.status, exc.code, exc.message, exc.payload)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods, in Toloka's error shape rather than Starlette's."""
    assert isinstance(exc, HTTPException)
    route = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        return _error(request, 404, "DOES_NOT_EXIST", f"No such endpoint: {route}")
    if exc.status_code == 405:
        return _error(request, 405, "METHOD_NOT_ALLOWED", f"Method not allowed: {route}")
    return _error(request, exc.status_code, "HTTP_ERROR", str(exc.detail))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    payload = {
        str(error.get("loc", ("request",))[-1]): {"code": "VALUE_INVALID", "message": str(error.get("msg"))}
        for error in exc.errors()
    }
    return _error(request, 400, "VALIDATION_ERROR", "Validation failed", payload or None)
