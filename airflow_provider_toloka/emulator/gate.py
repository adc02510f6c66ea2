"""The ASGI layer in front of the routes: request ids, the request log, latency, rate limit, faults and auth.

A raw ASGI wrapper rather than Starlette middleware, for two reasons: it is cheap on the hot path, and a
``drop`` fault needs uvicorn's own ``send`` to reach the transport and close it without any answer.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from airflow_provider_toloka.emulator.errors import error_body, validation_payload
from airflow_provider_toloka.emulator.faults import Fault, FaultPlan, RateLimiter
from airflow_provider_toloka.emulator.requestlog import RequestLog, RequestRecord

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_KEY = "toloka.request_id"
_AUTH_SCHEMES = ("oauth", "apikey")
_PROXY_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_PLAIN_FAULTS = {
    "400": (400, "VALIDATION_ERROR", "Validation error (injected fault)"),
    "403": (403, "ACCESS_DENIED", "Access denied (injected fault)"),
    "429": (429, "TOO_MANY_REQUESTS", "Too many requests, slow down"),
    "MIN": (429, "TOO_MANY_REQUESTS", "Quota exceeded for this method: too many requests a minute"),
    "HOUR": (429, "TOO_MANY_REQUESTS", "Quota exceeded for this method: too many requests an hour"),
    "DAY": (429, "TOO_MANY_REQUESTS", "Quota exceeded for this method: too many requests a day"),
    "500": (500, "INTERNAL_ERROR", "Internal error (injected fault)"),
    "503": (503, "REMOTE_SERVICE_UNAVAILABLE", "Service temporarily unavailable (injected fault)"),
}
_PROXY_FAULTS = {"502": (502, "Bad Gateway"), "504": (504, "Gateway Time-out")}


ACCOUNT_HEADER = b"x-act-under-account-id"


class Gate:
    """Wraps the route app; its knobs (``latency``, ``tokens``, ``accounts``) may change while it runs.

    ``accounts``: the shared accounts the tokens' user is a member of. A request with
    ``X-Act-Under-Account-ID`` naming another one is refused 403 ``ACCESS_DENIED``, after authentication,
    as Toloka would refuse acting under an account the user does not belong to (its exact answer is not
    documented). Without the header nothing changes.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Iterable[str],
        faults: FaultPlan,
        limiter: RateLimiter,
        log: RequestLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.clock = clock  # the emulator's time, for RequestRecord.emulator_time
        self.tokens = frozenset(tokens)
        self.accounts: frozenset[str] = frozenset()
        self.latency = 0.0
        self.faults = faults
        self.limiter = limiter
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived, started, emulator_time = time.time(), time.perf_counter(), self.clock()
        request_id = str(uuid.uuid4())
        scope[REQUEST_ID_KEY] = request_id
        status = 0
        id_header = (b"x-request-id", request_id.encode())
        account = _header(scope, ACCOUNT_HEADER)
        user_agent = _header(scope, b"user-agent")

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self._dispatch(scope, receive, send_with_id, send)
        finally:
            duration = time.perf_counter() - started
            record = RequestRecord(
                scope["method"], scope["path"], status, arrived, duration, account, emulator_time, user_agent
            )
            self.log.append(record)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, raw_send: Send) -> None:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        request_id = scope[REQUEST_ID_KEY]
        if not self.limiter.allow():
            body = error_body(request_id, "TOO_MANY_REQUESTS", "Rate limit exceeded, retry after 1 second")
            await _answer(send, 429, body, retry_after=1)
            return
        fault = self.faults.take(scope["method"], scope["path"])
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        elif fault is not None and fault.kind == "drop":
            if fault.when == "after":
                await self._handle(scope, receive, _swallow)
            await _drop(raw_send)
            return
        elif fault is not None:
            await _answer_fault(send, fault, request_id)
            return
        await self._handle(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refuse_auth(scope)
        if refusal is not None:
            await _answer(send, 401, error_body(scope[REQUEST_ID_KEY], "AUTHENTICATION_ERROR", refusal))
            return
        account = _header(scope, ACCOUNT_HEADER)
        if account is not None and account not in self.accounts:
            message = f"The user is not a member of account {account!r} and cannot act under it"
            await _answer(send, 403, error_body(scope[REQUEST_ID_KEY], "ACCESS_DENIED", message))
            return
        await self.app(scope, receive, send)

    def _refuse_auth(self, scope: Scope) -> str | None:
        """Why the request is not authenticated, or ``None`` when it is."""
        header = _header(scope, b"authorization")
        if header is None:
            return "Authorization header is missing; send 'Authorization: OAuth <token>' or 'ApiKey <key>'"
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in _AUTH_SCHEMES:
            return f"Unknown authorization scheme {scheme!r}; use OAuth or ApiKey"
        if token.strip() not in self.tokens:
            return "The token is not valid for this account"
        return None


def _header(scope: Scope, name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in scope["headers"] if key == name), None)


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    retry_after: float | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        # HTTP allows whole seconds only (RFC 9110, delay-seconds): round up, as a server would.
        headers.append((b"retry-after", str(math.ceil(retry_after)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _answer_fault(send: Send, fault: Fault, request_id: str) -> None:
    if fault.kind in _PROXY_FAULTS:
        status, reason = _PROXY_FAULTS[fault.kind]
        page = _PROXY_PAGE.format(status=status, reason=reason).encode()
        await _answer(send, status, page, content_type=b"text/html", retry_after=fault.retry_after)
        return
    status, code, message = _PLAIN_FAULTS[fault.quota or fault.kind]
    payload = validation_payload("request", "VALUE_INVALID", message) if fault.kind == "400" else None
    if fault.quota is not None:
        payload = {"interval": fault.quota}
    body = error_body(request_id, code, message, payload)
    await _answer(send, status, body, retry_after=fault.retry_after)


async def _swallow(message: Message) -> None:
    """A ``send`` that loses the answer: the request was handled, the client will never hear how."""


async def _drop(raw_send: Send) -> None:
    """Close the connection with no answer, so the client sees a connection error rather than an HTTP status.

    uvicorn's ``send`` is a bound method of its request cycle, which holds the transport. Closing it and
    yielding once lets uvicorn notice the disconnect, so it does not try to answer 500 itself. Without that
    transport (some other server) fall back to a truncated answer: headers promising a body that never comes.
    """
    cycle = getattr(raw_send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.close()
        for _ in range(10):  # a few loop turns for connection_lost to mark the cycle disconnected
            if getattr(cycle, "disconnected", True):
                break
            await asyncio.sleep(0)
        return
    await raw_send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1024")]})
    raise ConnectionAbortedError("connection dropped by an injected fault")
