"""From the listed pools and trainings of a project to what a cascade archive has to do.

Pure functions, no HTTP: the same plan is what a dry run returns, what the preflight checks, and
what the executor carries out, so the three can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pendulum

from airflow_provider_toloka.exceptions import TolokaCascadeBlocked

# Toloka keeps a pool with rejected assignments for 9 days so Tolokers can appeal.
REJECTION_WINDOW_DAYS = 9


@dataclass(frozen=True)
class Blocker:
    """One object the cascade cannot archive now, and what to do about it."""

    kind: str
    id: str
    status: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status}): {self.reason}"


@dataclass
class KindPlan:
    """For one kind (pools or trainings): ids to close first, ids to archive, ids already archived."""

    close: list[str] = field(default_factory=list)
    archive: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)


@dataclass
class CascadePlan:
    project_id: str
    project_archived: bool
    pools: KindPlan
    trainings: KindPlan
    blockers: list[Blocker]

    def to_dict(self) -> dict[str, Any]:
        """The plan as XCom-friendly data, in the order it runs."""
        return {
            "project_id": self.project_id,
            "close": {"pools": self.pools.close, "trainings": self.trainings.close},
            "archive": {
                "pools": self.pools.archive,
                "trainings": self.trainings.archive,
                "project": [] if self.project_archived else [self.project_id],
            },
            "skip": {"pools": self.pools.skip, "trainings": self.trainings.skip},
            "blockers": [str(blocker) for blocker in self.blockers],
        }

    def describe(self) -> str:
        """A few log lines: counts and the steps in order."""
        steps = []
        if self.pools.close or self.trainings.close:
            steps.append(f"close {len(self.pools.close)} pool(s) and {len(self.trainings.close)} training(s)")
        steps.append(f"archive {len(self.pools.archive)} pool(s)")
        steps.append(f"archive {len(self.trainings.archive)} training(s)")
        steps.append(
            "project already archived" if self.project_archived else f"archive project {self.project_id}"
        )
        skipped = (
            f"; already archived: {len(self.pools.skip)} pool(s), {len(self.trainings.skip)} training(s)"
        )
        return f"Plan for project {self.project_id}: " + ", then ".join(steps) + skipped


def plan_cascade(
    project: Mapping[str, Any],
    pools: Iterable[Mapping[str, Any]],
    trainings: Iterable[Mapping[str, Any]],
    *,
    close_open: bool,
    now: pendulum.DateTime,
) -> CascadePlan:
    """Sort every pool and training into close / archive / skip, and collect what blocks the run."""
    blockers: list[Blocker] = []
    pool_plan = _plan_kind("pool", pools, close_open, now, blockers)
    training_plan = _plan_kind("training", trainings, close_open, now, blockers)
    return CascadePlan(
        project_id=str(project["id"]),
        project_archived=project.get("status") == "ARCHIVED",
        pools=pool_plan,
        trainings=training_plan,
        blockers=blockers,
    )


def check_preflight(plan: CascadePlan) -> None:
    """Refuse to start when anything would stop the cascade half-way: better one error up front."""
    if plan.blockers:
        raise TolokaCascadeBlocked(plan.project_id, plan.blockers)


def _plan_kind(
    kind: str,
    objects: Iterable[Mapping[str, Any]],
    close_open: bool,
    now: pendulum.DateTime,
    blockers: list[Blocker],
) -> KindPlan:
    plan = KindPlan()
    for obj in objects:
        object_id, status = str(obj["id"]), str(obj.get("status"))
        if status == "ARCHIVED":
            plan.skip.append(object_id)
            continue
        if status == "OPEN" and close_open:
            plan.close.append(object_id)
        elif status == "OPEN":
            blockers.append(Blocker(kind, object_id, status, "open: close it, or pass close_open=True"))
            continue
        elif status == "LOCKED":
            blockers.append(
                Blocker(
                    kind,
                    object_id,
                    status,
                    "locked by a running Toloka operation; it can be neither closed nor archived "
                    "until that ends: retry the task later",
                )
            )
            continue
        elif status != "CLOSED":
            blockers.append(Blocker(kind, object_id, status, "status unknown to this provider"))
            continue
        archivable_from = _archivable_from(obj, now)
        if archivable_from is not None:
            blockers.append(
                Blocker(
                    kind,
                    object_id,
                    status,
                    f"has assignments rejected at {obj['last_rejection']} UTC; Toloka keeps it for "
                    f"appeals for {REJECTION_WINDOW_DAYS} days: it can be archived from "
                    f"{archivable_from.format('YYYY-MM-DD HH:mm')} UTC",
                )
            )
            continue
        plan.archive.append(object_id)
    return plan


def _archivable_from(obj: Mapping[str, Any], now: pendulum.DateTime) -> pendulum.DateTime | None:
    """When a pool inside its rejection window may be archived; ``None`` if it may be now.

    Toloka's docs do not promise a ``last_rejection`` field on pools; when it is absent the archive
    request itself answers 409 ``THERE_IS_REJECTED_ASSIGNMENT`` and the error says so.
    """
    raw = obj.get("last_rejection")
    if not raw:
        return None
    parsed = pendulum.parse(str(raw), tz="UTC")
    assert isinstance(parsed, pendulum.DateTime)
    archivable_from = parsed.add(days=REJECTION_WINDOW_DAYS)
    return archivable_from if now < archivable_from else None
