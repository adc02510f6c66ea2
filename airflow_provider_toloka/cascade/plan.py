"""From the listed pools and trainings of a project to what a cascade archive has to do.

Pure functions, no HTTP: the same plan is what a dry run returns, what the preflight checks, and
what the executor carries out, so the three can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_toloka.exceptions import TolokaCascadeBlocked


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
    # Training id -> the main pools linked to it that are still to archive (Toloka refuses to archive
    # a training before them). Read from each pool's documented
    # ``quality_control.training_requirement.training_pool_id``.
    training_pools: dict[str, list[str]] = field(default_factory=dict)

    def pools_of(self, training_id: str) -> list[str]:
        return self.training_pools.get(training_id, [])

    @property
    def training_of(self) -> dict[str, str]:
        """Pool id -> the training that waits on it."""
        return {pool: training for training, pools in self.training_pools.items() for pool in pools}

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
            "trainings_wait_for": self.training_pools,
            "blockers": [str(blocker) for blocker in self.blockers],
        }

    def describe(self) -> str:
        """A few log lines: counts and the steps in order."""
        steps = []
        if self.pools.close or self.trainings.close:
            steps.append(f"close {len(self.pools.close)} pool(s) and {len(self.trainings.close)} training(s)")
        linked = sum(1 for t in self.trainings.archive if self.pools_of(t))
        steps.append(
            f"archive {len(self.pools.archive)} pool(s) and {len(self.trainings.archive)} training(s) "
            f"({linked} of them each as soon as its linked pools are archived)"
        )
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
) -> CascadePlan:
    """Sort every pool and training into close / archive / skip, and collect what blocks the run.

    Only documented fields are read: ``status`` of each object, and on a pool the training its
    workers must pass (``quality_control.training_requirement.training_pool_id``). A pool in its
    rejection window looks like any closed pool; its archive request answers 409
    ``THERE_IS_REJECTED_ASSIGNMENT`` and the runner holds back what depends on it.
    """
    pools = list(pools)
    blockers: list[Blocker] = []
    pool_plan = _plan_kind("pool", pools, close_open, blockers)
    training_plan = _plan_kind("training", trainings, close_open, blockers)
    to_archive = set(pool_plan.archive)
    training_pools: dict[str, list[str]] = {}
    for pool in pools:
        training_id = required_training_id(pool)
        if training_id is not None and str(pool["id"]) in to_archive:
            training_pools.setdefault(training_id, []).append(str(pool["id"]))
    return CascadePlan(
        project_id=str(project["id"]),
        project_archived=project.get("status") == "ARCHIVED",
        pools=pool_plan,
        trainings=training_plan,
        blockers=blockers,
        training_pools=training_pools,
    )


def required_training_id(pool: Mapping[str, Any]) -> str | None:
    """The training a pool's workers must pass, where Toloka documents it; ``None`` when there is none."""
    quality_control = pool.get("quality_control")
    requirement = (
        quality_control.get("training_requirement") if isinstance(quality_control, Mapping) else None
    )
    training_id = requirement.get("training_pool_id") if isinstance(requirement, Mapping) else None
    return None if training_id in (None, "") else str(training_id)


def check_preflight(plan: CascadePlan) -> None:
    """Refuse to start when anything would stop the cascade half-way: better one error up front."""
    if plan.blockers:
        raise TolokaCascadeBlocked(plan.project_id, plan.blockers)


def _plan_kind(
    kind: str,
    objects: Iterable[Mapping[str, Any]],
    close_open: bool,
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
        plan.archive.append(object_id)
    return plan
