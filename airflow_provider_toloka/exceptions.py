"""Errors a DAG author can catch and act on.

They subclass ``AirflowException`` so Airflow treats them as ordinary task failures (and retries
them according to the task's ``retries``), while their text names the object, Toloka's error code
and request id, and the next step, so the log line alone is enough to fix the problem.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.exceptions import AirflowException

# This module imports nothing from the package, so any module can import it (tests/unit/test_import_order.py).

# Which unmet precondition each archive conflict code stands for, phrased as the fix.
_CONFLICT_HINTS = {
    "INAPPROPRIATE_STATUS": "close the object first: only CLOSED pools and trainings can be archived",
    "THERE_IS_REJECTED_ASSIGNMENT": (
        "the pool has rejected tasks: it can be archived 9 days after the last rejection"
    ),
    "TRAINING_ARCHIVE_CONFLICT": "archive the main pools linked to this training first",
    "UNARCHIVED_POOLS_CONFLICT": "archive every pool and training of the project first",
    "OPERATION_ALREADY_EXISTS": "an operation on this object is still running: wait for it to finish",
    "POOL_LOCKED_BY_ANOTHER_OPERATION": "another operation holds the pool: wait for it to finish",
}
# A 409 whose code is not above (CONFLICT_STATE, or one Toloka adds later).
_OTHER_CONFLICT_HINT = (
    "the object's status does not allow this: check it (and its pools' and trainings') in Toloka"
)
# The windows of Toloka's quotas (``payload.interval`` of a 429), in seconds, as toloka-kit reads them. An
# HOUR or DAY quota is not waited out by retries: see ``TolokaQuotaExhausted``.
QUOTA_WINDOWS = {"MIN": 60.0, "HOUR": 3600.0, "DAY": 86400.0}
LONG_QUOTAS = frozenset({"HOUR", "DAY"})


def quota_named(status_code: int, payload: Any) -> str | None:
    """The quota a 429's ``payload.interval`` names (``MIN``, ``HOUR``, ``DAY``); ``None`` if none."""
    if status_code != 429 or not isinstance(payload, dict):
        return None
    interval = payload.get("interval")
    return str(interval).upper() if interval else None


class TolokaError(AirflowException):
    """Base class of every error this provider raises."""


class TolokaApiError(TolokaError):
    """Toloka answered a request with a non-2xx status.

    Carries Toloka's own error fields so callers can branch on ``code`` rather than parse text.
    """

    def __init__(
        self,
        *,
        method: str,
        path: str,
        status_code: int,
        code: str | None = None,
        message: str | None = None,
        request_id: str | None = None,
        payload: Any = None,
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.path = path
        # AirflowException types this as HTTPStatus; Toloka and proxies may send codes outside it.
        self.status_code = status_code  # type: ignore[assignment]
        self.code = code
        self.message = message
        self.request_id = request_id
        self.payload = payload
        self.retry_after = retry_after
        super().__init__(self._describe())

    @property
    def quota(self) -> str | None:
        """Which quota a 429 says ran out (``payload.interval``: ``MIN``, ``HOUR``, ``DAY``).

        ``None`` for any other status and for the per-second rate limit, whose 429 names none.
        """
        return quota_named(self.status_code, self.payload)

    @property
    def hint(self) -> str | None:
        """What the user should do about this refusal: one for every 400, 401, 403, 404 and 409.

        Other statuses (a 5xx behind ``TolokaRetriesExhausted``, a proxy's 405 or 413) get none: the
        status and the message are all there is to go on.
        """
        if self.status_code == 400:
            return "Toloka refused a value in the request: check the id or parameter its message names"
        if self.status_code == 401:
            return "check the token in the Toloka connection and its auth_scheme (OAuth or ApiKey)"
        if self.status_code == 403:
            return (
                "the token's account may not touch this object: use a token (OAuth or ApiKey) of the "
                "requester account that owns it, issued for the same environment (sandbox or production); "
                "with act_under_account_id, check that the token's user is a member of that account"
            )
        if self.status_code == 404:
            return "check the id: Toloka does not know it (or the token's account cannot see it)"
        if self.status_code == 409:
            return _CONFLICT_HINTS.get(self.code or "", _OTHER_CONFLICT_HINT)
        return None

    def _describe(self) -> str:
        text = f"Toloka refused {self.method} {self.path}: HTTP {self.status_code}"
        if self.code:
            text += f" {self.code}"
        if self.message:
            text += f": {self.message}"
        if self.payload:
            text += f" {self.payload}"
        if self.request_id:
            text += f" (request_id {self.request_id})"
        if self.hint:
            text += f". Hint: {self.hint}"
        return text


class TolokaQuotaExhausted(TolokaApiError):
    """A 429 for an HOUR or DAY quota: retrying within seconds cannot help, so it fails at once.

    The task waits for the quota only with ``wait_out_quota=True`` and when the reset falls within its own
    deadline. Toloka names the quota (``payload.interval``) but not when it resets: ``resets_in`` is its
    ``Retry-After`` when it sends one, else the whole window (an hour, a day) as toloka-kit assumes, so it
    is the latest the quota can reset, never earlier than it does.

    :param resets_in: seconds from the answer until the quota has reset.
    """

    def __init__(self, *, resets_in: float, **kwargs: Any) -> None:
        self.resets_in = resets_in
        self.resets_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=resets_in)
        super().__init__(**kwargs)

    @property
    def hint(self) -> str | None:
        return (
            f"Toloka's {self.quota} quota for this request ran out; it resets by "
            f"{self.resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')} (in {self.resets_in:.0f} s at the latest). "
            "Run the task again after then, or pass wait_out_quota=True to wait for it when the task's "
            "execution_timeout (or timeout) leaves room"
        )


