"""The objects the emulator holds and how each one looks on the wire.

Plain dataclasses: the state module owns the lock, these only describe one object at a time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

KINDS = ("project", "pool", "training")
PROJECT_STATUSES = ("ACTIVE", "ARCHIVED")
POOL_STATUSES = ("OPEN", "CLOSED", "LOCKED", "ARCHIVED")
OPERATION_STATUSES = ("PENDING", "RUNNING", "SUCCESS", "FAIL")
OPERATION_TYPES = ("PROJECT.ARCHIVE", "POOL.ARCHIVE", "TRAINING.ARCHIVE", "POOL.CLOSE", "TRAINING.CLOSE")
# Every operation type Toloka knows (toloka-kit's ``OperationType``): listing by one the emulator does not
# model answers an empty list, as Toloka would for an account that never ran one, rather than a 400.
TOLOKA_OPERATION_TYPES = (
    *OPERATION_TYPES,
    "PSEUDO.PSEUDO", "ANALYTICS", "KNOWN_SOLUTIONS.GENERATE", "POOL.CLONE", "POOL.OPEN",
    "SOLUTION.AGGREGATE", "TASK.BATCH_CREATE", "TASK_SUITE.BATCH_CREATE", "TRAINING.CLONE", "TRAINING.OPEN",
    "USER_BONUS.BATCH_CREATE",
)  # fmt: skip
# Toloka keeps a pool with rejected assignments for 9 days so Tolokers can appeal.
REJECTION_WINDOW = dt.timedelta(days=9)
# An operation waits in PENDING for this share of its duration before it starts RUNNING.
PENDING_SHARE = 0.1


def format_time(value: dt.datetime) -> str:
    """Toloka's time format: UTC, no offset, milliseconds (``2021-02-26T10:13:32.921``)."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def format_timestamp(seconds: float) -> str:
    """``format_time`` for a ``time.time()`` value."""
    return format_time(dt.datetime.fromtimestamp(seconds, dt.UTC))


_OBJECT_ID = re.compile(r"[0-9]{1,20}")
_OPERATION_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


def is_object_id(value: object) -> bool:
    """Project, pool and training ids are digit strings in Toloka; anything else is a client bug (400)."""
    return isinstance(value, str) and _OBJECT_ID.fullmatch(value) is not None


def is_operation_id(value: str) -> bool:
    """Operation ids are UUIDs today and hex strings in older pages; accept both shapes, nothing stranger."""
    return _OPERATION_ID.fullmatch(value) is not None


def id_key(object_id: str) -> tuple[int, int, str]:
    """Sort ids as Toloka does: numeric ids by value (so "9" < "10"), any other id after them by text."""
    return (0, int(object_id), "") if object_id.isdigit() else (1, 0, object_id)


def _time_or_none(value: dt.datetime | None) -> str | None:
    return None if value is None else format_time(value)


@dataclass
class Project:
    id: str
    status: str = "ACTIVE"
    public_name: str = ""
    created: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "public_name": self.public_name or f"Project {self.id}",
        }
        if self.created is not None:
            body["created"] = format_time(self.created)
        return body


@dataclass
class Lifecycle:
    """The read-only times Toloka shows on pools and trainings: made, last opened, last closed."""

    created: dt.datetime | None = None
    last_started: dt.datetime | None = None
    last_stopped: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        body = {"created": _time_or_none(self.created)}
        if self.last_started is not None:
            body["last_started"] = format_time(self.last_started)
        if self.last_stopped is not None:
            body["last_stopped"] = format_time(self.last_stopped)
        return body


