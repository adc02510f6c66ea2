"""The only code in the provider that speaks HTTP to Toloka.

Operators, the sensor and the cascade ask this hook for archive, close, read and wait; none of
them builds a URL or reads a status code. The hook owns the base URL, the auth header, retries
with back-off, and turning answers (including Toloka's error bodies) into data or exceptions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import pendulum
import requests
from airflow.providers.common.compat.sdk import BaseHook
from tenacity import Retrying

from airflow_provider_toloka import compat, metrics
from airflow_provider_toloka.connection import DEFAULT_TIMEOUT, TolokaConnectionSettings
from airflow_provider_toloka.exceptions import (
    TolokaApiError,
    TolokaError,
    TolokaOperationFailed,
    TolokaOperationTimeout,
    TolokaQuotaExhausted,
)
from airflow_provider_toloka.hooks.answer import PAGE_LIMIT, read_answer
from airflow_provider_toloka.operation_status import OperationStatus, describe, operation_status, poll_delays
from airflow_provider_toloka.outage import Outage
from airflow_provider_toloka.quota import quota_fits
from airflow_provider_toloka.retry import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_MAX_WAIT,
    DEFAULT_RETRY_MIN_WAIT,
    is_retryable,
    parse_retry_after,
    release,
    retry_policy,
)
from airflow_provider_toloka.validation import (
    validate_count,
    validate_id,
    validate_optional_seconds,
    validate_seconds,
)

if TYPE_CHECKING:
    from airflow_provider_toloka.budget import SharedBudget
    from airflow_provider_toloka.throttle import Throttle

ObjectKind = Literal["project", "pool", "training"]

PROJECT_STATUSES = ("ACTIVE", "ARCHIVED")

_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class TolokaHook(BaseHook):
    """Talk to the Toloka API through an Airflow connection of type ``toloka``.

    The connection is read on first use, not in ``__init__``, so building a hook at DAG-parse time
    costs nothing and never touches the network or the secrets backend.

    :param toloka_conn_id: Airflow connection holding the token (password) and, in extra,
        ``environment`` (``production``/``sandbox``), ``auth_scheme`` (``OAuth``/``ApiKey``),
        ``max_retries``, ``timeout``, ``requests_per_second`` and ``rate_limit_storage_uri`` (a budget
        shared by every process, ``budget.SharedBudget``) with its ``rate_limit_storage_password``; a
        ``host`` overrides the environment.
    :param timeout: seconds to wait for one HTTP answer (default: connection extra, else 30).
    :param max_retries: retries of a request after a 429, 5xx, dropped connection or time-out
        (default: connection extra, else 5). Other 4xx answers are never retried.
    :param retry_min_wait: first back-off delay in seconds; it doubles up to ``retry_max_wait``.
    :param retry_max_wait: longest back-off delay in seconds (a ``Retry-After`` header wins).
    :param throttle: consulted before every request and told every answer's status, so threads
        sharing one (``SharedThrottle``) slow down together on a 429 instead of each on its own. A
        connection's ``requests_per_second`` extra sets its pace from the first request.
    :param max_connections: connections to Toloka kept open for reuse. Threads sharing the hook beyond
        this number open and drop a connection per request, so size it to the threads.
    :param wait_out_quota: wait for an HOUR or DAY quota to reset (``TolokaQuotaExhausted``) when it
        resets before ``deadline``, instead of raising it at once.
    :param deadline: Unix time by which the task must be done (``None``: no limit); the operators set it
        from their ``execution_timeout`` and ``timeout``.
    """

    conn_name_attr = "toloka_conn_id"
    default_conn_name = "toloka_default"
    conn_type = "toloka"
    hook_name = "Toloka"

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's Toloka fields on Airflow 3.0 and 3.1; 3.2+ reads ``conn-fields`` and skips this."""
        return compat.connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hidden and relabelled fields on Airflow 3.0 and 3.1; 3.2+ reads ``ui-field-behaviour``."""
        return compat.ui_field_behaviour()

    def __init__(
        self,
        toloka_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_min_wait: float = DEFAULT_RETRY_MIN_WAIT,
        retry_max_wait: float = DEFAULT_RETRY_MAX_WAIT,
        throttle: Throttle | None = None,
        max_connections: int = 10,
        wait_out_quota: bool = False,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.toloka_conn_id = toloka_conn_id
        self._timeout = validate_optional_seconds("timeout", timeout)
        self._max_retries = None if max_retries is None else validate_count("max_retries", max_retries)
        self.retry_min_wait = validate_seconds("retry_min_wait", retry_min_wait)
        self.retry_max_wait = validate_seconds("retry_max_wait", retry_max_wait)
        self.throttle = throttle
        self.max_connections = validate_count("max_connections", max_connections, minimum=1)
        self.wait_out_quota = wait_out_quota
        self.deadline = deadline
        # What retries and waits sleep with (``None``: ``time.sleep``); tests count the waits instead.
        self.sleep: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(toloka_conn_id={self.toloka_conn_id!r})"

    # -- connection ---------------------------------------------------------------------------

    @cached_property
    def settings(self) -> TolokaConnectionSettings:
        """The parsed connection; read once per hook."""
        return TolokaConnectionSettings.from_connection(self.get_connection(self.toloka_conn_id))

    @property
    def timeout(self) -> float:
        return self._timeout or self.settings.timeout or DEFAULT_TIMEOUT

    @property
    def max_retries(self) -> int:
        if self._max_retries is not None:
            return self._max_retries
        configured = self.settings.max_retries
        return DEFAULT_MAX_RETRIES if configured is None else configured

    def get_conn(self) -> requests.Session:
        """The hook's one ``requests.Session`` (connection pooling across polls)."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update(self.settings.headers)
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.max_connections)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    # -- wire ---------------------------------------------------------------------------------

    def is_transient(self, error: BaseException) -> bool:
        """Whether a failed request may well succeed if sent again: 429, 5xx, dropped or timed out."""
        return is_retryable(error, _TRANSIENT_ERRORS)

    def _request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, retry: bool = True
    ) -> Any:
        """Send one request, retrying transient faults; return the JSON body, or ``None`` on 204.

        With ``retry=False`` the request is sent once and any fault is raised as it came, for the waits
        that ride out outages themselves (``outage.Outage``).
        """
        if not retry:
            return self._send(method, path, params)
        retrying = Retrying(
            **retry_policy(
                method=method,
                path=path,
                max_retries=self.max_retries,
                min_wait=self.retry_min_wait,
                max_wait=self.retry_max_wait,
                transient=_TRANSIENT_ERRORS,
                log=self.log,
                wait_out_quota=self.wait_out_quota,
                deadline=self.deadline,
            ),
            sleep=self.sleep or time.sleep,
        )
        try:
            return retrying(self._send, method, path, params)
        finally:
            release(retrying)

    @cached_property
    def _throttle(self) -> Throttle | None:
        """The given throttle, keeping to the connection's ``requests_per_second`` when it declares one.

        A hook given none gets its own ``SharedThrottle`` then, so a plain archive or a sensor is paced too.
        """
        rate = self.settings.requests_per_second
        if rate is None:
            return self.throttle
        from airflow_provider_toloka.throttle import SharedThrottle

        throttle = self.throttle if self.throttle is not None else SharedThrottle()
        throttle.keep_to(rate)
        return throttle

    @cached_property
    def _budget(self) -> SharedBudget | None:
        """The account's budget shared with every process, when the connection names a store."""
        if not self.settings.rate_limit_storage_uri:
            return None
        from airflow_provider_toloka.budget import budget_for

        return budget_for(self.settings)

    def _send(self, method: str, path: str, params: dict[str, Any] | None) -> Any:
        throttle = self._throttle
        if throttle is not None:
            throttle.before_request()
        budget = self._budget
        if budget is not None:
            budget.take(self.sleep or time.sleep, ahead=bool(getattr(throttle, "is_ahead", False)))
        response = self._session.request(
            method,
            self.settings.api_url + path,
            params=params,
            timeout=(min(10.0, self.timeout), self.timeout),
            # A redirect could carry the token to a host the user never configured.
            allow_redirects=False,
        )
        long_quota = False
        try:
            return read_answer(
                method,
                path,
                status_code=response.status_code,
                headers=response.headers,
                text=response.text,
                reason=response.reason,
                api_url=self.settings.api_url,
                scrub=self.settings.scrub,
            )
        except TolokaQuotaExhausted:
            # An hour or day quota says nothing about the pace: pausing every thread would not bring it back.
            long_quota = True
            raise
        finally:
            if throttle is not None and not long_quota:
                throttle.after_response(
                    response.status_code, parse_retry_after(response.headers.get("Retry-After"))
                )

    # -- archive ------------------------------------------------------------------------------

    def archive_project(self, project_id: str | int) -> dict[str, Any] | None:
        """Start archiving a project; ``None`` if it is already archived."""
        return self.archive("project", project_id)

    def archive_pool(self, pool_id: str | int) -> dict[str, Any] | None:
        """Start archiving a closed pool; ``None`` if it is already archived."""
        return self.archive("pool", pool_id)

    def archive_training(self, training_id: str | int) -> dict[str, Any] | None:
        """Start archiving a closed training; ``None`` if it is already archived."""
        return self.archive("training", training_id)

    def close_pool(self, pool_id: str | int) -> dict[str, Any] | None:
        """Start closing a pool; ``None`` if it is already closed."""
        return self._start("close", "pool", pool_id)

    def close_training(self, training_id: str | int) -> dict[str, Any] | None:
        """Start closing a training; ``None`` if it is already closed."""
        return self._start("close", "training", training_id)

    def archive(self, kind: ObjectKind, object_id: str | int) -> dict[str, Any] | None:
        """Start archiving a ``project``, ``pool`` or ``training``; ``None`` if already archived."""
        return self._start("archive", kind, object_id)

    def _start(
        self, action: str, kind: ObjectKind, object_id: str | int, *, ask_again: bool = True
    ) -> dict[str, Any] | None:
        """POST an archive/close; if one is already running (e.g. a retried task), return that one.

        A retry can meet its own earlier request: the POST went through but its answer was lost,
        or the worker died while waiting. Toloka then refuses a second operation; waiting on the
        running one is what the user wanted, so the refusal is turned into that operation.
        """
        oid = validate_id(f"{kind}_id", object_id)
        try:
            operation = self._request("POST", f"/{kind}s/{oid}/{action}")
        except TolokaApiError as error:
            if error.status_code != 409 or error.code != "OPERATION_ALREADY_EXISTS":
                raise
            running = self.find_active_operation(f"{kind.upper()}.{action.upper()}", f"{kind}_id", oid)
            if running is None:
                if not ask_again:
                    raise
                # It ended between the refusal and the look-up: asking again answers 204 or starts anew.
                return self._start(action, kind, oid, ask_again=False)
            self.log.info("An operation for %s %s is already running: %s", kind, oid, describe(running))
            return running
        if operation is not None and not (isinstance(operation, dict) and operation.get("id")):
            raise TolokaError(
                f"Toloka answered POST /{kind}s/{oid}/{action} without an operation id: {operation!r:.200}"
            )
        if operation is not None and action == "archive":
            metrics.archive_started(kind)
        return operation

    def find_active_operation(self, op_type: str, param: str, object_id: str) -> dict[str, Any] | None:
        """The newest PENDING or RUNNING operation of ``op_type`` whose parameters name the object.

        PENDING is read first: an operation only moves forward, so one that starts running between the
        two reads is still found by the second, where the other order would miss it.
        """
        for status in (OperationStatus.PENDING, OperationStatus.RUNNING):
            params = {"type": op_type, "status": status.value, "sort": "-submitted", "limit": PAGE_LIMIT}
            page = self._request("GET", "/operations", params=params) or {}
            for operation in page.get("items", []):
                if str((operation.get("parameters") or {}).get(param)) == object_id:
                    return dict(operation)
        return None

    def recent_operations(self, op_type: str, *, retry: bool = True) -> list[dict[str, Any]]:
        """The newest operations of one type (``POOL.ARCHIVE``), newest first: one page, one request.

        Lets a caller waiting on many operations read them all at once instead of one by one.

        :param retry: retry transient faults within the hook's budget; ``False`` sends once and raises
            the fault as it came, for a caller that waits out outages itself.
        """
        params = {"type": op_type, "sort": "-submitted", "limit": PAGE_LIMIT}
        return list((self._request("GET", "/operations", params=params, retry=retry) or {}).get("items", []))

    # -- read ---------------------------------------------------------------------------------

    def get_operation(self, operation_id: str, *, retry: bool = True) -> dict[str, Any]:
        """One operation. ``retry=False``: send once, raise a fault as it came (``recent_operations``)."""
        path = f"/operations/{validate_id('operation_id', operation_id)}"
        return self._request("GET", path, retry=retry)

    def get_operation_log(self, operation_id: str) -> list[dict[str, Any]]:
        """Toloka's per-object log of an operation (``[]`` if empty): why a FAIL failed, for its error."""
        return self._request("GET", f"/operations/{validate_id('operation_id', operation_id)}/log") or []

    def get_project(self, project_id: str | int) -> dict[str, Any]:
        """The project as Toloka returns it: the cascade reads its status before planning.

        The id is checked before the request (a bad one names the parameter); transient faults retry.
        """
        return self._request("GET", f"/projects/{validate_id('project_id', project_id)}")

    def get_pool(self, pool_id: str | int) -> dict[str, Any]:
        """The pool as Toloka returns it: its ``project_id`` places the pool's page in the web UI."""
        return self._request("GET", f"/pools/{validate_id('pool_id', pool_id)}")

    def get_training(self, training_id: str | int) -> dict[str, Any]:
        """The training as Toloka returns it: its ``project_id`` places its page in the web UI."""
        return self._request("GET", f"/trainings/{validate_id('training_id', training_id)}")

    def list_projects(self, status: str | None = "ACTIVE") -> Iterator[dict[str, Any]]:
        """The account's projects (``ACTIVE`` by default, ``None`` for all), page by page as consumed."""
        if status not in (None, *PROJECT_STATUSES):
            raise ValueError(
                f"status={status!r} is not a Toloka project status: pass one of "
                f"{', '.join(PROJECT_STATUSES)}, or None for every project."
            )
        return self._list("/projects", status)

    def list_pools(self, project_id: str | int, status: str | None = None) -> Iterator[dict[str, Any]]:
        """Every pool of a project (optionally of one status), fetched page by page as consumed."""
        return self._list("/pools", status, project_id=validate_id("project_id", project_id))

    def list_trainings(self, project_id: str | int, status: str | None = None) -> Iterator[dict[str, Any]]:
        """Every training of a project (optionally of one status), fetched page by page as consumed."""
        return self._list("/trainings", status, project_id=validate_id("project_id", project_id))

    def _list(self, path: str, status: str | None, **filters: str) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {**filters, "sort": "id", "limit": PAGE_LIMIT}
        if status is not None:
            params["status"] = status
        while True:
            page = self._request("GET", path, params=params) or {}
            items = page.get("items", [])
            yield from items
            if not page.get("has_more") or not items:
                return
            params["id_gt"] = items[-1]["id"]

    # -- wait ---------------------------------------------------------------------------------

    def wait_for_operation(
        self,
        operation_id: str,
        *,
        poll_interval: float = 10.0,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the operation ends; return it on SUCCESS, raise on FAIL or when time runs out.

        Polls start half a second apart and back off to ``poll_interval``, so quick archives are
        noticed at once and slow ones cost one request per ``poll_interval``. The operation runs in
        Toloka whether or not we can read it, so a Toloka outage (429, 5xx, dropped connections,
        time-outs) does not end the wait: it keeps reading, at most every ``poll_interval``, until
        Toloka answers or ``timeout`` runs out, and logs the outage once when it begins and once when
        it ends. A refusal (any other 4xx) still raises at once.
        """
        poll_interval = validate_seconds("poll_interval", poll_interval)
        timeout = validate_optional_seconds("timeout", timeout)
        deadline = pendulum.now("UTC").add(seconds=timeout) if timeout else None
        delays = poll_delays(poll_interval)
        outage = Outage(
            f"operation {operation_id}", self.log, min_wait=self.retry_min_wait, max_wait=poll_interval
        )
        operation: dict[str, Any] = {"id": operation_id, "status": "unknown (Toloka did not answer)"}
        fault: BaseException | None = None  # the last transient fault, while an outage lasts
        while True:
            try:
                operation = self.get_operation(operation_id, retry=False)
            except Exception as error:
                if isinstance(error, TolokaQuotaExhausted) and self._may_wait_out(error, deadline):
                    self.log.warning("%s; waiting %.0f s for it (wait_out_quota)", error, error.resets_in)
                    fault, delay = error, error.resets_in
                elif not self.is_transient(error):
                    raise
                else:
                    fault, delay = error, outage.failed(error)
            else:
                fault = None
                outage.recovered()
                status = operation_status(operation)
                if status is OperationStatus.SUCCESS:
                    self.log.info("%s", describe(operation))
                    metrics.operation_ended(operation)
                    return operation
                if status is OperationStatus.FAIL:
                    metrics.operation_ended(operation)
                    raise self.operation_failed(operation)
                self.log.info("%s", describe(operation))
                delay = next(delays)
            if deadline is not None:
                remaining = (deadline - pendulum.now("UTC")).total_seconds()
                if remaining <= 0:
                    raise TolokaOperationTimeout(operation, timeout or 0) from fault
                delay = min(delay, remaining)
            (self.sleep or time.sleep)(delay)

    def _may_wait_out(self, error: TolokaQuotaExhausted, wait_deadline: pendulum.DateTime | None) -> bool:
        """``wait_out_quota`` is on and the quota resets before both the task's and this wait's deadline."""
        return self.may_wait_out(error, None if wait_deadline is None else wait_deadline.timestamp())

    def may_wait_out(self, error: BaseException, *deadlines: float | None) -> bool:
        """Whether ``error`` is an HOUR or DAY quota this hook waits out (``wait_out_quota``): one that
        resets before the task's ``deadline`` and each of ``deadlines`` (Unix times; ``None``: none).

        For callers that read with ``retry=False`` and wait themselves (the cascade's watcher).
        """
        return (
            isinstance(error, TolokaQuotaExhausted)
            and self.wait_out_quota
            and quota_fits(error, self.deadline, *deadlines)
        )

    def operation_failed(self, operation: dict[str, Any]) -> TolokaOperationFailed:
        """The error for a FAIL operation, with Toloka's log of it attached when it can be read."""
        if operation.get("log"):  # read with it already (the triggerer's shared reader reads a FAIL's log)
            return TolokaOperationFailed(operation)
        try:
            log = self.get_operation_log(operation["id"])
        except TolokaError as error:
            self.log.warning("Could not read the log of operation %s: %s", operation.get("id"), error)
            log = []
        return TolokaOperationFailed({**operation, "log": log} if log else operation)

    # -- Airflow UI -----------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated request (list one operation); Toloka's own error text on failure."""
        try:
            self._request("GET", "/operations", params={"limit": 1})
        except (TolokaError, ValueError) as error:
            return False, str(error)
        return True, f"Connected to {self.settings.api_url} with {self.settings.auth_scheme} authorization."
