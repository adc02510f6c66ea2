"""Turning one HTTP answer from Toloka into data or the provider's exceptions.

The sync hook (``requests``) and the async hook (``httpx``) both read answers here, so a redirect, a
refusal, a 204 or a proxy's HTML page means the same thing whichever way a task waits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_toloka import metrics
from airflow_provider_toloka.exceptions import (
    LONG_QUOTAS,
    QUOTA_WINDOWS,
    TolokaApiError,
    TolokaError,
    TolokaQuotaExhausted,
    quota_named,
)
from airflow_provider_toloka.retry import MAX_RETRY_AFTER, parse_retry_after

# Toloka documents a page size (``limit``) of at most 300; fewer, larger pages mean fewer requests.
PAGE_LIMIT = 300


def read_answer(
    method: str,
    path: str,
    *,
    status_code: int,
    headers: Mapping[str, str],
    text: str,
    reason: str,
    api_url: str,
    scrub: Callable[[str], str],
) -> Any:
    """The JSON body of a 2xx answer, ``None`` for 204; raise for redirects, refusals and non-JSON bodies.

    :param scrub: hides the token should a server or proxy ever echo it back.
    """
    metrics.request_answered(method, status_code)
    if status_code == 204:
        return None
    if 300 <= status_code < 400:
        raise TolokaError(
            f"Toloka answered {method} {path} with HTTP {status_code} redirecting to "
            f"{headers.get('Location')!r}; redirects are not followed so the token never "
            f"leaves {api_url}. Check the connection's host."
        )
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if status_code >= 400:
        raise api_error(
            method=method,
            path=path,
            status_code=status_code,
            body=body,
            headers=headers,
            reason=reason,
            scrub=scrub,
        )
    if body is None:
        raise TolokaError(
            f"Toloka answered {method} {path} with HTTP {status_code} and a body that is not JSON "
            f"({headers.get('Content-Type')}): {scrub(text[:200])!r}"
        )
    return body


def api_error(
    *,
    method: str,
    path: str,
    status_code: int,
    body: Any,
    headers: Mapping[str, str],
    reason: str,
    scrub: Callable[[str], str],
) -> TolokaApiError:
    """Read Toloka's error body (or a proxy's non-JSON page) the same way for requests and httpx.

    It lives here, not on ``TolokaApiError``, so ``exceptions`` needs nothing from ``retry``.

    :param body: the decoded JSON body, or ``None`` when it was not JSON.
    :param scrub: hides the token should a server or proxy echo it back.
    """
    if not isinstance(body, dict):
        body = {"message": f"non-JSON answer ({headers.get('Content-Type') or 'no content type'})"}
    # Uncapped first: an hour or day quota's Retry-After says when it resets, however far off.
    told = parse_retry_after(headers.get("Retry-After"), maximum=None)
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "status_code": status_code,
        "code": body.get("code"),
        "message": scrub(str(body.get("message") or reason or "")),
        "request_id": body.get("request_id") or headers.get("X-Request-Id"),
        "payload": body.get("payload"),
        "retry_after": None if told is None else min(told, MAX_RETRY_AFTER),
    }
    quota = quota_named(status_code, fields["payload"])
    if status_code == 429:
        metrics.refused_for_rate(quota)
    if quota in LONG_QUOTAS:
        return TolokaQuotaExhausted(resets_in=QUOTA_WINDOWS[quota] if told is None else told, **fields)
    return TolokaApiError(**fields)