class TolokaRetriesExhausted(TolokaError):
    """A request kept failing with retryable faults (429, 5xx, connection errors) past the retry budget."""

    def __init__(self, *, method: str, path: str, attempts: int, last_fault: str) -> None:
        self.method = method
        self.path = path
        self.attempts = attempts
        self.last_fault = last_fault
        super().__init__(
            f"Toloka request {method} {path} failed after {attempts} attempts; last fault: {last_fault}. "
            "Toloka may be overloaded or unreachable: retry the task later, or raise max_retries "
            "in the hook or the connection extra."
        )


class TolokaOperationFailed(TolokaError):
    """A Toloka operation ended in ``FAIL``."""

    def __init__(self, operation: dict[str, Any]) -> None:
        self.operation = operation
        details = operation.get("details") or {}
        log = operation.get("log") or []
        super().__init__(
            f"Toloka operation {operation.get('id')} ({operation.get('type')}, "
            f"parameters {operation.get('parameters') or {}}) ended in FAIL"
            + (f"; details: {details}" if details else "")
            + (f"; log: {log}" if log else "")
        )


class TolokaOperationTimeout(TolokaError):
    """An operation was still not finished when the caller's time ran out."""

    def __init__(self, operation: dict[str, Any], timeout: float) -> None:
        self.operation = operation
        self.timeout = timeout
        super().__init__(
            f"Toloka operation {operation.get('id')} ({operation.get('type')}) is still "
            f"{operation.get('status')} at {operation.get('progress', 0)}% after {timeout:g} s of waiting. "
            "It keeps running in Toloka: wait for it with TolokaOperationSensor, or raise the timeout."
        )


class TolokaCascadeBlocked(TolokaError):
    """A cascade archive found objects it cannot archive; nothing was changed."""

    def __init__(self, project_id: str, blockers: list[Any]) -> None:
        self.project_id = project_id
        self.blockers = blockers
        lines = "\n".join(f"  - {blocker}" for blocker in blockers)
        super().__init__(
            f"Cannot archive project {project_id}: {len(blockers)} object(s) stand in the way, and "
            f"nothing was changed:\n{lines}"
        )


class TolokaCascadeFailed(TolokaError):
    """A cascade archive stopped part-way; ``summary`` says what was archived and what was not.

    Retrying the task continues: archived objects are skipped, running archives are waited on.
    """

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        self.summary = summary
        super().__init__(message)


class TolokaCascadeHeldBack(TolokaCascadeFailed):
    """A cascade archived all it could; the rest waits only on refusals that time clears.

    Raised instead of a plain ``TolokaCascadeFailed`` when every failure was such a refusal: a pool
    in Toloka's 9-day rejection window (``THERE_IS_REJECTED_ASSIGNMENT``), and a training or the
    project refused only because of such pools (``TRAINING_ARCHIVE_CONFLICT``,
    ``UNARCHIVED_POOLS_CONFLICT``). A retry after the window finishes the job.

    :param codes: the Toloka error codes met.
    """

    def __init__(self, message: str, summary: dict[str, Any], codes: set[str]) -> None:
        self.codes = set(codes)
        super().__init__(message, summary)


class TolokaNotArchivableInTime(TolokaError):
    """``wait_until_archivable`` ran out of ``archivable_timeout`` while Toloka still refused the archive."""

    def __init__(
        self,
        *,
        what: str,
        code: str,
        first_refused_at: str,
        last_check: str,
        checks: int,
        timeout: float,
        refusal: Exception,
    ) -> None:
        self.code = code
        self.first_refused_at = first_refused_at
        self.last_check = last_check
        self.checks = checks
        self.timeout = timeout
        self.refusal = refusal
        super().__init__(
            f"{what} is still not archivable after archivable_timeout={timeout:g} s: Toloka answered {code} "
            f"first at {first_refused_at} and at the last check, {last_check} ({checks} checks). "
            f"Last answer: {refusal}\nFix what stands in the way, or raise archivable_timeout "
            "(None waits without limit), then clear the task to wait again."
        )


# The failures a housekeeping error lists; the report in XCom has them all.
_SHOWN_PROJECTS = 20


class TolokaHousekeepingFailed(TolokaError):
    """Some projects failed for reasons other than the skips housekeeping reports; the rest went on.

    ``summary`` is the whole report (also pushed to XCom as the task's return value).
    """

    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary
        failed: dict[str, str] = summary["failed"]
        listed = list(failed.items())[:_SHOWN_PROJECTS]
        shown = "\n".join(f"  - project {pid}: {error}" for pid, error in listed)
        more = f"\n  ... and {len(failed) - _SHOWN_PROJECTS} more" if len(failed) > _SHOWN_PROJECTS else ""
        counts = summary["counts"]
        super().__init__(
            f"Housekeeping failed for {len(failed)} of {counts['checked']} project(s) "
            f"({counts['archived']} archived, {counts['skipped']} skipped, the rest went on):\n"
            f"{shown}{more}\n"
            "Fix the cause and run the task again: archived projects are no longer listed, and a "
            "project archived part-way continues where it stopped."
        )
