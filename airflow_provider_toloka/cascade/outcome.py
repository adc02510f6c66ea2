"""A deferred cascade's outcome as a trigger event, and back to what the worker raises or returns.

The triggerer carries out the cascade (``triggers/cascade.py``); the task resumes only to record what
happened. So the event carries everything the task needs, and the task turns it back into exactly what
the same run in the worker gives: the summary, or ``TolokaCascadeHeldBack``, ``TolokaCascadeFailed``
(a timeout included) or ``TolokaCascadeBlocked`` with the same message and summary.

The summary goes in compact form (``pack``: JSON, zlib, base64): the event travels from the trigger
to the triggerer's supervisor, to the database (the task instance's ``next_kwargs``) and back to the
worker, and a summary lists every archived object with its operation id. Ids and keys repeat, so they
compress well: ``tests/unit/test_outcome.py`` packs a cascade of 10,000 archived pools and checks the
event's size.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any, Literal, TypedDict

from airflow_provider_toloka.exceptions import (
    TolokaCascadeBlocked,
    TolokaCascadeFailed,
    TolokaCascadeHeldBack,
    TolokaError,
)

CascadeStatus = Literal["success", "held_back", "failed", "blocked", "error"]
CASCADE_STATUSES: tuple[CascadeStatus, ...] = ("success", "held_back", "failed", "blocked", "error")


class CascadeEvent(TypedDict, total=False):
    """``status``: how the run ended; ``packed``: the summary (``pack``); the rest only where it applies."""

    status: CascadeStatus
    packed: str
    message: str
    codes: list[str]
    project_id: str
    blockers: list[str]


def pack(data: Any) -> str:
    """JSON data in compact form, as text (a trigger event holds only JSON values)."""
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def unpack(text: str) -> Any:
    return json.loads(zlib.decompress(base64.b64decode(text)))


def cascade_event(summary: dict[str, Any] | None = None, error: BaseException | None = None) -> CascadeEvent:
    """The event for a run that returned ``summary`` or raised ``error``."""
    if error is None:
        return {"status": "success", "packed": pack(summary)}
    if isinstance(error, TolokaCascadeHeldBack):
        return {
            "status": "held_back",
            "message": str(error),
            "packed": pack(error.summary),
            "codes": sorted(error.codes),
        }
    if isinstance(error, TolokaCascadeFailed):
        return {"status": "failed", "message": str(error), "packed": pack(error.summary)}
    if isinstance(error, TolokaCascadeBlocked):
        blockers = [str(blocker) for blocker in error.blockers]
        return {
            "status": "blocked",
            "message": str(error),
            "project_id": error.project_id,
            "blockers": blockers,
        }
    return {"status": "error", "message": f"{type(error).__name__}: {error}"}


def summary_from_event(event: Any) -> dict[str, Any]:
    """The summary of a ``success`` event; any other event raises what the run in the worker raises."""
    if not isinstance(event, dict) or event.get("status") not in CASCADE_STATUSES:
        raise TolokaError(
            f"Expected an event from TolokaCascadeTrigger with a status among {', '.join(CASCADE_STATUSES)}, "
            f"got {event!r:.300}; the trigger and the task may come from different provider versions."
        )
    status = event["status"]
    message = str(event.get("message", ""))
    if status == "success":
        return dict(unpack(event["packed"]))
    if status == "held_back":
        raise TolokaCascadeHeldBack(message, unpack(event["packed"]), set(event.get("codes") or ()))
    if status == "failed":
        raise TolokaCascadeFailed(message, unpack(event["packed"]))
    if status == "blocked":
        raise TolokaCascadeBlocked(str(event.get("project_id")), list(event.get("blockers") or ()))
    raise TolokaError(f"The deferred run failed in the triggerer: {message}")
