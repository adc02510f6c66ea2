"""The HTTP control API under ``/_emulator/``: steer an emulator that runs as its own process.

The Python API (``TolokaEmulator.add_pool``, ``inject_fault``, ``fail_next`` ...) needs the test in
the same process. Beside an Airflow in docker-compose or CI, a test in any language steers the
emulator over HTTP instead, with the same names:

- ``POST /_emulator/seed`` (body: a seed, as in a seed file), ``POST /_emulator/reset``
- ``POST /_emulator/faults`` (body: ``inject_fault``'s arguments), ``DELETE /_emulator/faults``
- ``POST /_emulator/fail_next`` (``{"kind", "object_id", "details"}``)
- ``POST /_emulator/clock/advance`` (``{"seconds": N}``), ``GET /_emulator/clock``
- ``GET /_emulator/requests`` (the request log), ``DELETE /_emulator/requests``
- ``GET /_emulator/settings``, ``PUT /_emulator/settings`` (``rate_limit``, ``latency``,
  ``operation_duration``, ``accounts``; only the keys given change)

These requests skip the Toloka side entirely: no Toloka token, no faults, no rate limit, no
latency, and they are not in the request log. With a control token set, each needs
``Authorization: Bearer <control token>``; the token is compared, never logged or echoed.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from airflow_provider_toloka.emulator.app import json_response
from airflow_provider_toloka.emulator.gate import ASGIApp, Receive, Scope, Send
from airflow_provider_toloka.emulator.requestlog import RequestRecord

PREFIX = "/_emulator"
_SETTINGS = ("rate_limit", "latency", "operation_duration", "accounts")
_FAULT_ARGS = ("kind", "count", "path", "method", "retry_after", "delay", "when", "quota")


class ControlError(Exception):
    """A control request the emulator cannot carry out: answered 400 with the reason."""


class Steerable(Protocol):
    """What the control API steers: ``TolokaEmulator``'s Python API, by the same names.

    A protocol rather than the class itself, so ``server`` imports ``control`` and never the reverse.
    ``rate_limit``, ``latency`` and ``operation_duration`` are read and set by name as well.
    """

    @property
    def inject_fault(self) -> Callable[..., None]: ...  # its arguments are checked by name below

    def load_seed_data(self, data: dict[str, Any]) -> None: ...
    def reset(self) -> None: ...
    def clear_faults(self) -> None: ...
    def fail_next(self, kind: str, object_id: str, details: dict[str, Any] | None = None) -> None: ...
    def advance_clock(self, seconds: float) -> None: ...
    def clear_requests(self) -> None: ...

    @property
    def now(self) -> dt.datetime: ...

    @property
    def accounts(self) -> list[str]: ...
    @accounts.setter
    def accounts(self, ids: Iterable[str]) -> None: ...

    @property
    def requests(self) -> Sequence[RequestRecord]: ...


def with_control(api: ASGIApp, emulator: Steerable, token: str | None = None) -> ASGIApp:
    """``api`` with the control routes in front of it, under ``/_emulator/``."""
    control = _control_app(emulator, token)

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await control(scope, receive, send)
        else:
            await api(scope, receive, send)

    return route


def _control_app(emulator: Steerable, token: str | None) -> Starlette:
    def endpoint(action: Callable[[Any], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if token is not None and not _authorized(request, token):
                refusal = "control API: send 'Authorization: Bearer <control token>'"
                return json_response({"error": refusal}, 401)
            body = await request.body()
            try:
                data = json.loads(body) if body else {}
                result = action(data)
            except (ControlError, ValueError, TypeError, KeyError) as error:
                return json_response({"error": str(error)}, 400)
            return json_response({"ok": True} if result is None else result)

        return handle

    def seed(data: Any) -> None:
        emulator.load_seed_data(data)

    def reset(data: Any) -> None:
        emulator.reset()

    def add_fault(data: Any) -> None:
        emulator.inject_fault(**_only(data, _FAULT_ARGS, required=("kind",)))

    def clear_faults(data: Any) -> None:
        emulator.clear_faults()

    def fail_next(data: Any) -> None:
        emulator.fail_next(**_only(data, ("kind", "object_id", "details"), required=("kind", "object_id")))

    def advance(data: Any) -> dict[str, Any]:
        emulator.advance_clock(float(_only(data, ("seconds",), required=("seconds",))["seconds"]))
        return clock(data)

    def clock(data: Any) -> dict[str, Any]:
        return {"now": emulator.now.isoformat()}

    def requests(data: Any) -> dict[str, Any]:
        return {"items": [record._asdict() for record in emulator.requests]}

    def clear_requests(data: Any) -> None:
        emulator.clear_requests()

    def settings(data: Any) -> dict[str, Any]:
        return {name: getattr(emulator, name) for name in _SETTINGS}

    def change_settings(data: Any) -> dict[str, Any]:
        for name, value in _only(data, _SETTINGS).items():
            if name == "accounts":
                emulator.accounts = value  # refuses anything but a list of ids itself
                continue
            if value is not None and not isinstance(value, int | float):
                raise ControlError(
                    f"{name} must be a number of seconds (or requests per second), got {value!r}"
                )
            if name == "latency" and (value is None or value < 0):
                raise ControlError(f"latency must be 0 or more seconds, got {value!r}")
            if name == "rate_limit" and value is not None and value <= 0:
                raise ControlError(f"rate_limit must be above 0 or null (unlimited), got {value!r}")
            setattr(emulator, name, value)
        return settings(data)

    routes = [
        Route(f"{PREFIX}/seed", endpoint(seed), methods=["POST"]),
        Route(f"{PREFIX}/reset", endpoint(reset), methods=["POST"]),
        Route(f"{PREFIX}/faults", endpoint(add_fault), methods=["POST"]),
        Route(f"{PREFIX}/faults", endpoint(clear_faults), methods=["DELETE"]),
        Route(f"{PREFIX}/fail_next", endpoint(fail_next), methods=["POST"]),
        Route(f"{PREFIX}/clock/advance", endpoint(advance), methods=["POST"]),
        Route(f"{PREFIX}/clock", endpoint(clock), methods=["GET"]),
        Route(f"{PREFIX}/requests", endpoint(requests), methods=["GET"]),
        Route(f"{PREFIX}/requests", endpoint(clear_requests), methods=["DELETE"]),
        Route(f"{PREFIX}/settings", endpoint(settings), methods=["GET"]),
        Route(f"{PREFIX}/settings", endpoint(change_settings), methods=["PUT"]),
    ]
    return Starlette(routes=routes)


def _only(data: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body's keys, refusing unknown and missing ones by name."""
    if not isinstance(data, dict):
        raise ControlError(f"the body must be a JSON object with {', '.join(allowed)}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ControlError(f"unknown key(s) {unknown}; expected some of {', '.join(allowed)}")
    missing = [name for name in required if name not in data]
    if missing:
        raise ControlError(f"missing key(s) {missing}")
    return dict(data)


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
