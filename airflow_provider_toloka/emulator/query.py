"""Reading path ids and query values as Toloka does: a bad value is a 400 VALIDATION_ERROR naming it."""

from __future__ import annotations

from collections.abc import Mapping

from airflow_provider_toloka.emulator.errors import invalid
from airflow_provider_toloka.emulator.model import is_object_id, is_operation_id

DEFAULT_LIMIT = 50
MAX_LIMIT = 300


def object_id(value: str, name: str = "id") -> str:
    if not is_object_id(value):
        raise invalid(name, f"{name} must be a string of digits, got {value!r}")
    return value


def operation_id(value: str) -> str:
    if not is_operation_id(value):
        raise invalid(
            "operation_id", f"operation id must be up to 64 letters, digits and dashes, got {value!r}"
        )
    return value


def limit(params: Mapping[str, str]) -> int:
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid(
            "limit", f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}", "VALUE_OUT_OF_RANGE"
        )
    return int(raw)


def choice(params: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    raw = params.get(name)
    if raw is not None and raw not in choices:
        raise invalid(name, f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def optional_object_id(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    return None if raw is None else object_id(raw, name)
