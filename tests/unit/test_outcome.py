"""A deferred cascade's event: compact enough for 10,000 objects, and read back to the same outcome."""

from __future__ import annotations

import json
import uuid

import pytest

from airflow_provider_toloka.cascade.outcome import cascade_event, summary_from_event
from airflow_provider_toloka.exceptions import (
    TolokaCascadeBlocked,
    TolokaCascadeFailed,
    TolokaCascadeHeldBack,
    TolokaError,
)

POOLS = [str(100000 + n) for n in range(10_000)]


def summary_of(pools: list[str]) -> dict:
    """What ``CascadeRunner`` returns for a project of these pools, with Toloka's UUID operation ids."""
    return {
        "pools": {"archived": pools, "closed": [], "skipped": []},
        "trainings": {"archived": [], "closed": [], "skipped": []},
        "project": {"id": "7", "operation": {"id": str(uuid.uuid4()), "status": "SUCCESS"}, "skipped": False},
        "operations": {f"pool {pool}": str(uuid.uuid4()) for pool in pools},
    }


def test_ten_thousand_archived_pools_fit_one_compact_event():
    summary = summary_of(POOLS)
    event = cascade_event(summary)

    size = len(json.dumps(event))
    # The UUIDs are what is left: about 36 bytes each in JSON, a little over 20 packed.
    assert size < 0.6 * len(json.dumps(summary))
    assert size < 400_000
    assert summary_from_event(json.loads(json.dumps(event))) == summary


def test_each_failure_comes_back_as_the_error_the_worker_raises():
    summary = {**summary_of(POOLS[:3]), "not_archived": {"pools": [], "trainings": [], "project": ["7"]}}
    held = summary_from_event_raising(
        TolokaCascadeHeldBack("held", summary, {"THERE_IS_REJECTED_ASSIGNMENT"})
    )
    assert isinstance(held, TolokaCascadeHeldBack)
    assert (str(held), held.summary, held.codes) == ("held", summary, {"THERE_IS_REJECTED_ASSIGNMENT"})
    failed = summary_from_event_raising(TolokaCascadeFailed("stopped", summary))
    assert type(failed) is TolokaCascadeFailed
    assert (str(failed), failed.summary) == ("stopped", summary)
    original = TolokaCascadeBlocked("7", ["pool 1 (OPEN): open: close it, or pass close_open=True"])
    blocked = summary_from_event_raising(original)
    assert isinstance(blocked, TolokaCascadeBlocked)
    assert str(blocked) == str(original)
    other = summary_from_event_raising(ValueError("boom"))
    assert type(other) is TolokaError
    assert "ValueError: boom" in str(other)


def summary_from_event_raising(error: BaseException) -> BaseException:
    event = json.loads(json.dumps(cascade_event(error=error)))
    with pytest.raises(TolokaError) as caught:
        summary_from_event(event)
    return caught.value


@pytest.mark.parametrize("event", [None, "success", {"status": "done"}, {}])
def test_an_event_from_elsewhere_is_refused(event):
    with pytest.raises(TolokaError, match="TolokaCascadeTrigger"):
        summary_from_event(event)
