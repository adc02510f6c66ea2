"""Everything the emulator knows, and the bookkeeping around Toloka's rules (which live in ``rules``).

Pure Python so it can be read and driven without the web stack. One ``threading.Lock`` guards it all, held
only for short critical sections: the event loop thread and test threads both call in.

Operations advance lazily: each call first completes every operation whose time has come (a heap ordered by
finish time), applying its effect, and then answers. So a read always sees the world as it would be by now.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from airflow_provider_toloka.emulator import rules
from airflow_provider_toloka.emulator.errors import ApiError, not_found
from airflow_provider_toloka.emulator.model import (
    KINDS,
    POOL_STATUSES,
    PROJECT_STATUSES,
    AnyObject,
    Lifecycle,
    Operation,
    Pool,
    Project,
    Training,
    id_key,
    is_object_id,
)

ObjectKey = tuple[str, str]


class EmulatorState:
    """Projects, pools, trainings and operations, with the lock that keeps them consistent."""

    def __init__(self, operation_duration: float = 0.2, clock: Callable[[], float] = time.time) -> None:
        self.operation_duration = operation_duration
        # Each operation lasts operation_duration plus a random share of this: many operations that do not
        # all end together, as in a real account (benchmarks/bench_trigger.py).
        self.operation_duration_spread = 0.0
        self._clock = clock
        # Added to the clock by ``advance_clock``: lets a test live through days (a rejection window,
        # idle pools) in no time. Operations, rules and timestamps all read ``now()``.
        self._offset = 0.0
        self._lock = threading.Lock()
        with self._lock:
            self._forget_all()

    def reset(self) -> None:
        """Forget every object and operation, as on a fresh start (the running server keeps this state)."""
        with self._lock:
            self._forget_all()
            self._offset = 0.0

    def now(self) -> float:
        """The emulator's time as a Unix timestamp: the real clock plus what ``advance_clock`` added."""
        return self._clock() + self._offset

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's time forward; operations due by then finish at once, with their effects."""
        if seconds < 0:
            raise ValueError(f"advance_clock takes 0 or more seconds, got {seconds}: time only moves forward")
        with self._lock:
            self._offset += seconds
            self._advance(self.now())

    def _utcnow(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now(), dt.UTC)

    def _forget_all(self) -> None:
        self._objects: dict[str, dict[str, AnyObject]] = {kind: {} for kind in KINDS}
        self._operations: dict[str, Operation] = {}
        self._unfinished: list[tuple[float, int, str]] = []
        # The one running operation per object; Toloka asks clients not to start a second one.
        self._running: dict[ObjectKey, str] = {}
        self._doomed: dict[ObjectKey, dict[str, Any]] = {}
        self._seq = itertools.count()

    # --- setting up -------------------------------------------------------------------------------

    def add_project(
        self,
        project_id: str,
        status: str = "ACTIVE",
        public_name: str = "",
        created: dt.datetime | None = None,
    ) -> None:
        _check_choice("project status", status, PROJECT_STATUSES)
        project = Project(
            _check_id(project_id), status, public_name, _aware("created", created) or self._utcnow()
        )
        with self._lock:
            self._objects["project"][project_id] = project

    def add_pool(
        self,
        pool_id: str,
        project_id: str,
        status: str = "CLOSED",
        last_rejection: dt.datetime | None = None,
        private_name: str = "",
        last_close_reason: str | None = None,
        created: dt.datetime | None = None,
        last_started: dt.datetime | None = None,
        last_stopped: dt.datetime | None = None,
    ) -> None:
        _check_choice("pool status", status, POOL_STATUSES)
        _aware("last_rejection", last_rejection)
        if last_close_reason is None and status == "CLOSED":
            last_close_reason = "MANUAL"
        times = self._lifecycle(status, created, last_started, last_stopped)
        pool = Pool(
            _check_id(pool_id),
            _check_id(project_id),
            status,
            private_name,
            last_close_reason,
            last_rejection,
            times,
        )
        with self._lock:
            self._ensure_project(project_id)
            self._objects["pool"][pool_id] = pool

    def add_training(
        self,
        training_id: str,
        project_id: str,
        status: str = "CLOSED",
        linked_pool_ids: Iterable[str] = (),
        private_name: str = "",
        created: dt.datetime | None = None,
        last_started: dt.datetime | None = None,
        last_stopped: dt.datetime | None = None,
    ) -> None:
        _check_choice("training status", status, POOL_STATUSES)
        linked = tuple(_check_id(pool_id) for pool_id in linked_pool_ids)
        times = self._lifecycle(status, created, last_started, last_stopped)
        training = Training(
            _check_id(training_id), _check_id(project_id), status, private_name, linked, times=times
        )
        with self._lock:
            self._ensure_project(project_id)
            self._objects["training"][training_id] = training

    def _lifecycle(
        self,
        status: str,
        created: dt.datetime | None,
        last_started: dt.datetime | None,
        last_stopped: dt.datetime | None,
    ) -> Lifecycle:
        """Times for a new pool or training: unless given, made now, opened and closed as its status says."""
        made = _aware("created", created) or self._utcnow()
        if last_started is None and status != "OPEN" and last_stopped is not None:
            last_started = last_stopped
        return Lifecycle(
            created=made,
            last_started=_aware("last_started", last_started) or made,
            last_stopped=_aware("last_stopped", last_stopped) or (None if status == "OPEN" else made),
        )

    def fail_next(self, kind: str, object_id: str, details: dict[str, Any] | None = None) -> None:
        """Doom the next archive of this object: it ends in FAIL with ``details``, changing nothing."""
        _check_choice("kind", kind, KINDS)
        with self._lock:
            self._doomed[(kind, object_id)] = dict(details or {})

    def _ensure_project(self, project_id: str) -> None:
        # A pool without its project would make project archiving meaningless, so tests need not add both.
        self._objects["project"].setdefault(project_id, Project(project_id))

    # --- the API's actions ------------------------------------------------------------------------

    def archive(self, kind: str, object_id: str) -> dict[str, Any] | None:
        """Start archiving; ``None`` means already archived (Toloka's empty 204)."""
        now = self.now()
        with self._lock:
            self._advance(now)
            obj = self._require(kind, object_id)
            if obj.status == "ARCHIVED":
                return None
            self._refuse_if_running(kind, object_id)
            rules.check_archivable(kind, obj, self._objects, dt.datetime.fromtimestamp(now, dt.UTC))
            doom = self._doomed.pop((kind, object_id), None)
            return self._submit(f"{kind.upper()}.ARCHIVE", kind, object_id, now, doom)

    def close(self, kind: str, object_id: str) -> dict[str, Any] | None:
        """Start closing a pool or training; ``None`` means already closed (Toloka's empty 204)."""
        now = self.now()
        with self._lock:
            self._advance(now)
            obj = self._require(kind, object_id)
            rules.check_closable(kind, obj)
            if obj.status == "CLOSED":
                return None
            self._refuse_if_running(kind, object_id)
            return self._submit(f"{kind.upper()}.CLOSE", kind, object_id, now, None)

    def _refuse_if_running(self, kind: str, object_id: str) -> None:
        running = self._running.get((kind, object_id))
        if running is not None:
            raise ApiError(
                409,
                "OPERATION_ALREADY_EXISTS",
                f"{kind.capitalize()} {object_id} already has operation {running} in progress; "
                "wait for it to finish before starting another",
                {"operation_id": running},
            )

    def _submit(
        self, op_type: str, kind: str, object_id: str, now: float, doom: dict[str, Any] | None
    ) -> dict[str, Any]:
        duration = self.operation_duration + random.uniform(0, self.operation_duration_spread)
        op = Operation(str(uuid.uuid4()), op_type, kind, object_id, now, duration, next(self._seq), doom)
        self._operations[op.id] = op
        self._running[(kind, object_id)] = op.id
        heapq.heappush(self._unfinished, (op.finishes_at, op.seq, op.id))
        self._advance(now)  # a zero duration finishes at once, and the 202 already says SUCCESS
        return op.to_json(now)

    def _advance(self, now: float) -> None:
        while self._unfinished and self._unfinished[0][0] <= now:
            _, _, op_id = heapq.heappop(self._unfinished)
            op = self._operations[op_id]
            self._running.pop((op.kind, op.object_id), None)
            if op.fail_details is None:
                obj = self._objects[op.kind][op.object_id]
                rules.apply_effect(op.type, obj, dt.datetime.fromtimestamp(op.finishes_at, dt.UTC))

    def _require(self, kind: str, object_id: str) -> AnyObject:
        obj = self._objects[kind].get(object_id)
        if obj is None:
            raise not_found(kind, object_id)
        return obj

    # --- reading ----------------------------------------------------------------------------------

    def get_object(self, kind: str, object_id: str) -> dict[str, Any]:
        with self._lock:
            self._advance(self.now())
            return self._to_json(self._require(kind, object_id), self._training_links(kind))

    def list_objects(
        self,
        kind: str,
        *,
        limit: int,
        project_id: str | None = None,
        status: str | None = None,
        id_gt: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page sorted by id, and whether more follow: Toloka's ``{"items", "has_more"}`` list."""
        with self._lock:
            self._advance(self.now())
            chosen = [
                obj
                for obj in self._objects[kind].values()
                if (project_id is None or getattr(obj, "project_id", None) == project_id)
                and (status is None or obj.status == status)
                and (id_gt is None or id_key(obj.id) > id_key(id_gt))
            ]
            chosen.sort(key=lambda obj: id_key(obj.id))
            links = self._training_links(kind)
            return [self._to_json(obj, links) for obj in chosen[:limit]], len(chosen) > limit

    def _training_links(self, kind: str) -> dict[str, str]:
        """Pool id -> the training its workers must pass, as Toloka shows it on the pool."""
        if kind != "pool":
            return {}
        return {
            pool_id: training.id
            for training in self._objects["training"].values()
            if isinstance(training, Training)
            for pool_id in training.main_pool_ids
        }

    @staticmethod
    def _to_json(obj: AnyObject, links: dict[str, str]) -> dict[str, Any]:
        return obj.to_json(links.get(obj.id)) if isinstance(obj, Pool) else obj.to_json()

    def get_operation(self, operation_id: str) -> dict[str, Any]:
        now = self.now()
        with self._lock:
            self._advance(now)
            return self._require_operation(operation_id).to_json(now)

    def operation_log(self, operation_id: str) -> list[dict[str, Any]]:
        now = self.now()
        with self._lock:
            self._advance(now)
            return self._require_operation(operation_id).log_at(now)

    def list_operations(
        self,
        *,
        limit: int | None = None,
        type: str | None = None,
        status: str | None = None,
        sort: str = "submitted",
        id_gt: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Operations matching the filters, in ``sort`` order (``submitted``, ``-submitted`` or ``id``).

        Only the copy of the list happens under the lock: an operation never changes after submission (its
        status is a function of the clock), so filtering and encoding thousands of them can run outside it.
        """
        now = self.now()
        with self._lock:
            self._advance(now)
            operations = list(self._operations.values())  # in submission order
        chosen = [
            op
            for op in operations
            if (type is None or op.type == type)
            and (status is None or op.status_at(now) == status)
            and (id_gt is None or id_key(op.id) > id_key(id_gt))
        ]
        if sort == "id":
            chosen.sort(key=lambda op: id_key(op.id))
        elif sort == "-submitted":
            chosen.reverse()
        page = chosen if limit is None else chosen[:limit]
        return [op.to_json(now) for op in page], limit is not None and len(chosen) > limit

    def _require_operation(self, operation_id: str) -> Operation:
        op = self._operations.get(operation_id)
        if op is None:
            raise not_found("operation", operation_id)
        return op


def _aware(name: str, value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, e.g. datetime.now(timezone.utc)")
    return value


def _check_id(object_id: str) -> str:
    if not is_object_id(object_id):
        raise ValueError(f"Toloka ids are strings of digits, got {object_id!r}")
    return object_id


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {what} {value!r}; expected one of {', '.join(choices)}")
