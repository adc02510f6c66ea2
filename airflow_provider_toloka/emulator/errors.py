"""Toloka's error body, shared by the rules (which raise) and the HTTP layers (which answer)."""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """A refusal the API answers with a Toloka error body instead of a result.

    The rules raise it deep inside the state so every HTTP layer answers the same refusal the same way.
    """

    def __init__(self, status: int, code: str, message: str, payload: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.payload = payload


def error_body(request_id: str, code: str, message: str, payload: dict[str, Any] | None = None) -> bytes:
    """Encode the body Toloka sends with every error; ``payload`` only when there is one, as Toloka does."""
    body: dict[str, Any] = {"request_id": request_id, "code": code, "message": message}
    if payload is not None:
        body["payload"] = payload
    return json.dumps(body).encode()


def not_found(kind: str, object_id: str) -> ApiError:
    """The 404 for an object or operation the emulator does not hold."""
    return ApiError(404, "DOES_NOT_EXIST", f"{kind.capitalize()} {object_id} does not exist")


def invalid(field: str, message: str, code: str = "VALUE_INVALID") -> ApiError:
    """The 400 for a malformed id or query value, with Toloka's ``payload``: ``{field: {code, message}}``.

    toloka-kit reads the invalid fields from the payload's keys (``ValidationApiError.invalid_fields``).
    """
    return ApiError(
        400, "VALIDATION_ERROR", f"Validation failed: {message}", validation_payload(field, code, message)
    )


def validation_payload(field: str, code: str, message: str) -> dict[str, Any]:
    return {field: {"code": code, "message": message}}
