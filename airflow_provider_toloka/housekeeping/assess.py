"""Whether one project is due for archiving, and if not, why: pure, from what its listing shows.

The cascade's planner sorts the project's pools and trainings; this adds the one question the
cascade never asks: has the project been idle long enough? A dry run, and the real run before it
touches anything, both read the same verdict, so they cannot disagree.

Idle time is read from each pool and training: the latest of ``created``, ``last_started`` and
``last_stopped`` it shows. For a closed pool that is when it was last closed; for one never opened,
when it was made; an open pool (only with ``close_open``) counts from when it was last opened. The
newest such time over the project, archived objects and the project's own ``created`` included, is
its last activity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pendulum

from airflow_provider_toloka.cascade.plan import CascadePlan, plan_cascade

# Why a project is left alone; the keys of the summary's ``skipped``, in the order they are checked.
OPEN = "open"
BLOCKED = "blocked"
UNKNOWN_ACTIVITY = "unknown_activity"
RECENT_ACTIVITY = "recent_activity"
# Mostly only an archive request shows it (409 THERE_IS_REJECTED_ASSIGNMENT): the real run reports it.
REJECTION_WINDOW = "rejection_window"
REASONS = (OPEN, BLOCKED, UNKNOWN_ACTIVITY, RECENT_ACTIVITY, REJECTION_WINDOW)

_TIMES = ("created", "last_started", "last_stopped")
_SHOWN = 5


@dataclass(frozen=True)
class Verdict:
    """Archive the project (``reason is None``) or skip it for ``reason``, explained in ``detail``."""

    project_id: str
    plan: CascadePlan
    reason: str | None
    detail: str


def assess(
    project: Mapping[str, Any],
    pools: Iterable[Mapping[str, Any]],
    trainings: Iterable[Mapping[str, Any]],
    *,
    close_open: bool,
    min_idle_days: float,
    now: pendulum.DateTime,
) -> Verdict:
    """Plan the project with the cascade's planner, then check that nothing in it moved lately."""
    pools, trainings = list(pools), list(trainings)
    plan = plan_cascade(project, pools, trainings, close_open=close_open)
    project_id = plan.project_id

    def skip(reason: str, detail: str) -> Verdict:
        return Verdict(project_id, plan, reason, detail)

    open_objects = [f"{b.kind} {b.id}" for b in plan.blockers if b.status == "OPEN"]
    if open_objects:
        return skip(OPEN, f"open: {_listed(open_objects)}; close them, or pass close_open=True")
    # A rejection window is invisible here (Toloka shows no rejection date): the archive's 409 reports it.
    if plan.blockers:
        return skip(BLOCKED, "; ".join(str(b) for b in plan.blockers[:_SHOWN]) + _more(plan.blockers))

    latest: tuple[pendulum.DateTime, str] | None = _latest(project, "project")
    for kind, objects in (("pool", pools), ("training", trainings)):
        for obj in objects:
            seen = _latest(obj, kind)
            if seen is None:
                return skip(UNKNOWN_ACTIVITY, f"{kind} {obj.get('id')} shows none of {', '.join(_TIMES)}")
            latest = seen if latest is None or seen[0] >= latest[0] else latest
    if latest is None:
        return skip(UNKNOWN_ACTIVITY, f"project {project_id} shows no created time and has no pools")
    when, what = latest
    eligible_from = when.add(seconds=round(min_idle_days * 86400))
    if now < eligible_from:
        return skip(RECENT_ACTIVITY, f"{what} {_iso(when)}; eligible from {_iso(eligible_from)}")
    return Verdict(project_id, plan, None, f"idle since {_iso(when)} ({what})")


def _latest(obj: Mapping[str, Any], kind: str) -> tuple[pendulum.DateTime, str] | None:
    """The object's newest lifecycle time and what it was (``pool 12 last_stopped``)."""
    found: tuple[pendulum.DateTime, str] | None = None
    for name in _TIMES:
        when = _parse(obj.get(name))
        if when is not None and (found is None or when >= found[0]):
            found = (when, f"{kind} {obj.get('id')} {name}")
    return found


def _parse(raw: Any) -> pendulum.DateTime | None:
    """Toloka's times are UTC without an offset (``2026-01-02T03:04:05.000``)."""
    if not raw:
        return None
    try:
        parsed = pendulum.parse(str(raw), tz="UTC")
    except ValueError:
        return None
    return parsed.in_timezone("UTC") if isinstance(parsed, pendulum.DateTime) else None


def _iso(when: pendulum.DateTime) -> str:
    return when.in_timezone("UTC").format("YYYY-MM-DD[T]HH:mm:ss[Z]")


def _listed(items: list[str]) -> str:
    return ", ".join(items[:_SHOWN]) + _more(items)


def _more(items: list[Any]) -> str:
    return f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
