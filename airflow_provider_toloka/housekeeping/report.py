"""The housekeeping summary: one outcome per project, as compact XCom data and as a table for the log.

An account can hold thousands of projects, so the XCom keeps ids and one short line per skipped or
failed project, grouped by reason; the log table has a row for every project.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pendulum

# Re-exported: its home is exceptions.py with the others; this path worked before.
from airflow_provider_toloka.exceptions import TolokaHousekeepingFailed as TolokaHousekeepingFailed
from airflow_provider_toloka.housekeeping.assess import REASONS

FAILED = "failed"


@dataclass(frozen=True)
class ProjectOutcome:
    """What became of one project: archived (``reason is None``), skipped for a reason, or ``FAILED``."""

    project_id: str
    reason: str | None
    detail: str
    # (kind, id, operation id) archived for this project, for its asset events; empty in a dry run.
    objects: tuple[tuple[str, str, str | None], ...] = ()


class Report:
    """Outcomes collected from the worker threads; safe to ``add`` from any of them."""

    def __init__(
        self, *, dry_run: bool, min_idle_days: float, close_open: bool, now: pendulum.DateTime
    ) -> None:
        self.dry_run = dry_run
        self.min_idle_days = min_idle_days
        self.close_open = close_open
        self.now = now
        self._lock = threading.Lock()
        self._outcomes: dict[str, ProjectOutcome] = {}

    def add(self, outcome: ProjectOutcome) -> None:
        with self._lock:
            self._outcomes[outcome.project_id] = outcome

    def _sorted(self) -> list[ProjectOutcome]:
        with self._lock:
            outcomes = list(self._outcomes.values())
        return sorted(outcomes, key=lambda o: id_order(o.project_id))

    def archived_objects(self) -> list[tuple[str, str, str | None]]:
        """Every object the run archived, project by project (what gets an asset event)."""
        return [obj for outcome in self._sorted() for obj in outcome.objects]

    @property
    def failed(self) -> dict[str, str]:
        return {o.project_id: o.detail for o in self._sorted() if o.reason == FAILED}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and compact: ids of the archived, ``{id: why}`` per skip reason, ``{id: error}``.

        A dry run has the same shape: ``archived`` then lists what a real run would archive.
        """
        outcomes = self._sorted()
        archived = [o.project_id for o in outcomes if o.reason is None]
        skipped: dict[str, dict[str, str]] = {reason: {} for reason in REASONS}
        for outcome in outcomes:
            if outcome.reason in skipped:
                skipped[outcome.reason][outcome.project_id] = outcome.detail
        failed = self.failed
        return {
            "dry_run": self.dry_run,
            "checked_at": self.now.in_timezone("UTC").format("YYYY-MM-DD[T]HH:mm:ss[Z]"),
            "min_idle_days": self.min_idle_days,
            "close_open": self.close_open,
            "counts": {
                "checked": len(outcomes),
                "archived": len(archived),
                "skipped": sum(len(ids) for ids in skipped.values()),
                "failed": len(failed),
            },
            "archived": archived,
            "skipped": skipped,
            "failed": failed,
        }

    def to_state(self) -> dict[str, Any]:
        """Everything the report holds, as JSON data: a deferred run's event carries it to the worker."""
        return {
            "dry_run": self.dry_run,
            "min_idle_days": self.min_idle_days,
            "close_open": self.close_open,
            "now": self.now.in_timezone("UTC").isoformat(),
            "outcomes": [
                [o.project_id, o.reason, o.detail, [list(obj) for obj in o.objects]] for o in self._sorted()
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Report:
        """The report ``to_state`` was made from (the same summary, table and archived objects)."""
        now = pendulum.parse(state["now"])
        assert isinstance(now, pendulum.DateTime)
        report = cls(
            dry_run=state["dry_run"],
            min_idle_days=state["min_idle_days"],
            close_open=state["close_open"],
            now=now,
        )
        for project_id, reason, detail, objects in state["outcomes"]:
            report.add(ProjectOutcome(project_id, reason, detail, tuple((k, i, op) for k, i, op in objects)))
        return report

    def table(self) -> str:
        """A heading with the counts, then one row per project: id, outcome, why."""
        summary = self.to_dict()
        counts = summary["counts"]
        verb = "to archive" if self.dry_run else "archived"
        heading = (
            f"Housekeeping{' (dry run: nothing was changed)' if self.dry_run else ''}: "
            f"{counts['checked']} active project(s), {counts['archived']} {verb}, "
            f"{counts['skipped']} skipped, {counts['failed']} failed "
            f"(min_idle_days={self.min_idle_days:g}, close_open={self.close_open})"
        )
        rows = [(o.project_id, self._label(o), o.detail) for o in self._sorted()]
        if not rows:
            return heading
        id_width = max(len("project"), *(len(row[0]) for row in rows))
        label_width = max(len(row[1]) for row in rows)
        lines = [heading, f"{'project':<{id_width}}  {'outcome':<{label_width}}  detail"]
        lines += [f"{pid:<{id_width}}  {label:<{label_width}}  {detail}" for pid, label, detail in rows]
        return "\n".join(lines)

    def _label(self, outcome: ProjectOutcome) -> str:
        if outcome.reason is None:
            return "would archive" if self.dry_run else "archived"
        if outcome.reason == FAILED:
            return "FAILED"
        return f"skip: {outcome.reason}"


def id_order(project_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order (Toloka's ids are digit strings)."""
    return (0, int(project_id), "") if project_id.isdigit() else (1, 0, project_id)
