"""Waiting until Toloka lets an object be archived: which refusals time clears, and when to ask again.

A closed pool with rejected assignments cannot be archived for 9 days; a training waits on its main
pools, a project on its pools (Toloka archives idle pools itself). None of these needs a person, only
time or other work, so an operator with ``wait_until_archivable=True`` asks again later instead of
failing. The decisions live here, apart from the operator, so they read as rules and are tested as such.

A wait spans many deferrals, each of which ends the worker's process; ``ArchivableWait`` is the little
it carries across them (as JSON values, the way Airflow stores ``defer(kwargs=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pendulum

# Refusals that time or other work will clear. Every other refusal (INAPPROPRIATE_STATUS: an open
# pool; 403; 404) needs a person, and fails the task at once. The operator, the cascade and
# housekeeping all read them from here.
REJECTED = "THERE_IS_REJECTED_ASSIGNMENT"  # a pool in its 9-day rejection window
WAITING_ON_POOLS = frozenset(
    {
        "TRAINING_ARCHIVE_CONFLICT",  # a training whose main pools are not archived yet
        "UNARCHIVED_POOLS_CONFLICT",  # a project whose pools or trainings are not archived yet
    }
)
CODES_TIME_CLEARS = frozenset({REJECTED, *WAITING_ON_POOLS})
# The shortest pause between two checks: the parameter's minimum, and the floor under a date from Toloka.
MIN_CHECK_INTERVAL = 60.0
# Where a refusal's payload may say when the object becomes archivable. Toloka documents no such field
# (it documents the 9 days), and the bundled emulator sends none either; ``archivable_after`` is read in
# case a refusal carries it. Read defensively: a missing or unreadable value just means "ask again after
# archivable_check_interval".
PAYLOAD_DATE_FIELDS = ("archivable_after",)


def time_clears(status_code: int | None, code: str | None) -> bool:
    """Whether a refusal is one that waiting can clear (a 409 with one of ``CODES_TIME_CLEARS``)."""
    return status_code == 409 and code in CODES_TIME_CLEARS


def archivable_after(payload: Any) -> pendulum.DateTime | None:
    """When the refusal's payload says the object becomes archivable, if it says so readably."""
    if not isinstance(payload, dict):
        return None
    for name in PAYLOAD_DATE_FIELDS:
        value = payload.get(name)
        if isinstance(value, str) and value:
            try:
                parsed = pendulum.parse(value, tz="UTC")
            except (ValueError, TypeError):
                continue
            if isinstance(parsed, pendulum.DateTime):
                return parsed.in_tz("UTC")
    return None


@dataclass(frozen=True)
class ArchivableWait:
    """One wait across deferrals: when Toloka first refused, and how many times it has been asked."""

    first_refused_at: pendulum.DateTime
    checks: int = 1

    @classmethod
    def start(cls, now: pendulum.DateTime) -> ArchivableWait:
        return cls(first_refused_at=now, checks=1)

    def to_kwargs(self) -> dict[str, Any]:
        """JSON values for ``defer(kwargs=...)``; Airflow hands them back to the resume method."""
        return {"first_refused_at": self.first_refused_at.isoformat(), "checks": self.checks}

    @classmethod
    def from_kwargs(cls, first_refused_at: str, checks: int) -> ArchivableWait:
        parsed = pendulum.parse(first_refused_at, tz="UTC")
        assert isinstance(parsed, pendulum.DateTime)
        return cls(first_refused_at=parsed.in_tz("UTC"), checks=checks)

    def again(self) -> ArchivableWait:
        """The same wait, one check later."""
        return ArchivableWait(self.first_refused_at, self.checks + 1)

    def deadline(self, timeout: float | None) -> pendulum.DateTime | None:
        return None if timeout is None else self.first_refused_at.add(seconds=timeout)

    def next_check(
        self,
        now: pendulum.DateTime,
        *,
        interval: float,
        timeout: float | None,
        toloka_says: pendulum.DateTime | None = None,
    ) -> pendulum.DateTime | None:
        """When to ask again; ``None`` once ``timeout`` (from the first refusal) has run out.

        After ``interval``, or at the date Toloka gave when it gave one, but never sooner than
        ``MIN_CHECK_INTERVAL`` from now; and never past the deadline, where one last check is made.
        """
        deadline = self.deadline(timeout)
        if deadline is not None and now >= deadline:
            return None
        moment = toloka_says if toloka_says is not None else now.add(seconds=interval)
        moment = max(moment, now.add(seconds=MIN_CHECK_INTERVAL))
        return moment if deadline is None else min(moment, deadline)