@dataclass
class Pool:
    id: str
    project_id: str
    status: str = "CLOSED"
    private_name: str = ""
    last_close_reason: str | None = None
    last_rejection: dt.datetime | None = None
    times: Lifecycle = field(default_factory=Lifecycle)

    def to_json(self, training_id: str | None = None) -> dict[str, Any]:
        """The pool as Toloka shows it; ``training_id`` is the training its workers must pass, if any."""
        body: dict[str, Any] = {
            "id": self.id,
            "project_id": self.project_id,
            "type": "REGULAR",
            "status": self.status,
            "private_name": self.private_name or f"Pool {self.id}",
            "last_close_reason": self.last_close_reason,
            **self.times.to_json(),
        }
        if training_id is not None:
            # Where Toloka links a main pool to its training (``quality_control.training_requirement``).
            body["quality_control"] = {
                "training_requirement": {"training_pool_id": training_id, "training_passing_skill_value": 80}
            }
        # ``last_rejection`` is inner state: Toloka shows no rejection date on a pool.
        return body


@dataclass
class Training:
    id: str
    project_id: str
    status: str = "CLOSED"
    private_name: str = ""
    # Inner state: Toloka shows the link on each main pool (``quality_control.training_requirement``).
    main_pool_ids: tuple[str, ...] = ()
    last_close_reason: str | None = None
    times: Lifecycle = field(default_factory=Lifecycle)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project_id": self.project_id,
            "status": self.status,
            "private_name": self.private_name or f"Training {self.id}",
            "last_close_reason": self.last_close_reason,
            **self.times.to_json(),
        }


AnyObject = Project | Pool | Training


@dataclass
class Operation:
    """One archive or close operation; its status is a function of the clock, never stored.

    Deriving the status from ``submitted`` and ``duration`` keeps the emulator free of a ticking thread:
    whoever reads the operation sees exactly where it would be by now.
    """

    id: str
    type: str
    kind: str
    object_id: str
    submitted: float
    duration: float
    seq: int
    # Set by fail_next: the operation ends in FAIL with these details and changes nothing.
    fail_details: dict[str, Any] | None = None
    # Formatted once: the times never change, and listing thousands of operations should not redo it.
    _times: tuple[str, str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        start, finish = format_timestamp(self.starts_at), format_timestamp(self.finishes_at)
        self._times = (format_timestamp(self.submitted), start, finish)

    @property
    def starts_at(self) -> float:
        return self.submitted + self.duration * PENDING_SHARE

    @property
    def finishes_at(self) -> float:
        return self.submitted + self.duration

    def status_at(self, now: float) -> str:
        if now >= self.finishes_at:
            return "SUCCESS" if self.fail_details is None else "FAIL"
        return "RUNNING" if now >= self.starts_at else "PENDING"

    def progress_at(self, now: float) -> int:
        if now >= self.finishes_at:
            return 100
        if now < self.starts_at:
            return 0
        return min(99, int(100 * (now - self.starts_at) / (self.finishes_at - self.starts_at)))

    @property
    def parameters(self) -> dict[str, str]:
        return {f"{self.kind}_id": self.object_id}

    def to_json(self, now: float) -> dict[str, Any]:
        status = self.status_at(now)
        submitted, started, finished = self._times
        return {
            "id": self.id,
            "type": self.type,
            "status": status,
            "submitted": submitted,
            "started": None if status == "PENDING" else started,
            "finished": finished if status in ("SUCCESS", "FAIL") else None,
            "progress": self.progress_at(now),
            "parameters": self.parameters,
            "details": dict(self.fail_details or {}) if status == "FAIL" else {},
        }

    def log_at(self, now: float) -> list[dict[str, Any]]:
        """The ``/log`` items (``{type, success, input, output}``, toloka-kit's ``OperationLogItem``): one
        failure item once a doomed operation has failed, nothing otherwise.

        ``type`` names the kind of item, after Toloka's documented ones (``TASK_VALIDATE`` is a task
        that failed validation): ``POOL_VALIDATE`` here. Which type an archive failure logs is not
        documented; this is the emulator's assumption.
        """
        if self.status_at(now) != "FAIL":
            return []
        return [
            {
                "type": f"{self.kind.upper()}_VALIDATE",
                "success": False,
                "input": self.parameters,
                "output": dict(self.fail_details or {}),
            }
        ]
