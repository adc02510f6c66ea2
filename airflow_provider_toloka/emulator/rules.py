"""Toloka's preconditions for archiving and closing, and what a finished operation changes.

Kept apart from the state's bookkeeping so the rules read like the API pages they come from. Callers hold the
state lock; nothing here locks or keeps anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from airflow_provider_toloka.emulator.errors import ApiError
from airflow_provider_toloka.emulator.model import (
    REJECTION_WINDOW,
    AnyObject,
    Pool,
    Training,
    id_key,
)


def check_archivable(
    kind: str, obj: AnyObject, objects: Mapping[str, Mapping[str, AnyObject]], now: dt.datetime
) -> None:
    """Raise the 409 Toloka answers when ``obj`` (not yet archived) may not be archived now."""
    if kind == "project":
        _check_project_empty(obj.id, objects)
        return
    if obj.status != "CLOSED":
        raise ApiError(
            409,
            "INAPPROPRIATE_STATUS",
            f"{kind.capitalize()} {obj.id} is {obj.status}, archiving needs CLOSED: "
            f"close it first (POST /{kind}s/{obj.id}/close) and wait for that operation",
            {"appropriate_statuses": ["CLOSED"], "status": obj.status},
        )
    if (
        isinstance(obj, Pool)
        and obj.last_rejection is not None
        and now < obj.last_rejection + REJECTION_WINDOW
    ):
        # The rejection date stays inner state: Toloka documents no date in this refusal.
        raise ApiError(
            409,
            "THERE_IS_REJECTED_ASSIGNMENT",
            f"Pool {obj.id} has rejected assignments; it can be archived 9 days after the last rejection",
        )
    if isinstance(obj, Training):
        pools = objects["pool"]
        unarchived = [pid for pid in obj.main_pool_ids if pid in pools and pools[pid].status != "ARCHIVED"]
        if unarchived:
            raise ApiError(
                409,
                "TRAINING_ARCHIVE_CONFLICT",
                f"Training {obj.id} is linked to main pools that are not archived: {', '.join(unarchived)}; "
                "archive those pools first",
                {"pool_ids": unarchived},
            )


def check_closable(kind: str, obj: AnyObject) -> None:
    """Raise the 409 for closing an archived or locked pool or training; open and closed ones pass."""
    if obj.status in ("ARCHIVED", "LOCKED"):
        raise ApiError(
            409,
            "INAPPROPRIATE_STATUS",
            f"{kind.capitalize()} {obj.id} is {obj.status} and cannot be closed",
            {"appropriate_statuses": ["OPEN"], "status": obj.status},
        )


def apply_effect(op_type: str, obj: AnyObject, finished: dt.datetime) -> None:
    """What a successful operation leaves behind (a close also stamps ``last_stopped``)."""
    if op_type.endswith(".ARCHIVE"):
        obj.status = "ARCHIVED"
    elif op_type.endswith(".CLOSE") and isinstance(obj, Pool | Training):
        obj.status = "CLOSED"
        obj.last_close_reason = "MANUAL"
        obj.times.last_stopped = finished


def _check_project_empty(project_id: str, objects: Mapping[str, Mapping[str, AnyObject]]) -> None:
    def unarchived(kind: str) -> list[str]:
        found = [
            obj.id
            for obj in objects[kind].values()
            if isinstance(obj, Pool | Training) and obj.project_id == project_id and obj.status != "ARCHIVED"
        ]
        return sorted(found, key=id_key)

    pool_ids, training_ids = unarchived("pool"), unarchived("training")
    if pool_ids or training_ids:
        raise ApiError(
            409,
            "UNARCHIVED_POOLS_CONFLICT",
            f"Project {project_id} still has {len(pool_ids)} pool(s) and {len(training_ids)} training(s) "
            "that are not archived; archive them first",
            {"pool_ids": pool_ids, "training_ids": training_ids},
        )
