"""A cascade plan as steps with needs: the order Toloka's archive preconditions impose, and no more.

Pure, no HTTP. The runner starts each step once its needs are done, so the order of the mapping
is only the order in which free steps start: closes, then trainings that wait on no pool, then
pools grouped by the training they unlock (pools no training waits on last, since only the
project needs them), then the rest as they become free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_toloka.cascade.plan import CascadePlan


@dataclass(frozen=True)
class Step:
    """One request of the cascade and the operation it starts: ``close`` or ``archive`` one object."""

    action: str
    kind: str
    id: str

    @property
    def label(self) -> str:
        """The progress counter it belongs to, e.g. ``pools archived``."""
        return f"{self.kind}{'' if self.kind == 'project' else 's'} {self.action}d"


def build_steps(plan: CascadePlan) -> dict[Step, set[Step]]:
    """Every step of ``plan`` mapped to the steps that must be done before it starts.

    - an archive of an object the plan closes needs that close;
    - a training's archive needs the archives of the main pools linked to it (Toloka answers
      ``TRAINING_ARCHIVE_CONFLICT`` before them); a training with none needs nothing;
    - the project's archive needs every other archive (``UNARCHIVED_POOLS_CONFLICT`` before them).
    """
    needs: dict[Step, set[Step]] = {}
    closing = {("pool", i) for i in plan.pools.close} | {("training", i) for i in plan.trainings.close}
    for kind, ids in (("pool", plan.pools.close), ("training", plan.trainings.close)):
        for object_id in ids:
            needs[Step("close", kind, object_id)] = set()

    def archive(kind: str, object_id: str, after: set[Step]) -> None:
        own = {Step("close", kind, object_id)} if (kind, object_id) in closing else set()
        needs[Step("archive", kind, object_id)] = own | after

    trainings = plan.trainings.archive
    for training_id in trainings:
        if not plan.pools_of(training_id):
            archive("training", training_id, set())
    linked = [p for t in trainings for p in plan.pools_of(t)]
    linked_set = set(linked)
    for pool_id in [*linked, *(p for p in plan.pools.archive if p not in linked_set)]:
        archive("pool", pool_id, set())
    for training_id in trainings:
        if plan.pools_of(training_id):
            archive("training", training_id, {Step("archive", "pool", p) for p in plan.pools_of(training_id)})
    if not plan.project_archived:
        needs[Step("archive", "project", plan.project_id)] = {s for s in needs if s.action == "archive"}
    return needs
